package handler

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// sdkOptionsTopic is the JS SDK's exact form for
// subscribe("r1", cb, {fields: "id,title", filter: 'title != ""'}) (spec §4).
const sdkOptionsTopic = `posts/r1?options=%7B%22query%22%3A%7B%22fields%22%3A%22id%2Ctitle%22%2C%22filter%22%3A%22title%20!%3D%20%5C%22%5C%22%22%7D%7D`

const createPostsR1 = `{"action":"create","record":{"id":"r1","collectionName":"posts","title":"hello"}}`

// The payload PocketBase sends for createPostsR1: record first, keys sorted.
const createPostsR1Data = `{"record":{"collectionName":"posts","id":"r1","title":"hello"},"action":"create"}`

func TestStreamConformance(t *testing.T) {
	tests := []struct {
		name         string
		compress     bool
		cacheControl string
	}{
		{"default", false, "no-store, no-transform"},
		{"compress", true, "no-store"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, nil, func(h *Handler) { h.Compress = tc.compress })
			s := env.openStream(nil) // checks PB_CONNECT byte for byte
			r := s.resp
			if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
				t.Errorf("proto = %s, want HTTP/1.1", r.Proto)
			}
			wantHeaders := map[string]string{
				"Content-Type":      "text/event-stream",
				"Cache-Control":     tc.cacheControl,
				"X-Accel-Buffering": "no",
			}
			for k, want := range wantHeaders {
				if got := r.Header.Values(k); len(got) != 1 || got[0] != want {
					t.Errorf("header %s = %q, want exactly %q", k, got, want)
				}
			}
			if !slices.Equal(r.TransferEncoding, []string{"chunked"}) || r.ContentLength != -1 {
				t.Errorf("TransferEncoding = %q, ContentLength = %d; want chunked and -1", r.TransferEncoding, r.ContentLength)
			}
			if got := r.Header.Get("Connection"); got != "" {
				t.Errorf("Connection header = %q, PocketBase sends none", got)
			}
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("ACAO = %q without an Origin header", got)
			}

			env.subscribe(s.id, nil, "posts/*", sdkOptionsTopic)
			if got := env.mustClient(s.id).Subscriptions(); !slices.Equal(got, []string{"posts/*", sdkOptionsTopic}) {
				t.Fatalf("Subscriptions = %q", got)
			}
			env.publish(createPostsR1)
			got := []string{s.nextEvent(5 * time.Second), s.nextEvent(5 * time.Second)}
			slices.Sort(got)
			want := []string{
				"id:" + s.id + "\nevent:posts/*\ndata:" + createPostsR1Data + "\n\n",
				"id:" + s.id + "\nevent:" + sdkOptionsTopic + "\ndata:" + createPostsR1Data + "\n\n",
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("frames =\n%q\nwant\n%q", got, want)
			}
			// One message per matching topic, nothing more.
			s.noFrame(100 * time.Millisecond)
		})
	}
}

// readChunk reads one HTTP/1.1 chunk ("<hex>\r\n<data>\r\n").
func readChunk(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("chunk size line: %v", err)
	}
	if !strings.HasSuffix(line, "\r\n") {
		t.Fatalf("chunk size line %q does not end in CRLF", line)
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(line, "\r\n"), 16, 64)
	if err != nil {
		t.Fatalf("chunk size %q: %v", line, err)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		t.Fatalf("chunk data: %v", err)
	}
	if string(buf[n:]) != "\r\n" {
		t.Fatalf("chunk %q not followed by CRLF", buf)
	}
	return withoutPositions(string(buf[:n]))
}

// TestStreamRawHTTP11 reads the response off the wire: status line, headers,
// one chunk per message, and a clean terminating chunk when the stream ends.
func TestStreamRawHTTP11(t *testing.T) {
	p := broker.DefaultPolicy()
	p.Heartbeat = 0
	env := newEnv(t, p, nil)
	conn := env.dial()
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET /api/realtime HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || status != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q, %v", status, err)
	}
	headers := map[string][]string{}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\r\n"), ": ")
		if !ok {
			t.Fatalf("header line %q", line)
		}
		headers[k] = append(headers[k], v)
	}
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-store, no-transform",
		"X-Accel-Buffering": "no",
		"Transfer-Encoding": "chunked",
	} {
		if got := headers[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"Connection", "Content-Length"} {
		if _, ok := headers[k]; ok {
			t.Errorf("unexpected header %s: %q", k, headers[k])
		}
	}

	first := readChunk(t, br)
	id := strings.TrimPrefix(strings.SplitN(first, "\n", 2)[0], "id:")
	if !clientIDRe.MatchString(id) {
		t.Fatalf("first chunk %q: bad id", first)
	}
	if want := "id:" + id + "\nevent:PB_CONNECT\ndata:{\"clientId\":\"" + id + "\"}\n\n"; first != want {
		t.Fatalf("first chunk = %q, want %q", first, want)
	}

	env.subscribe(id, nil, "posts/*")
	env.publish(createPostsR1)
	if got, want := readChunk(t, br), "id:"+id+"\nevent:posts/*\ndata:"+createPostsR1Data+"\n\n"; got != want {
		t.Fatalf("event chunk = %q, want %q", got, want)
	}
	env.publish(`{"action":"delete","record":{"id":"r1","collectionName":"posts"}}`)
	if got, want := readChunk(t, br), "id:"+id+"\nevent:posts/*\ndata:{\"record\":{\"collectionName\":\"posts\",\"id\":\"r1\"},\"action\":\"delete\"}\n\n"; got != want {
		t.Fatalf("event chunk = %q, want %q", got, want)
	}

	// A server-side close ends the body with the last chunk, not a reset.
	c := env.mustClient(id)
	c.Close(broker.ReasonDisconnected)
	rest := make([]byte, 5)
	if _, err := io.ReadFull(br, rest); err != nil {
		t.Fatalf("reading the end of the stream: %v", err)
	}
	if string(rest) != "0\r\n\r\n" {
		t.Fatalf("after close: %q, want the terminating chunk", rest)
	}
	if _, ok := env.b.Client(id); ok {
		t.Fatal("broker still knows the closed client")
	}
	if strings.Contains(first, "retry:") {
		t.Fatal("retry: field sent")
	}
}

func TestStreamClientIDsAreUnique(t *testing.T) {
	env := newEnv(t, nil, nil)
	seen := map[string]bool{}
	for range 20 {
		s := env.openStream(nil)
		if seen[s.id] {
			t.Fatalf("client id %q issued twice", s.id)
		}
		seen[s.id] = true
		s.Close()
	}
	eventually(t, 5*time.Second, "all clients gone", func() bool { return env.b.Stats().Clients == 0 })
}

// TestStreamEndsCleanly covers the timers: each ends the body cleanly (EOF after the
// terminating chunk) and the broker forgets the client.
func TestStreamEndsCleanly(t *testing.T) {
	tests := []struct {
		name           string
		idle, life, hb time.Duration
		minDur         time.Duration
		wantHeartbeats bool
	}{
		{name: "idle timeout", idle: 200 * time.Millisecond, minDur: 150 * time.Millisecond},
		{name: "heartbeats do not reset idle", idle: 400 * time.Millisecond, hb: 25 * time.Millisecond, minDur: 350 * time.Millisecond, wantHeartbeats: true},
		{name: "max lifetime", life: 400 * time.Millisecond, hb: 25 * time.Millisecond, minDur: 350 * time.Millisecond, wantHeartbeats: true},
		{name: "max lifetime beats idle", idle: time.Hour, life: 200 * time.Millisecond, minDur: 150 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := broker.DefaultPolicy()
			p.IdleTimeout, p.MaxLifetime, p.Heartbeat = tc.idle, tc.life, tc.hb
			env := newEnv(t, p, nil)
			start := time.Now()
			s := env.openStream(nil)
			frames, err := s.waitEnd(10 * time.Second)
			elapsed := time.Since(start)
			if !isCleanEOF(err) {
				t.Fatalf("stream ended with %v, want a clean EOF", err)
			}
			if elapsed < tc.minDur {
				t.Errorf("stream ended after %v, before %v", elapsed, tc.minDur)
			}
			heartbeats := 0
			for _, f := range frames {
				if f != ":\n\n" {
					t.Errorf("unexpected frame %q", f)
				}
				heartbeats++
			}
			if tc.wantHeartbeats != (heartbeats > 0) {
				t.Errorf("heartbeats = %d, want some: %v", heartbeats, tc.wantHeartbeats)
			}
			if _, ok := env.b.Client(s.id); ok {
				t.Error("broker still knows the client")
			}
			if n := env.b.Stats().Clients; n != 0 {
				t.Errorf("Stats().Clients = %d, want 0", n)
			}
		})
	}
}

// TestStreamIdleResetByDelivery: delivered messages (not heartbeats) keep a stream open.
func TestStreamIdleResetByDelivery(t *testing.T) {
	p := broker.DefaultPolicy()
	p.IdleTimeout = 500 * time.Millisecond
	p.Heartbeat = 0
	env := newEnv(t, p, nil)
	s := env.openStream(nil)
	env.subscribe(s.id, nil, "posts/r1")
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		env.publish(createPostsR1)
		if f := s.next(5 * time.Second); f != "id:"+s.id+"\nevent:posts/r1\ndata:"+createPostsR1Data+"\n\n" {
			t.Fatalf("frame %q", f)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.waitEnd(10 * time.Second); !isCleanEOF(err) {
		t.Fatalf("stream ended with %v", err)
	}
	if env.b.Stats().Clients != 0 {
		t.Fatal("client not forgotten")
	}
}

func TestStreamMaxClients(t *testing.T) {
	p := broker.DefaultPolicy()
	p.MaxClients = 1
	env := newEnv(t, p, nil)
	first := env.openStream(nil)

	r := env.do(http.MethodGet, env.url(), nil, map[string]string{"Origin": "https://x.example"})
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("second GET status = %d, want 503", r.status)
	}
	if want := pbError(503, broker.ErrTooManyClients.Error(), ""); r.body != want {
		t.Fatalf("body = %s, want %s", r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("ACAO on the 503 = %q, want *", got)
	}
	if n := env.b.Stats().Clients; n != 1 {
		t.Fatalf("Stats().Clients = %d after a refused GET, want 1", n)
	}

	first.Close()
	eventually(t, 5*time.Second, "first client forgotten", func() bool { return env.b.Stats().Clients == 0 })
	second := env.openStream(nil)
	if second.id == first.id {
		t.Fatal("reused client id")
	}
}

// TestStreamStalledClientEvicted: a peer that never reads is evicted once its queue
// passes ClientQueue; a healthy client on the same broker gets every event in order.
func TestStreamStalledClientEvicted(t *testing.T) {
	for _, writeTimeout := range []time.Duration{300 * time.Millisecond, 0} {
		t.Run("write_timeout="+writeTimeout.String(), func(t *testing.T) {
			p := broker.DefaultPolicy()
			p.ClientQueue = 64 << 10
			p.WriteTimeout = writeTimeout
			p.Heartbeat = 0
			env := newEnv(t, p, nil)
			healthy := env.openStream(nil)
			env.subscribe(healthy.id, nil, "posts/*")

			conn := env.dial()
			defer conn.Close()
			if _, err := io.WriteString(conn, "GET /api/realtime HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "stalled client connected", func() bool { return env.b.Stats().Clients == 2 })
			var stalled string
			for _, c := range env.b.Clients() {
				if c.ID() != healthy.id {
					stalled = c.ID()
				}
			}
			env.subscribe(stalled, nil, "posts/*")

			pad := strings.Repeat("x", 32<<10)
			evictions := func() uint64 {
				ev := env.b.Stats().Evictions
				return ev[broker.ReasonQueueFull] + ev[broker.ReasonWriteTimeout]
			}
			evictedAt := -1
			for i := 0; i < 5000; i++ {
				env.publish(fmt.Sprintf(`{"action":"update","record":{"id":"r%d","collectionName":"posts","pad":%q,"seq":%d}}`, i, pad, i))
				want := fmt.Sprintf("id:%s\nevent:posts/*\ndata:{\"record\":{\"collectionName\":\"posts\",\"id\":\"r%d\",\"pad\":%q,\"seq\":%d},\"action\":\"update\"}\n\n", healthy.id, i, pad, i)
				if got := healthy.next(10 * time.Second); got != want {
					t.Fatalf("healthy client, event %d: got %.120q..., want %.120q... (evictions %v, healthy registered %v)", i, got, want, env.b.Stats().Evictions, func() bool { _, ok := env.b.Client(healthy.id); return ok }())
				}
				if evictedAt < 0 && evictions() > 0 {
					evictedAt = i
				}
				if evictedAt >= 0 && i >= evictedAt+20 {
					break
				}
			}
			if evictedAt < 0 {
				t.Fatalf("stalled client never evicted (stats %+v)", env.b.Stats().Evictions)
			}
			if _, ok := env.b.Client(healthy.id); !ok {
				t.Fatal("healthy client was evicted")
			}
			eventually(t, 10*time.Second, "stalled client forgotten", func() bool {
				_, ok := env.b.Client(stalled)
				return !ok && env.b.Stats().Clients == 1
			})
			t.Logf("evicted after %d events: %v", evictedAt, env.b.Stats().Evictions)
		})
	}
}

// TestStreamClientGoneMidWrite closes the peer during a burst: no panic, client forgotten.
func TestStreamClientGoneMidWrite(t *testing.T) {
	p := broker.DefaultPolicy()
	p.Heartbeat = 0
	env := newEnv(t, p, nil)
	conn := env.dial()
	if _, err := io.WriteString(conn, "GET /api/realtime HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "id:") {
		t.Fatalf("first line %q, %v", line, err)
	}
	id := strings.TrimSpace(strings.TrimPrefix(line, "id:"))
	env.subscribe(id, nil, "posts/*")

	stop := make(chan struct{})
	published := make(chan int)
	go func() {
		n := 0
		defer func() { published <- n }()
		pad := strings.Repeat("y", 4<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ev, _ := broker.DecodeEvent(fmt.Appendf(nil, `{"action":"create","record":{"id":"r%d","collectionName":"posts","pad":%q}}`, n, pad))
			env.b.Publish(ev)
			n++
		}
	}()
	time.Sleep(50 * time.Millisecond)
	conn.Close()
	eventually(t, 10*time.Second, "client forgotten after the peer closed", func() bool {
		_, ok := env.b.Client(id)
		return !ok && env.b.Stats().Clients == 0
	})
	time.Sleep(20 * time.Millisecond) // publishing to a gone client must stay harmless
	close(stop)
	if n := <-published; n == 0 {
		t.Fatal("burst published nothing")
	}
	if subs := env.b.Stats().Subscriptions; subs != 0 {
		t.Fatalf("Stats().Subscriptions = %d after disconnect, want 0", subs)
	}
	// The server still serves new streams.
	env.openStream(nil)
}

// TestStreamHTTP2 runs the stream over TLS with HTTP/2.
func TestStreamHTTP2(t *testing.T) {
	b := broker.New("h2", nil)
	h := &Handler{Broker: b}
	var protoMajor atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			protoMajor.Store(int32(r.ProtoMajor))
		}
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	client := srv.Client()
	tr := client.Transport.(*http.Transport)
	if !tr.ForceAttemptHTTP2 {
		tr.ForceAttemptHTTP2 = true
	}
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	t.Cleanup(func() { b.CloseAll(broker.ReasonShutdown) })
	env := &testEnv{t: t, srv: srv, h: h, b: b, client: client, tr: tr}

	s := env.openStream(nil)
	if s.resp.ProtoMajor != 2 {
		t.Fatalf("client proto = %s, want HTTP/2", s.resp.Proto)
	}
	if got := protoMajor.Load(); got != 2 {
		t.Fatalf("server r.ProtoMajor = %d, want 2", got)
	}
	if s.resp.TLS == nil || s.resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("TLS state %+v", s.resp.TLS)
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"} {
		if got := s.resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	env.subscribe(s.id, nil, "posts/*", "posts/r1")
	for i := range 3 {
		env.publish(createPostsR1)
		got := []string{s.nextEvent(5 * time.Second), s.nextEvent(5 * time.Second)}
		slices.Sort(got)
		want := []string{
			"id:" + s.id + "\nevent:posts/*\ndata:" + createPostsR1Data + "\n\n",
			"id:" + s.id + "\nevent:posts/r1\ndata:" + createPostsR1Data + "\n\n",
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: frames %q, want %q", i, got, want)
		}
	}
	// An HTTP/2 write deadline resets the stream when it passes, written or
	// not: a stream quiet for longer than write_timeout must live on.
	p := broker.DefaultPolicy()
	p.WriteTimeout, p.Heartbeat = 200*time.Millisecond, 0
	b.SetPolicy(p)
	quiet := env.openStream(nil) // PB_CONNECT was written with a deadline
	env.subscribe(quiet.id, nil, "posts/*")
	time.Sleep(4 * p.WriteTimeout)
	env.publish(createPostsR1)
	if got := quiet.nextEvent(5 * time.Second); !strings.Contains(got, createPostsR1Data) {
		t.Fatalf("after a quiet spell longer than write_timeout: %q", got)
	}
	s.nextEvent(5 * time.Second)
	s.nextEvent(5 * time.Second)
	quiet.Close()

	// A server-side close ends the HTTP/2 stream cleanly too.
	env.mustClient(s.id).Close(broker.ReasonDisconnected)
	if _, err := s.waitEnd(5 * time.Second); !isCleanEOF(err) {
		t.Fatalf("h2 stream ended with %v", err)
	}
	eventually(t, 5*time.Second, "client forgotten", func() bool { return b.Stats().Clients == 0 })

	// A stream whose body is never read stalls on HTTP/2 flow control; with no
	// write timeout, a server-side close must still end it.
	p = broker.DefaultPolicy()
	p.WriteTimeout, p.ClientQueue, p.Heartbeat = 0, 0, 0
	b.SetPolicy(p)
	resp, err := client.Get(env.url())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c *broker.Client
	eventually(t, 5*time.Second, "stalled h2 client connected", func() bool {
		cs := b.Clients()
		if len(cs) == 1 {
			c = cs[0]
		}
		return c != nil
	})
	env.subscribe(c.ID(), nil, "posts/*")
	pad := strings.Repeat("h", 32<<10)
	for i := 0; c.Pending() < 1<<20; i++ {
		if i == 5000 {
			t.Fatal("h2 writer never blocked")
		}
		env.publish(fmt.Sprintf(`{"action":"update","record":{"id":"r%d","collectionName":"posts","pad":%q}}`, i, pad))
	}
	c.Close(broker.ReasonDisconnected)
	eventually(t, 10*time.Second, "stalled h2 stream ended", func() bool {
		_, ok := b.Client(c.ID())
		return !ok && b.Stats().Clients == 0
	})
}

// stallClient opens a stream on a raw connection that never reads, subscribes it
// to posts/* and publishes until its writer is blocked (bytes pile up in its queue)
// or, with untilClosed, until the broker closes it.
func stallClient(t *testing.T, env *testEnv, untilClosed bool) (*broker.Client, net.Conn) {
	t.Helper()
	before := map[string]bool{}
	for _, c := range env.b.Clients() {
		before[c.ID()] = true
	}
	conn := env.dial()
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "GET /api/realtime HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var c *broker.Client
	eventually(t, 5*time.Second, "stalled client connected", func() bool {
		for _, cl := range env.b.Clients() {
			if !before[cl.ID()] {
				c = cl
				return true
			}
		}
		return false
	})
	env.subscribe(c.ID(), nil, "posts/*")
	pad := strings.Repeat("z", 32<<10)
	for i := 0; untilClosed || c.Pending() < 1<<20; i++ {
		if i == 5000 {
			t.Fatal("writer never blocked")
		}
		select {
		case <-c.Done():
			if untilClosed {
				return c, conn
			}
			t.Fatal("stalled client closed while stalling it")
		default:
		}
		env.publish(fmt.Sprintf(`{"action":"update","record":{"id":"r%d","collectionName":"posts","pad":%q}}`, i, pad))
	}
	return c, conn
}

// TestStreamStalledClientClosedByServer: with no write timeout, a server-side close
// (admin disconnect, shutdown) still ends a stream whose writer is blocked.
func TestStreamStalledClientClosedByServer(t *testing.T) {
	tests := []struct {
		name  string
		close func(env *testEnv, c *broker.Client)
	}{
		{"disconnect", func(env *testEnv, c *broker.Client) { c.Close(broker.ReasonDisconnected) }},
		{"shutdown", func(env *testEnv, c *broker.Client) { env.b.CloseAll(broker.ReasonShutdown) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := broker.DefaultPolicy()
			p.ClientQueue = 0 // unbounded: only the server-side close can end it
			p.WriteTimeout = 0
			p.Heartbeat = 0
			env := newEnv(t, p, nil)
			var reasons atomic.Value
			env.b.OnDisconnect.Bind(func(e *broker.DisconnectEvent) error {
				reasons.Store(e.Reason)
				return e.Next()
			})
			c, _ := stallClient(t, env, false)
			tc.close(env, c)
			eventually(t, 10*time.Second, "blocked stream ended and client forgotten", func() bool {
				_, ok := env.b.Client(c.ID())
				return !ok && env.b.Stats().Clients == 0
			})
			if got, _ := reasons.Load().(string); got != broker.ReasonDisconnected && got != broker.ReasonShutdown {
				t.Fatalf("disconnect reason %q", got)
			}
		})
	}
}

// TestStreamWriteTimeoutEvicts: a flush that misses write_timeout ends the stream.
func TestStreamWriteTimeoutEvicts(t *testing.T) {
	p := broker.DefaultPolicy()
	p.ClientQueue = 0 // unbounded: only the write timeout can evict
	p.WriteTimeout = 200 * time.Millisecond
	p.Heartbeat = 0
	env := newEnv(t, p, nil)
	healthy := env.openStream(nil)
	env.subscribe(healthy.id, nil, "other/*")
	c, _ := stallClient(t, env, true)
	eventually(t, 10*time.Second, "timed-out client forgotten", func() bool {
		_, ok := env.b.Client(c.ID())
		return !ok
	})
	if _, ok := env.b.Client(healthy.id); !ok {
		t.Fatal("healthy client evicted")
	}
	if n := env.b.Stats().Evictions[broker.ReasonWriteTimeout]; n == 0 {
		t.Fatalf("write timeout not counted as an eviction (evictions %v)", env.b.Stats().Evictions)
	}
}

// TestHijackAdoptsPlainAndTLSStreams: with hijack on, HTTP/1.1 streams, plain
// and over TLS, are served by the broker's writers: opening 40 of them adds
// no goroutine per stream on the server, and each still gets its events.
func TestHijackAdoptsPlainAndTLSStreams(t *testing.T) {
	if !broker.AdoptSupported {
		t.Skip("no hijacked streams on this platform")
	}
	for _, withTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", withTLS), func(t *testing.T) {
			p := broker.DefaultPolicy()
			p.Heartbeat = 0
			env := newEnvTLS(t, p, func(h *Handler) { h.Hijack = true }, withTLS)
			const n = 40
			before := runtime.NumGoroutine()
			conns := make([]net.Conn, n)
			readers := make([]*bufio.Reader, n)
			for i := range conns {
				conns[i] = env.dial()
				t.Cleanup(func() { conns[i].Close() })
				_ = conns[i].SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(conns[i], "GET /api/realtime HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				readers[i] = bufio.NewReader(conns[i])
				id := readUntil(t, readers[i], `"clientId":"`)
				env.subscribe(id[:40], nil, "posts/*")
			}
			runtime.Gosched()
			if grown := runtime.NumGoroutine() - before; grown >= n/2 {
				t.Fatalf("%d goroutines more for %d open streams: they were not adopted", grown, n)
			}
			env.publish(`{"action":"create","record":{"id":"r1","collectionName":"posts","title":"adopted"}}`)
			for i, r := range readers {
				if got := readUntil(t, r, `"title":"`); !strings.HasPrefix(got, `adopted"`) {
					t.Fatalf("stream %d: event %q", i, got)
				}
			}
		})
	}
}

// readUntil reads r until marker and returns the rest of that line.
func readUntil(t *testing.T, r *bufio.Reader, marker string) string {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream for %q: %v", marker, err)
		}
		if i := strings.Index(line, marker); i >= 0 {
			return line[i+len(marker):]
		}
	}
}
