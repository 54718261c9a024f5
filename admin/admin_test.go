package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// env is an admin API served the way Caddy mounts it: Routes() registered on a
// ServeMux, errors written by HTTPHandler in Caddy's {"error":"..."} shape.
type env struct {
	srv     *httptest.Server
	brokers map[string]*broker.Broker
}

func (e *env) broker(name string) *broker.Broker { return e.brokers[name] }

func newEnv(t *testing.T, maxBody int64) *env {
	t.Helper()
	e := &env{brokers: map[string]*broker.Broker{}}
	for _, name := range []string{"default", "other"} {
		p := broker.DefaultPolicy()
		p.Heartbeat, p.IdleTimeout = 0, 0 // nothing but published frames in the streams
		e.brokers[name] = broker.New(name, p)
	}
	h := &Handler{
		Lookup: func(name string) (*broker.Broker, bool) {
			b, ok := e.brokers[name]
			return b, ok
		},
		MaxBodyBytes: maxBody,
	}
	mux := http.NewServeMux()
	for _, pattern := range Routes() {
		mux.Handle(pattern, h.HTTPHandler())
	}
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

type response struct {
	status int
	header http.Header
	body   string
}

// errorText is the "error" of a Caddy-shaped error body ("" if the body is not one).
func (r response) errorText() string {
	var e struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal([]byte(r.body), &e) != nil || e.Error == nil {
		return ""
	}
	return *e.Error
}

func (e *env) do(t *testing.T, method, path, contentType, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// expect checks status, the JSON content type and either the exact body (want
// starting with '{', '[' or '"') or, for errors, the exact error message.
func expect(t *testing.T, r response, status int, want string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if status >= 400 {
		if got := r.errorText(); got != want {
			t.Errorf("error = %q\n      want %q", got, want)
		}
		return
	}
	if r.body != want+"\n" {
		t.Errorf("body = %s\n want %s", r.body, want)
	}
}

// stream is a broker.Stream collecting a client's frames.
type stream struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (s *stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	n, err := s.buf.Write(p)
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (s *stream) Flush() error                     { return nil }
func (s *stream) SetWriteDeadline(time.Time) error { return nil }

// String is what the stream got, with frame ids as PocketBase writes them
// (positions, "<clientId>.<epoch>.<n>", cut back to the client id).
func (s *stream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return positionRe.ReplaceAllString(s.buf.String(), "$1")
}

// subscriber is a client connected through the broker with a Serve goroutine
// writing into a stream, as the handler package does for an SSE response.
type subscriber struct {
	c      *broker.Client
	s      *stream
	ended  chan struct{}
	reason string // set when ended is closed
}

func subscribe(t *testing.T, b *broker.Broker, topics ...string) *subscriber {
	t.Helper()
	c, err := b.Connect("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetSubscriptions(c, topics); err != nil {
		t.Fatal(err)
	}
	sub := &subscriber{c: c, s: &stream{changed: make(chan struct{}, 1)}, ended: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		sub.reason = c.Serve(ctx, sub.s)
		close(sub.ended)
	}()
	t.Cleanup(func() {
		cancel()
		<-sub.ended
		b.Disconnect(c, broker.ReasonClientGone)
	})
	sub.waitFor(t, sub.connectFrame())
	return sub
}

func (sub *subscriber) connectFrame() string {
	id := sub.c.ID()
	return "id:" + id + "\nevent:PB_CONNECT\ndata:{\"clientId\":\"" + id + "\"}\n\n"
}

func (sub *subscriber) frame(topic, data string) string {
	return "id:" + sub.c.ID() + "\nevent:" + topic + "\ndata:" + data + "\n\n"
}

// waitFor blocks until the stream contains want. The timeout only stops a broken
// test from hanging; no assertion depends on timing.
func (sub *subscriber) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for !strings.Contains(sub.s.String(), want) {
		select {
		case <-sub.s.changed:
		case <-timeout:
			t.Fatalf("stream never got %q; it holds %q", want, sub.s.String())
		}
	}
}

func (sub *subscriber) waitEnded(t *testing.T) string {
	t.Helper()
	select {
	case <-sub.ended:
		return sub.reason
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return ""
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	if got := Routes(); len(got) != 1 || got[0] != "/realtime/" {
		t.Fatalf("Routes() = %q, want [/realtime/]", got)
	}
}

func TestUnknownPathsAndMethods(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	id := subscribe(t, e.broker("default")).c.ID()
	tests := []struct {
		method, path string
		status       int
		allow        string
		err          string
	}{
		{"GET", "/realtime/", 404, "", `unknown path "/realtime/": see the realtime admin API routes under /realtime/`},
		{"GET", "/realtime/nope", 404, "", `unknown path "/realtime/nope": see the realtime admin API routes under /realtime/`},
		{"POST", "/realtime/events/", 404, "", `unknown path "/realtime/events/": see the realtime admin API routes under /realtime/`},
		{"GET", "/realtime/clients/", 404, "", `unknown path "/realtime/clients/": see the realtime admin API routes under /realtime/`},
		{"GET", "/realtime/stats/x", 404, "", `unknown path "/realtime/stats/x": see the realtime admin API routes under /realtime/`},
		{"GET", "/realtime/clients/" + id + "/nope", 404, "", `unknown path "/realtime/clients/` + id + `/nope": see the realtime admin API routes under /realtime/`},
		{"GET", "/realtime/clients/" + id + "/state/", 404, "", `unknown path "/realtime/clients/` + id + `/state/": see the realtime admin API routes under /realtime/`},
		{"GET", "/realtime/events", 405, "POST", "method GET not allowed on /realtime/events: use POST"},
		{"PUT", "/realtime/messages", 405, "POST", "method PUT not allowed on /realtime/messages: use POST"},
		{"POST", "/realtime/stats", 405, "GET", "method POST not allowed on /realtime/stats: use GET"},
		{"DELETE", "/realtime/clients", 405, "GET", "method DELETE not allowed on /realtime/clients: use GET"},
		{"PUT", "/realtime/clients/" + id, 405, "GET, DELETE", "method PUT not allowed on /realtime/clients/" + id + ": use GET or DELETE"},
		{"POST", "/realtime/clients/" + id + "/state", 405, "GET, PUT, DELETE", "method POST not allowed on /realtime/clients/" + id + "/state: use GET or PUT or DELETE"},
		{"PATCH", "/realtime/clients/" + id + "/state/k", 405, "GET, PUT, DELETE", "method PATCH not allowed on /realtime/clients/" + id + "/state/k: use GET or PUT or DELETE"},
		// the method is checked before the broker, so a wrong method is never a 404
		{"DELETE", "/realtime/stats?broker=nope", 405, "GET", "method DELETE not allowed on /realtime/stats: use GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, "", "")
			expect(t, r, tt.status, tt.err)
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestUnknownBroker(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	id := subscribe(t, e.broker("default")).c.ID()
	event := `{"action":"create","record":{"id":"r1","collectionName":"posts"}}`
	tests := []struct{ method, path, body string }{
		{"POST", "/realtime/events?broker=nope", event},
		{"POST", "/realtime/messages?broker=nope", `{"name":"chat"}`},
		{"GET", "/realtime/clients?broker=nope", ""},
		{"GET", "/realtime/clients/" + id + "?broker=nope", ""},
		{"DELETE", "/realtime/clients/" + id + "?broker=nope", ""},
		{"PUT", "/realtime/clients/" + id + "/state/k?broker=nope", "1"},
		{"GET", "/realtime/stats?broker=nope", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			expect(t, e.do(t, tt.method, tt.path, "", tt.body), 404, `unknown broker "nope"`)
		})
	}
	// the client lives on "default": the unknown broker must not have reached it
	c, ok := e.broker("default").Client(id)
	if !ok {
		t.Fatal("client was disconnected through an unknown broker")
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("state was set through an unknown broker")
	}
}

func TestServeErrorsAreValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		h      *Handler
		path   string
		status int
		msg    string
	}{
		{"no lookup", &Handler{}, "/realtime/stats", 500, "realtime admin handler has no broker lookup configured"},
		{"nil broker", &Handler{Lookup: func(string) (*broker.Broker, bool) { return nil, true }}, "/realtime/stats", 404, `unknown broker "default"`},
		{"outside prefix", &Handler{}, "/config/", 404, `unknown path "/config/": see the realtime admin API routes under /realtime/`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			err := tt.h.Serve(rec, httptest.NewRequest("GET", tt.path, nil))
			var ae Error
			if !errors.As(err, &ae) {
				t.Fatalf("Serve returned %T %v, want an admin.Error value", err, err)
			}
			if ae.Code != tt.status || ae.Error() != tt.msg {
				t.Errorf("got %d %q, want %d %q", ae.Code, ae.Error(), tt.status, tt.msg)
			}
			if rec.Body.Len() != 0 {
				t.Errorf("Serve wrote an error body itself: %q", rec.Body.String())
			}
		})
	}
}

func TestHTTPHandlerErrorShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	r := e.do(t, "GET", "/realtime/clients/nope", "", "")
	if r.status != 404 || r.body != `{"error":"unknown client \"nope\""}`+"\n" {
		t.Fatalf("got %d %q, want Caddy's admin error shape", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	subscribe(t, e.broker("other"), "posts", "chat")
	expect(t, e.do(t, "POST", "/realtime/events?broker=other", "",
		`[{"action":"create","record":{"id":"a","collectionName":"posts"}},{"action":"delete","record":{"id":"b","collectionName":"posts"}}]`),
		200, `{"published":2}`)

	for _, tt := range []struct {
		path                    string
		broker                  string
		clients, subs, eventsIn int
	}{
		{"/realtime/stats", "default", 0, 0, 0},
		{"/realtime/stats?broker=default", "default", 0, 0, 0},
		{"/realtime/stats?broker=other", "other", 1, 2, 2},
	} {
		r := e.do(t, "GET", tt.path, "", "")
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", tt.path, r.status, r.body)
		}
		var got broker.Stats
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("%s: %v in %s", tt.path, err, r.body)
		}
		if got.Broker != tt.broker || got.Clients != int64(tt.clients) ||
			got.Subscriptions != int64(tt.subs) || got.EventsIn != uint64(tt.eventsIn) {
			t.Errorf("%s: got %+v, want broker %s clients %d subscriptions %d events_in %d",
				tt.path, got, tt.broker, tt.clients, tt.subs, tt.eventsIn)
		}
		if _, ok := got.Evictions[broker.ReasonQueueFull]; !ok {
			t.Errorf("%s: evictions lacks %s: %s", tt.path, broker.ReasonQueueFull, r.body)
		}
	}
}

// FuzzServe feeds arbitrary methods, paths and bodies to Serve: it must never
// panic, and every failure must be an admin.Error with a client-error status.
func FuzzServe(f *testing.F) {
	b := broker.New("default", nil)
	c, err := b.Connect("127.0.0.1")
	if err != nil {
		f.Fatal(err)
	}
	h := &Handler{Lookup: func(name string) (*broker.Broker, bool) { return b, name == "default" }, MaxBodyBytes: 4096}
	id := c.ID()
	f.Add("POST", "/realtime/events", `[{"action":"create","record":{"id":"a","collectionName":"p"}}]`)
	f.Add("POST", "/realtime/messages", `{"name":"x","data":{"a":[1]},"clients":["`+id+`"]}`)
	f.Add("PUT", "/realtime/clients/"+id+"/state", `{"a":1}`)
	f.Add("PUT", "/realtime/clients/"+id+"/state/a%2Fb", `"v"`)
	f.Add("DELETE", "/realtime/clients/"+id+"/state/a", ``)
	f.Add("GET", "/realtime/clients?limit=3&offset=1", ``)
	f.Add("GET", "/realtime/stats?broker=x", ``)
	f.Add("PATCH", "/realtime/clients/%zz/state", `{`)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		req, err := http.NewRequest(method, "http://localhost"+path, strings.NewReader(body))
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		rec := httptest.NewRecorder()
		err = h.Serve(rec, req)
		if err == nil {
			if rec.Code != 200 || !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %s: success with %d %q", method, path, rec.Code, rec.Body.String())
			}
			return
		}
		var ae Error
		if !errors.As(err, &ae) || ae.Code < 400 || ae.Code > 499 || ae.Err == nil {
			t.Fatalf("%s %s: error %T %v (code %d)", method, path, err, err, ae.Code)
		}
		if rec.Body.Len() != 0 {
			t.Fatalf("%s %s: error body written by Serve: %q", method, path, rec.Body.String())
		}
	})
}

// positionRe matches the position part of frame ids.
var positionRe = regexp.MustCompile(`(?m)^(id:[A-Za-z0-9]{40})\.[A-Za-z0-9]{8}\.[1-9][0-9]*$`)
