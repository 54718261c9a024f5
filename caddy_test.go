package realtime

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const basicCaddyfile = `{
	admin {ADMIN}
	auto_https off
	persist_config off
}
http://127.0.0.1:{PORT} {
	realtime /api/realtime {
		heartbeat 1s
	}
	respond /other "not realtime" 404
}
`

func TestCaddyStreamSubscribePublish(t *testing.T) {
	p := startCaddy(t, basicCaddyfile)
	s := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-store, no-transform",
		"X-Accel-Buffering": "no",
	} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	id := s.connect(t)
	if r := p.subscribe(http.DefaultClient, p.url(""), id, "posts/*", "posts/r1"); r.status != http.StatusNoContent || r.body != "" {
		t.Fatalf("subscribe: %d %q", r.status, r.body)
	}
	p.publish(`{"action":"create","record":{"id":"r1","collectionName":"posts","title":"hi"}}`, 1)
	got := []string{s.next(t), s.next(t)}
	data := `data:{"record":{"collectionName":"posts","id":"r1","title":"hi"},"action":"create"}` + "\n\n"
	want := map[string]bool{
		"id:" + id + "\nevent:posts/*\n" + data:  true,
		"id:" + id + "\nevent:posts/r1\n" + data: true,
	}
	for _, f := range got {
		if !want[f] {
			t.Errorf("unexpected frame %q", f)
		}
		delete(want, f)
	}

	var stats struct {
		Clients, Subscriptions, EventsIn int64
	}
	r := p.adminDo(http.MethodGet, "/realtime/stats", "", "")
	if err := json.Unmarshal([]byte(r.body), &stats); err != nil {
		t.Fatalf("stats %q: %v", r.body, err)
	}
	if stats.Clients != 1 || stats.Subscriptions != 2 {
		t.Errorf("stats = %+v (%s), want 1 client, 2 subscriptions", stats, r.body)
	}
	metrics := p.adminDo(http.MethodGet, "/metrics", "", "").body
	for _, line := range []string{
		`caddy_realtime_clients{broker="default"} 1`,
		`caddy_realtime_subscriptions{broker="default"} 2`,
		`caddy_realtime_events_total{broker="default"} 1`,
		`caddy_realtime_messages_sent_total{broker="default"} 3`,
		`caddy_realtime_fanout_duration_seconds_count{broker="default"} 1`,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if strings.Contains(metrics, id) {
		t.Error("a client id appears in the metrics")
	}
	// The matcher leaves other paths to the rest of the site.
	if r := do(t, http.MethodGet, p.url("/other"), "", ""); r.status != 404 || r.body != "not realtime" {
		t.Errorf("other path: %d %q", r.status, r.body)
	}
}

func TestCaddyReloadKeepsStreams(t *testing.T) {
	p := startCaddy(t, basicCaddyfile)
	s := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	id := s.connect(t)
	if r := p.subscribe(http.DefaultClient, p.url(""), id, "posts/*"); r.status != http.StatusNoContent {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	// A reload that changes the policy: at most 1 subscription per client.
	p.load(strings.Replace(basicCaddyfile, "heartbeat 1s", "heartbeat 1s\n\t\tmax_subscriptions 1", 1))

	p.publish(`{"action":"update","collection":"posts","record":{"id":"r2"}}`, 1)
	want := "id:" + id + "\nevent:posts/*\n" + `data:{"record":{"collectionName":"posts","id":"r2"},"action":"update"}` + "\n\n"
	if f := s.next(t); f != want {
		t.Fatalf("after reload got %q, want %q", f, want)
	}
	// A fresh connection: a kept-alive one may have been closed by the reload.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	r := p.subscribe(fresh, p.url(""), id, "posts/*", "users/*")
	wantBody := `{"data":{"subscriptions":{"code":"validation_length_too_long","message":"The length must be no more than 1.","params":{"max":1,"min":0}}},"message":"Something went wrong while processing your request.","status":400}`
	if r.status != http.StatusBadRequest || r.body != wantBody {
		t.Fatalf("new policy not applied: %d %s", r.status, r.body)
	}
}

func TestCaddyStopWithOpenStreams(t *testing.T) {
	p := startCaddy(t, basicCaddyfile)
	var streams []*sseStream
	for range 3 {
		s := openStream(t, http.DefaultClient, p.url("/api/realtime"))
		s.connect(t)
		streams = append(streams, s)
	}
	// A reload in between must not break the exit path (pitfall: streams open
	// across a reload made `caddy stop` wait forever).
	p.load(strings.Replace(basicCaddyfile, "heartbeat 1s", "heartbeat 2s", 1))
	start := time.Now()
	if r := p.adminDo(http.MethodPost, "/stop", "", ""); r.status != http.StatusOK {
		t.Fatalf("stop: %d %s", r.status, r.body)
	}
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		t.Fatalf("caddy still running 2s after stop with open streams")
	}
	t.Logf("caddy exited %v after stop", time.Since(start))
	for _, s := range streams {
		s.ended(t, time.Second)
	}
}

func TestCaddyIdleTimeoutEndsCleanly(t *testing.T) {
	p := startCaddy(t, strings.Replace(basicCaddyfile, "heartbeat 1s", "heartbeat 100ms\n\t\tidle_timeout 700ms", 1))
	s := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	s.connect(t)
	if err := s.ended(t, 5*time.Second); err != io.EOF {
		t.Fatalf("stream ended with %v, want a clean end (EOF)", err)
	}
}

func TestCaddyHTTP2(t *testing.T) {
	for _, m := range transportModes {
		t.Run(m.name, func(t *testing.T) {
			p, client, base := startMode(t, m)
			checkStreamOver(t, p, client, base, m.protoMajor)
		})
	}
}

// transportMode is how a test's client reaches Caddy beside plain HTTP/1.1.
type transportMode struct {
	name       string
	tls        bool
	protoMajor int // the protocol the streams must be served over
}

var transportModes = []transportMode{
	{"h2c", false, 2},
	{"h2 over TLS, internal issuer", true, 2},
	{"HTTP/1.1 over TLS, internal issuer", true, 1}, // adopted by the broker's writers (hijack)
}

// startMode runs Caddy serving the realtime endpoint for m: HTTP/2 in
// cleartext (h2c), or HTTPS with Caddy's internal issuer, and returns a
// client that speaks m's protocol and the site's base URL.
func startMode(t *testing.T, m transportMode) (*caddyProc, *http.Client, string) {
	t.Helper()
	if !m.tls {
		p := startCaddy(t, strings.Replace(basicCaddyfile, "persist_config off", "persist_config off\n\tservers {\n\t\tprotocols h1 h2c\n\t}", 1))
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		t.Cleanup(tr.CloseIdleConnections)
		return p, &http.Client{Transport: tr}, p.url("")
	}
	cf := `{
	admin {ADMIN}
	persist_config off
	skip_install_trust
	auto_https disable_redirects
}
https://127.0.0.1:{PORT} {
	tls internal
	realtime /api/realtime
}
`
	p := startCaddy(t, cf)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Protocols: new(http.Protocols)}
	if m.protoMajor == 2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	base := fmt.Sprintf("https://127.0.0.1:%d", p.port)
	// The internal issuer signs the certificate in the background: wait for it.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Post(base+"/api/realtime", "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no TLS certificate after 15s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p, client, base
}

func checkStreamOver(t *testing.T, p *caddyProc, client *http.Client, base string, protoMajor int) {
	t.Helper()
	s := openStream(t, client, base+"/api/realtime")
	if s.resp.ProtoMajor != protoMajor {
		t.Fatalf("stream over %s, want HTTP/%d", s.resp.Proto, protoMajor)
	}
	id := s.connect(t)
	if r := p.subscribe(client, base, id, "posts/*"); r.status != http.StatusNoContent {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	for i := range 50 {
		p.publish(fmt.Sprintf(`{"action":"create","collection":"posts","record":{"id":"r%d"}}`, i), 1)
	}
	for i := range 50 {
		want := fmt.Sprintf("id:%s\nevent:posts/*\ndata:{\"record\":{\"collectionName\":\"posts\",\"id\":\"r%d\"},\"action\":\"create\"}\n\n", id, i)
		if f := s.next(t); f != want {
			t.Fatalf("frame %d over %s: %q, want %q", i, s.resp.Proto, f, want)
		}
	}
}

func TestCaddyClientIPHonoursTrustedProxies(t *testing.T) {
	cf := strings.Replace(basicCaddyfile, "persist_config off", "persist_config off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", 1)
	p := startCaddy(t, cf)
	req, _ := http.NewRequest(http.MethodGet, p.url("/api/realtime"), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200)
	n, _ := io.ReadAtLeast(resp.Body, buf, 60)
	defer resp.Body.Close()
	var id string
	fmt.Sscanf(string(buf[:n]), "id:%s\n", &id)

	post := func(xff string) reply {
		body := fmt.Sprintf(`{"clientId":%q,"subscriptions":["posts/*"]}`, id)
		req, _ := http.NewRequest(http.MethodPost, p.url("/api/realtime"), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return reply{resp.StatusCode, resp.Header, string(b)}
	}
	if r := post("198.51.100.1"); r.status != http.StatusBadRequest || r.body != `{"data":{},"message":"Invalid realtime client.","status":400}` {
		t.Errorf("POST from another client IP: %d %s", r.status, r.body)
	}
	if r := post("203.0.113.7"); r.status != http.StatusNoContent {
		t.Errorf("POST from the stream's client IP: %d %s", r.status, r.body)
	}
}

func TestCaddyCORSAndEncode(t *testing.T) {
	cf := `{
	admin {ADMIN}
	auto_https off
	persist_config off
}
http://127.0.0.1:{PORT} {
	encode gzip
	realtime /api/realtime {
		cors_origins https://app.example
	}
	realtime /api/compressed {
		compress on
	}
}
`
	p := startCaddy(t, cf)
	get := func(path, origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, p.url(path), nil)
		req.Header.Set("Accept-Encoding", "gzip")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		tr := &http.Transport{DisableCompression: true}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp := get("/api/realtime", "https://app.example")
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("allowed origin: ACAO = %q", got)
	}
	if got := resp.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("stream compressed (%q) although compress is off", got)
	}
	if got := get("/api/realtime", "https://evil.example").Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("other origin: ACAO = %q, want none", got)
	}
	if got := get("/api/compressed", "").Header.Get("Content-Encoding"); got != "gzip" {
		t.Errorf("compress on: Content-Encoding = %q, want gzip", got)
	}
	req, _ := http.NewRequest(http.MethodOptions, p.url("/api/realtime"), nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type,authorization")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != http.StatusNoContent || pre.Header.Get("Access-Control-Allow-Headers") != "content-type,authorization" {
		t.Errorf("preflight: %d %v", pre.StatusCode, pre.Header)
	}
}

func TestCaddyMaxClients(t *testing.T) {
	p := startCaddy(t, strings.Replace(basicCaddyfile, "heartbeat 1s", "max_clients 1", 1))
	s := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	s.connect(t)
	r := do(t, http.MethodGet, p.url("/api/realtime"), "", "")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "max_clients") {
		t.Fatalf("second stream: %d %s", r.status, r.body)
	}
}
