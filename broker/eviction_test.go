package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestQueueFullEvicts(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.ClientQueue = 1024
	b := New("t", p)
	var gotReason, stuckID string
	b.OnDisconnect.Bind(func(e *DisconnectEvent) error {
		if e.Client.ID() == stuckID {
			gotReason = e.Reason
		}
		return e.Next()
	})
	stuck := mustConnect(t, b) // never served: its queue only grows
	stuckID = stuck.ID()
	live := mustConnect(t, b)
	mustSubscribe(t, b, stuck, "posts/*")
	mustSubscribe(t, b, live, "posts/*")
	sv := serve(t, b, live, nil)

	const n = 20 // 20 frames of ~200 bytes: well past 1024 bytes
	for i := range n {
		b.Publish(postEvent(t, "create", "r"+strconv.Itoa(i), `,"pad":"0123456789012345678901234567890123456789"`))
		sv.waitFrames(t, i+1) // the live client keeps up, so only the stuck one overflows
		if pending(stuck) != "" && len(pending(stuck)) > p.ClientQueue {
			t.Fatalf("queue grew to %d bytes past the %d limit", len(pending(stuck)), p.ClientQueue)
		}
	}
	select {
	case <-stuck.Done():
	default:
		t.Fatal("stuck client was not closed")
	}
	if r := stuck.closeReason(); r != ReasonQueueFull {
		t.Fatalf("reason %q, want %q", r, ReasonQueueFull)
	}
	if got := pending(stuck); got != "" {
		t.Fatalf("evicted client still holds %d bytes", len(got))
	}
	st := b.Stats()
	if st.Evictions[ReasonQueueFull] != 1 || st.Evictions[ReasonWriteTimeout] != 0 || st.Evictions[ReasonWriteError] != 0 {
		t.Fatalf("evictions %v", st.Evictions)
	}
	if ids := recordIDs(t, sv.waitFrames(t, n)); len(ids) != n || ids[n-1] != "r"+strconv.Itoa(n-1) {
		t.Fatalf("live client got %q", ids)
	}
	// Serve on an evicted client returns at once with the eviction reason.
	if r := stuck.Serve(context.Background(), &recStream{}); r != ReasonQueueFull {
		t.Fatalf("Serve on evicted client = %q", r)
	}
	b.Disconnect(stuck, ReasonDisconnected)
	if gotReason != ReasonQueueFull {
		t.Fatalf("OnDisconnect reason %q, want %q (the first reason wins)", gotReason, ReasonQueueFull)
	}
	if _, ok := b.Client(stuck.ID()); ok {
		t.Fatal("evicted client still registered after Disconnect")
	}
}

// A single frame larger than the limit still goes to a client with an empty queue.
func TestQueueLimitAllowsOneLargeFrame(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.ClientQueue = 64
	b := New("t", p)
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)
	mustSubscribe(t, b, c, "posts/*")
	drain(c)
	b.Publish(postEvent(t, "create", "r1", `,"pad":"0123456789012345678901234567890123456789"`))
	if pending(c) == "" || c.closeReason() != "" {
		t.Fatalf("large frame refused on an empty queue (reason %q)", c.closeReason())
	}
	b.Publish(postEvent(t, "create", "r2", ""))
	if c.closeReason() != ReasonQueueFull {
		t.Fatalf("second frame past the limit: reason %q", c.closeReason())
	}
}

func TestWriteTimeoutEvicts(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.WriteTimeout = 50 * time.Millisecond
	p.Heartbeat = 0
	b := New("t", p)
	c := mustConnect(t, b)
	server, client := net.Pipe() // nobody reads client: every Write blocks
	defer client.Close()
	defer server.Close()
	// Without a working deadline Serve would block forever; fail instead of hanging.
	watchdog := time.AfterFunc(10*time.Second, func() { server.Close() })
	defer watchdog.Stop()
	start := time.Now()
	r := c.Serve(context.Background(), connStream{server})
	b.Disconnect(c, r)
	if r != ReasonWriteTimeout {
		t.Fatalf("reason %q, want %q", r, ReasonWriteTimeout)
	}
	if el := time.Since(start); el < p.WriteTimeout {
		t.Fatalf("returned after %v, before the %v deadline", el, p.WriteTimeout)
	}
	if st := b.Stats(); st.Evictions[ReasonWriteTimeout] != 1 || st.Clients != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The same over real TCP: a peer that never reads fills the socket buffers.
func TestWriteTimeoutEvictsTCP(t *testing.T) {
	t.Parallel()
	conn, peer := tcpPair(t) // the peer never reads
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetWriteBuffer(4096)
	_ = peer.(*net.TCPConn).SetReadBuffer(4096)

	p := DefaultPolicy()
	p.WriteTimeout = 100 * time.Millisecond
	p.ClientQueue = 0
	p.Heartbeat = 0
	b := New("t", p)
	c := mustConnect(t, b)
	mustSubscribe(t, b, c, "big")
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'x'
	}
	data := append(append([]byte(`"`), big...), '"')
	// 16 MiB queued at once: far more than loopback buffers can absorb.
	for range 16 {
		b.SendMessage(&Message{Name: "big", Data: data})
	}
	watchdog := time.AfterFunc(10*time.Second, func() { conn.Close() })
	defer watchdog.Stop()
	r := c.Serve(context.Background(), connStream{conn})
	b.Disconnect(c, r)
	if r != ReasonWriteTimeout {
		t.Fatalf("reason %q, want %q", r, ReasonWriteTimeout)
	}
	if b.Stats().Evictions[ReasonWriteTimeout] != 1 {
		t.Fatalf("evictions %v", b.Stats().Evictions)
	}
}

func TestWriteErrorEvicts(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name string
		s    *recStream
		want string
	}{
		{"write error", &recStream{writeErr: boom}, ReasonWriteError},
		{"flush error", &recStream{flushErr: boom}, ReasonWriteError},
		{"closed pipe", nil, ReasonWriteError},
		{"timeout error from flush", &recStream{flushErr: timeoutErr{}}, ReasonWriteTimeout},
		{"wrapped deadline", &recStream{writeErr: wrapErr{context.DeadlineExceeded}}, ReasonWriteTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := New("t", nil)
			c := mustConnect(t, b)
			var s Stream = tt.s
			if tt.s == nil {
				server, client := net.Pipe()
				client.Close()
				defer server.Close()
				s = connStream{server}
			}
			r := c.Serve(context.Background(), s)
			b.Disconnect(c, r)
			if r != tt.want {
				t.Fatalf("reason %q, want %q", r, tt.want)
			}
			if got := b.Stats().Evictions[tt.want]; got != 1 {
				t.Fatalf("evictions %v", b.Stats().Evictions)
			}
			if c.Delivered() != 0 {
				t.Fatalf("Delivered = %d after a failed write", c.Delivered())
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

type wrapErr struct{ err error }

func (e wrapErr) Error() string { return "write: " + e.err.Error() }
func (e wrapErr) Unwrap() error { return e.err }

func TestContextCancelIsClientGone(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	sv := serve(t, b, c, nil)
	if err := waitUntil(func() bool { return c.Delivered() == 1 }); err != nil {
		t.Fatal("PB_CONNECT not delivered")
	}
	if r := sv.stop(); r != ReasonClientGone {
		t.Fatalf("reason %q", r)
	}
	st := b.Stats()
	for reason, n := range st.Evictions {
		if n != 0 {
			t.Fatalf("client gone counted as eviction %s", reason)
		}
	}
	if st.Clients != 0 {
		t.Fatalf("clients %d", st.Clients)
	}
}

// A write failing because the request context ended is the client going away, not an eviction.
func TestWriteErrorAfterCancelIsClientGone(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	s := &cancelOnWrite{cancel: cancel}
	r := c.Serve(ctx, s)
	b.Disconnect(c, r)
	if r != ReasonClientGone {
		t.Fatalf("reason %q", r)
	}
	if st := b.Stats(); st.Evictions[ReasonWriteError] != 0 {
		t.Fatalf("evictions %v", st.Evictions)
	}
}

type cancelOnWrite struct{ cancel context.CancelFunc }

func (s *cancelOnWrite) Write(p []byte) (int, error)      { s.cancel(); return 0, io.ErrClosedPipe }
func (s *cancelOnWrite) Flush() error                     { return nil }
func (s *cancelOnWrite) SetWriteDeadline(time.Time) error { return nil }

func TestCloseAndDisconnectIdempotent(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	disconnects := 0
	b.OnDisconnect.Bind(func(e *DisconnectEvent) error { disconnects++; return e.Next() })
	c := mustConnect(t, b)
	keep := mustConnect(t, b)
	defer b.Disconnect(keep, ReasonDisconnected)
	mustSubscribe(t, b, c, "posts/*", "posts/r1", "*", "custom")
	mustSubscribe(t, b, keep, "posts/*")

	c.Close(ReasonShutdown)
	c.Close(ReasonIdleTimeout) // no panic (double close of done), first reason kept
	if c.closeReason() != ReasonShutdown {
		t.Fatalf("reason %q", c.closeReason())
	}
	b.Disconnect(c, ReasonDisconnected)
	b.Disconnect(c, ReasonDisconnected)
	if disconnects != 1 {
		t.Fatalf("OnDisconnect ran %d times", disconnects)
	}
	if _, ok := b.Client(c.ID()); ok {
		t.Fatal("Client(id) still finds it")
	}
	if slices.Contains(b.Clients(), c) {
		t.Fatal("Clients() still lists it")
	}
	if subs := c.Subscriptions(); len(subs) != 0 {
		t.Fatalf("subscriptions left: %q", subs)
	}
	for _, e := range indexEntries(b) {
		if e != "posts/*|posts/*|"+keep.ID() {
			t.Fatalf("index entry left: %q", e)
		}
	}
	st := b.Stats()
	if st.Clients != 1 || st.Subscriptions != 1 {
		t.Fatalf("clients %d subscriptions %d", st.Clients, st.Subscriptions)
	}
	// Publishing afterwards enqueues nothing for it and does not panic.
	// (What was queued before a clean end stays, for its writer to flush.)
	drain(keep)
	drain(c)
	b.Publish(postEvent(t, "create", "r1", ""))
	b.SendMessage(&Message{Name: "custom", Data: []byte(`1`)})
	if got := pending(c); got != "" {
		t.Fatalf("disconnected client queued %q", got)
	}
	if got := drain(keep); got == "" {
		t.Fatal("remaining client got nothing")
	}
	// Serve on a disconnected client returns immediately.
	if r := c.Serve(context.Background(), &recStream{}); r != ReasonShutdown {
		t.Fatalf("Serve after close = %q", r)
	}
}

func TestCloseAllEndsStreams(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	var svs []*served
	for range 5 {
		svs = append(svs, serve(t, b, mustConnect(t, b), nil))
	}
	b.CloseAll(ReasonShutdown)
	for _, sv := range svs {
		if r := sv.waitReason(t); r != ReasonShutdown {
			t.Fatalf("reason %q", r)
		}
	}
	if err := waitUntil(func() bool { return b.Stats().Clients == 0 }); err != nil {
		t.Fatalf("clients left: %d", b.Stats().Clients)
	}
}

func TestMaxClients(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.MaxClients = 2
	b := New("t", p)
	c1, c2 := mustConnect(t, b), mustConnect(t, b)
	for range 3 {
		if c, err := b.Connect("ip"); !errors.Is(err, ErrTooManyClients) || c != nil {
			t.Fatalf("third client: %v, %v", c, err)
		}
	}
	if st := b.Stats(); st.Clients != 2 || st.Connects != 2 {
		t.Fatalf("stats %+v", st)
	}
	b.Disconnect(c1, ReasonDisconnected)
	c3 := mustConnect(t, b)
	if _, err := b.Connect("ip"); !errors.Is(err, ErrTooManyClients) {
		t.Fatalf("over the limit again: %v", err)
	}
	b.Disconnect(c2, ReasonDisconnected)
	b.Disconnect(c3, ReasonDisconnected)
	if n := len(b.Clients()); n != 0 {
		t.Fatalf("%d clients left", n)
	}
}

func TestClientsListAndLookup(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	var want []*Client
	for range 50 {
		want = append(want, mustConnect(t, b))
	}
	got := b.Clients()
	if len(got) != len(want) {
		t.Fatalf("%d clients", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].ConnectedAt().Before(got[i-1].ConnectedAt()) {
			t.Fatal("Clients() not oldest first")
		}
	}
	for _, c := range want {
		if got, ok := b.Client(c.ID()); !ok || got != c {
			t.Fatalf("Client(%s) = %v, %v", c.ID(), got, ok)
		}
		if c.IP() != "127.0.0.1" {
			t.Fatalf("IP %q", c.IP())
		}
		b.Disconnect(c, ReasonDisconnected)
	}
	if _, ok := b.Client("nope"); ok {
		t.Fatal("unknown id found")
	}
}

func TestClientState(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)
	c.Set("a", 1)
	c.Set("b", "x")
	c.Unset("b")
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get a = %v %v", v, ok)
	}
	if _, ok := c.Get("b"); ok {
		t.Fatal("b not unset")
	}
	st := c.State()
	st["a"] = 2 // a copy
	if v, _ := c.Get("a"); v != 1 || len(c.State()) != 1 {
		t.Fatalf("State is not a copy: %v", c.State())
	}
	a := &Auth{ID: "u1", Collection: "users"}
	c.SetAuth(a)
	if c.Auth() != a || c.Auth().Identity() != "users/u1" {
		t.Fatal("auth")
	}
	if (*Auth)(nil).Identity() != "" || !SameIdentity(nil, nil) || SameIdentity(a, nil) ||
		!SameIdentity(a, &Auth{ID: "u1", Collection: "users", Record: map[string]any{"x": 1}}) ||
		SameIdentity(a, &Auth{ID: "u1", Collection: "admins"}) {
		t.Fatal("identity comparisons")
	}
}
