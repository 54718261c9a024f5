package handler

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestCORS(t *testing.T) {
	const a, b = "https://a.example", "https://b.example"
	type want struct {
		status       int
		acao         string // "" = header absent
		methods      string // Access-Control-Allow-Methods, "" = absent
		allowHeaders string // Access-Control-Allow-Headers, "" = absent
	}
	tests := []struct {
		name    string
		origins []string
		method  string
		hdr     map[string]string
		want    want
	}{
		{"GET without Origin", nil, http.MethodGet, nil, want{status: 200}},
		{"GET with Origin", nil, http.MethodGet, map[string]string{"Origin": b}, want{status: 200, acao: "*"}},
		{"POST with Origin", nil, http.MethodPost, map[string]string{"Origin": b}, want{status: 404, acao: "*"}},
		{"preflight", nil, http.MethodOptions, map[string]string{
			"Origin": b, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type",
		}, want{status: 204, acao: "*", methods: "GET, POST, OPTIONS", allowHeaders: "authorization,content-type"}},
		{"preflight without requested headers", nil, http.MethodOptions, map[string]string{
			"Origin": b, "Access-Control-Request-Method": "GET",
		}, want{status: 204, acao: "*", methods: "GET, POST, OPTIONS"}},
		{"explicit star", []string{"*"}, http.MethodPost, map[string]string{"Origin": b}, want{status: 404, acao: "*"}},
		{"allowed origin GET", []string{a}, http.MethodGet, map[string]string{"Origin": a}, want{status: 200, acao: a}},
		{"allowed origin POST", []string{a}, http.MethodPost, map[string]string{"Origin": a}, want{status: 404, acao: a}},
		{"other origin GET", []string{a}, http.MethodGet, map[string]string{"Origin": b}, want{status: 200}},
		{"other origin POST", []string{a}, http.MethodPost, map[string]string{"Origin": b}, want{status: 404}},
		{"allowed origin preflight", []string{a}, http.MethodOptions, map[string]string{
			"Origin": a, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Content-Type",
		}, want{status: 204, acao: a, methods: "GET, POST, OPTIONS", allowHeaders: "Content-Type"}},
		{"other origin preflight", []string{a}, http.MethodOptions, map[string]string{
			"Origin": b, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Content-Type",
		}, want{status: 204}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, nil, func(h *Handler) { h.CORSOrigins = tc.origins })
			var (
				status int
				header http.Header
				body   string
			)
			if tc.method == http.MethodGet {
				s := env.openStreamWith(env.client, env.url(), headerOf(tc.hdr))
				status, header = s.resp.StatusCode, s.resp.Header
				s.Close()
			} else {
				var r response
				if tc.method == http.MethodPost {
					r = env.postJSON(`{"clientId":"nobody"}`, tc.hdr)
				} else {
					r = env.do(tc.method, env.url(), nil, tc.hdr)
				}
				status, header, body = r.status, r.header, r.body
			}
			if status != tc.want.status {
				t.Fatalf("status = %d, want %d", status, tc.want.status)
			}
			check := func(name, want string) {
				t.Helper()
				got := header.Values(name)
				if want == "" && len(got) != 0 {
					t.Errorf("%s = %q, want none", name, got)
				}
				if want != "" && (len(got) != 1 || got[0] != want) {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			check("Access-Control-Allow-Origin", tc.want.acao)
			check("Access-Control-Allow-Methods", tc.want.methods)
			check("Access-Control-Allow-Headers", tc.want.allowHeaders)
			if !slices.Contains(varyValues(header), "Origin") {
				t.Errorf("Vary = %q, want it to name Origin", header.Values("Vary"))
			}
			if tc.method == http.MethodOptions {
				if body != "" {
					t.Errorf("preflight body %q", body)
				}
				if tc.want.acao != "" && header.Get("Access-Control-Max-Age") == "" {
					t.Error("preflight without Access-Control-Max-Age")
				}
			}
			if tc.method == http.MethodPost && body != pbError(404, "Missing or invalid client id.", "") {
				t.Errorf("POST body %s", body)
			}
		})
	}
}

func headerOf(m map[string]string) http.Header {
	h := http.Header{}
	for k, v := range m {
		h.Set(k, v)
	}
	return h
}

func varyValues(h http.Header) []string {
	var out []string
	for _, v := range h.Values("Vary") {
		for _, p := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(p))
		}
	}
	return out
}

func TestMethodNotAllowed(t *testing.T) {
	env := newEnv(t, nil, nil)
	for _, method := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions, "PROPFIND"} {
		t.Run(method, func(t *testing.T) {
			// An OPTIONS without Access-Control-Request-Method is not a preflight.
			r := env.do(method, env.url(), nil, map[string]string{"Origin": "https://x.example"})
			if r.status != http.StatusMethodNotAllowed {
				t.Fatalf("status = %d, want 405", r.status)
			}
			if got := r.header.Get("Allow"); got != "GET, POST, OPTIONS" {
				t.Fatalf("Allow = %q", got)
			}
			if got := r.header.Get("Access-Control-Allow-Origin"); got != "*" {
				t.Errorf("ACAO = %q, want *", got)
			}
			want := pbError(405, "Method Not Allowed", "")
			if method == http.MethodHead {
				want = ""
			}
			if r.body != want {
				t.Fatalf("body = %q, want %q", r.body, want)
			}
		})
	}
	if n := env.b.Stats().Clients; n != 0 {
		t.Fatalf("a refused method created %d clients", n)
	}
}
