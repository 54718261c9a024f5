// Package handler serves PocketBase's realtime endpoint over net/http: GET opens
// the SSE stream, POST replaces a client's subscriptions. Responses, limits and
// error bodies match PocketBase's byte for byte (see shared/spec).
package handler

import (
	"bytes"
	"errors"
	"github.com/caddy-realtime/realtime/forward"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/broker"
)

// Handler serves one realtime endpoint backed by Broker.
type Handler struct {
	Broker *broker.Broker
	// ClientIP returns the request's client address (Caddy's, so trusted proxies
	// work); nil uses the host of RemoteAddr.
	ClientIP func(*http.Request) string
	// Authenticate turns a subscription POST's credentials into an auth record
	// (nil = guest). An error means the lookup could not be made: 503, never a silent guest;
	// an error with a RetryAfter() time.Duration method (auth.LimitError) adds Retry-After.
	Authenticate func(*http.Request) (*broker.Auth, error)
	// CORSOrigins narrows Access-Control-Allow-Origin; empty or "*" allows any origin.
	CORSOrigins []string
	// Compress lets an outer encoder compress streams (drops no-transform).
	Compress bool
	// Hijack takes HTTP/1.1 streams (plain or TLS) over from net/http and lets
	// the broker's writers serve them: no goroutine per idle stream. HTTP/2 and
	// compressed streams always use a goroutine.
	Hijack bool
	// BodyTimeout bounds how long a subscription POST may take to send its
	// body (a trickled body must not hold memory and a goroutine forever); 0 = none.
	BodyTimeout time.Duration
	Logger      *zap.Logger
}

// MaxBodyBytes is PocketBase's default request body limit, used when the
// policy's limits are off; otherwise bodyLimit sizes it to what they allow.
const MaxBodyBytes = 32 << 20

// bodyLimit is the largest subscription POST body the policy can accept:
// max_subscriptions topics of max_topic_length bytes, plus JSON framing.
func bodyLimit(p *broker.Policy) int64 {
	if p.MaxSubscriptions <= 0 || p.MaxTopicLength <= 0 {
		return MaxBodyBytes
	}
	return min(MaxBodyBytes, int64(p.MaxSubscriptions)*int64(p.MaxTopicLength+16)+64<<10)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cors(w, r) {
		return
	}
	switch r.Method {
	case http.MethodGet:
		h.serveStream(w, r)
	case http.MethodPost:
		h.serveSubscribe(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "Method Not Allowed", nil)
	}
}

func (h *Handler) clientIP(r *http.Request) string {
	if ip := forward.ClientIP(r); ip != "" {
		return ip // judged by the node the client's request reached
	}
	if h.ClientIP != nil {
		if ip := h.ClientIP(r); ip != "" {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Handler) logger() *zap.Logger {
	if h.Logger == nil {
		return zap.NewNop()
	}
	return h.Logger
}

// serveStream holds the SSE stream: PB_CONNECT first, then every queued frame.
func (h *Handler) serveStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The server's write timeout would cut a long stream; the broker sets a
	// deadline per write instead (as PocketBase clears it).
	_ = rc.SetWriteDeadline(time.Time{})

	var c *broker.Client
	var err error
	if last, ok := lastEventID(r); ok {
		c, _, err = h.Broker.Resume(h.clientIP(r), last)
	} else {
		c, err = h.Broker.Connect(h.clientIP(r))
	}
	if err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, broker.ErrTooManyClientsPerIP) {
			status = http.StatusTooManyRequests
		}
		writeError(w, status, err.Error(), nil)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	if h.Compress {
		hdr.Set("Cache-Control", "no-store")
	} else {
		hdr.Set("Cache-Control", "no-store, no-transform")
	}
	hdr.Set("X-Accel-Buffering", "no")
	if h.Hijack && broker.AdoptSupported && !h.Compress && r.ProtoMajor == 1 && r.ProtoMinor == 1 {
		if conn, _, err := rc.Hijack(); err == nil {
			h.adopt(c, conn, hdr)
			return
		}
	}
	w.WriteHeader(http.StatusOK)

	// Serve fails a write stuck on a peer that does not read once c is closed,
	// and never uses rc after it returned.
	reason := c.Serve(r.Context(), stream{w: w, rc: rc})
	h.Broker.Disconnect(c, reason)
	if ce := h.logger().Check(zap.DebugLevel, "realtime stream ended"); ce != nil {
		ce.Write(zap.String("client", c.ID()), zap.String("reason", reason))
	}
}

// adopt writes the response header on a hijacked connection and hands the
// stream to the broker's writers.
func (h *Handler) adopt(c *broker.Client, conn net.Conn, hdr http.Header) {
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	hdr.Del("Content-Length")
	hdr.Set("Transfer-Encoding", "chunked")
	if hdr.Get("Date") == "" {
		hdr.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	_ = hdr.Write(&head)
	head.WriteString("\r\n")
	timeout := h.Broker.Policy().WriteTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	_, err := conn.Write(head.Bytes())
	_ = conn.SetDeadline(time.Time{})
	if err != nil {
		_ = conn.Close()
		h.Broker.Disconnect(c, broker.ReasonClientGone)
		return
	}
	h.Broker.Adopt(c, conn)
}

// stream adapts an http.ResponseWriter to broker.Stream.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s stream) Write(p []byte) (int, error)        { return s.w.Write(p) }
func (s stream) Flush() error                       { return s.rc.Flush() }
func (s stream) SetWriteDeadline(t time.Time) error { return s.rc.SetWriteDeadline(t) }

// lastEventID is the id a reconnecting client last received: the
// Last-Event-ID header EventSource sends, or ?lastEventId= for clients that
// cannot set headers. ok is false when neither was sent (a fresh stream).
func lastEventID(r *http.Request) (id string, ok bool) {
	if v := r.Header.Values("Last-Event-ID"); len(v) > 0 {
		return v[0], true
	}
	q := r.URL.Query()
	if q.Has("lastEventId") {
		return q.Get("lastEventId"), true
	}
	return "", false
}
