package handler

import (
	"net/http"
	"slices"
)

// cors applies PocketBase's default CORS behaviour ("*" for any Origin),
// narrowed to Origins when configured. It reports whether the request was a
// preflight that has been answered.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	hdr := w.Header()
	hdr.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	allowed := ""
	if origin != "" {
		switch {
		case len(h.CORSOrigins) == 0 || slices.Contains(h.CORSOrigins, "*"):
			allowed = "*"
		case slices.Contains(h.CORSOrigins, origin):
			allowed = origin
		}
	}
	if allowed != "" {
		hdr.Set("Access-Control-Allow-Origin", allowed)
	}
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}
	hdr.Add("Vary", "Access-Control-Request-Method")
	hdr.Add("Vary", "Access-Control-Request-Headers")
	if allowed != "" {
		hdr.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		if reqHeaders := r.Header.Get("Access-Control-Request-Headers"); reqHeaders != "" {
			hdr.Set("Access-Control-Allow-Headers", reqHeaders)
		}
		hdr.Set("Access-Control-Max-Age", "86400")
	}
	w.WriteHeader(http.StatusNoContent)
	return true
}
