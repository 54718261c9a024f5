package broker

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawQueue takes c's queued bytes as written, ids with positions.
func rawQueue(c *Client) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := string(c.queue.take(nil))
	c.frames = 0
	return s
}

// lastID is the id of the last frame in raw.
func lastID(t *testing.T, raw string) string {
	t.Helper()
	fs := parseFrames(raw)
	if len(fs) == 0 {
		t.Fatal("no frames")
	}
	return fs[len(fs)-1].ID
}

func TestResumeReplaysMissedOnceInOrder(t *testing.T) {
	t.Parallel()
	b := New("resume", nil)
	c, last := dropAfterFirstEvent(t, b, "posts/*", "chat")

	b.Publish(postEvent(t, "create", "r2", ""))
	b.Publish(mustEvent(t, `{"action":"create","record":{"collectionName":"other","id":"o1"}}`)) // not subscribed
	b.SendMessage(&Message{Name: "chat", Data: json.RawMessage(`"missed"`)})
	b.SendMessage(&Message{Name: "chat", Data: json.RawMessage(`"not for it"`), Clients: []string{"someone-else"}})
	b.Publish(postEvent(t, "update", "r1", ""))

	r, resumed, err := b.Resume("127.0.0.1", last)
	if err != nil || !resumed || r.ID() != c.ID() {
		t.Fatalf("Resume = %v, resumed %v, err %v; want client %s resumed", r, resumed, err, c.ID())
	}
	b.Publish(postEvent(t, "delete", "r2", "")) // live, after the replay
	got := rawQueue(r)
	fs := parseFrames(got)
	wantEvents := []string{"PB_CONNECT", "posts/*", "chat", "posts/*", "posts/*"}
	if len(fs) != len(wantEvents) {
		t.Fatalf("frames %q, want %v", got, wantEvents)
	}
	if fs[0].ID != c.ID() || fs[0].Data != `{"clientId":"`+c.ID()+`","resumed":true}` {
		t.Errorf("PB_CONNECT %+v, want id %s and resumed:true", fs[0], c.ID())
	}
	wantPos := []uint64{0, 2, 4, 6, 7}
	wantData := []string{"", `"id":"r2"`, `"missed"`, `"action":"update"`, `"action":"delete"`}
	for i, f := range fs {
		if f.Event != wantEvents[i] || !strings.Contains(f.Data, wantData[i]) {
			t.Errorf("frame %d = %+v, want event %s with %s", i, f, wantEvents[i], wantData[i])
		}
		if i == 0 {
			continue
		}
		id, ok := ParseEventID(f.ID)
		if !ok || id.ClientID != c.ID() || id.Position != wantPos[i] {
			t.Errorf("frame %d id %q, want position %d", i, f.ID, wantPos[i])
		}
	}
	if subs := r.Subscriptions(); len(subs) != 2 {
		t.Errorf("subscriptions after resume %v, want chat and posts/*", subs)
	}

	// A resume from PB_CONNECT's bare id replays from when the client connected.
	b.Disconnect(r, ReasonClientGone)
	b.Publish(postEvent(t, "create", "r3", ""))
	r2, resumed, _ := b.Resume("127.0.0.1", r.ID()+"."+b.Epoch()+".7")
	if !resumed {
		t.Fatal("second resume refused")
	}
	if fs := parseFrames(withoutPositions(rawQueue(r2))); len(fs) != 2 || !strings.Contains(fs[1].Data, `"r3"`) {
		t.Errorf("second resume frames %+v, want PB_CONNECT and r3", fs)
	}
}

func TestResumeRefused(t *testing.T) {
	t.Parallel()
	small := DefaultPolicy()
	small.ResumeBytes = 3 * recordOverhead
	for _, tt := range []struct {
		name   string
		policy *Policy
		id     func(b *Broker, c *Client, last string) string
		ip     string
		reason string
	}{
		{name: "another IP", ip: "10.0.0.9"},
		{name: "forged client id", id: func(b *Broker, c *Client, last string) string {
			return strings.Repeat("x", 40) + "." + b.Epoch() + ".1"
		}},
		{name: "another epoch", id: func(b *Broker, c *Client, last string) string { return c.ID() + ".ZZZZZZZZ.1" }},
		{name: "a position not published yet", id: func(b *Broker, c *Client, last string) string {
			return c.ID() + "." + b.Epoch() + ".999"
		}},
		{name: "oversized", id: func(b *Broker, c *Client, last string) string { return last + strings.Repeat("1", MaxEventIDLen) }},
		{name: "malformed", id: func(b *Broker, c *Client, last string) string { return "id:" + last }},
		{name: "empty", id: func(b *Broker, c *Client, last string) string { return "" }},
		{name: "disconnected by an admin", reason: ReasonDisconnected},
		{name: "log wrapped", policy: small},
		{name: "resume off", policy: func() *Policy { p := DefaultPolicy(); p.ResumeWindow = 0; return p }()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := New("refused", tt.policy)
			c := mustConnect(t, b)
			mustSubscribe(t, b, c, "posts/*")
			b.Publish(postEvent(t, "create", "r1", ""))
			last := lastID(t, rawQueue(c))
			reason := tt.reason
			if reason == "" {
				reason = ReasonClientGone
			}
			b.Disconnect(c, reason)
			for i := 0; i < 5; i++ {
				b.SendMessage(&Message{Name: "chat", Data: json.RawMessage(`1`)})
			}
			id, ip := last, "127.0.0.1"
			if tt.id != nil {
				id = tt.id(b, c, last)
			}
			if tt.ip != "" {
				ip = tt.ip
			}
			r, resumed, err := b.Resume(ip, id)
			if err != nil {
				t.Fatal(err)
			}
			if resumed || r.ID() == c.ID() {
				t.Fatalf("resumed %v as %s, want a new client", resumed, r.ID())
			}
			if got := withoutPositions(rawQueue(r)); got != "id:"+r.ID()+"\nevent:PB_CONNECT\ndata:{\"clientId\":\""+r.ID()+"\",\"resumed\":false}\n\n" {
				t.Errorf("frames %q, want only PB_CONNECT with resumed:false", got)
			}
			if len(r.Subscriptions()) != 0 {
				t.Errorf("a new client has subscriptions %v", r.Subscriptions())
			}
		})
	}
}

// TestResumeOnce: a session is resumed once; the same Last-Event-ID again
// (replayed, or from a second tab) gets a new client.
func TestResumeOnce(t *testing.T) {
	t.Parallel()
	b := New("once", nil)
	c, last := dropAfterFirstEvent(t, b, "posts/*")
	var wg sync.WaitGroup
	results := make([]bool, 8)
	for i := range results {
		wg.Go(func() {
			_, results[i], _ = b.Resume("127.0.0.1", last)
		})
	}
	wg.Wait()
	n := 0
	for _, ok := range results {
		if ok {
			n++
		}
	}
	// A resume of a client still connected ends that stream first and takes
	// over, so concurrent resumes may succeed one after another, never together.
	if n < 1 {
		t.Fatalf("%d of %d concurrent resumes succeeded, want at least one", n, len(results))
	}
	live := 0
	for _, cl := range b.Clients() {
		if cl.ID() == c.ID() {
			live++
		}
	}
	if live != 1 {
		t.Errorf("%d live clients with id %s, want 1", live, c.ID())
	}
}

// TestResumeRacingSubscribe: a subscription POST for the same client id
// racing the resume ends with one of the two subscription sets, no panic,
// no stray index entry.
func TestResumeRacingSubscribe(t *testing.T) {
	t.Parallel()
	for i := 0; i < 50; i++ {
		b := New("race", nil)
		c, last := dropAfterFirstEvent(t, b, "posts/*")
		var wg sync.WaitGroup
		var r *Client
		wg.Go(func() { r, _, _ = b.Resume("127.0.0.1", last) })
		wg.Go(func() {
			if cl, ok := b.Client(c.ID()); ok {
				_ = b.SetSubscriptions(cl, []string{"chat"})
			}
		})
		wg.Wait()
		subs := strings.Join(r.Subscriptions(), ",")
		if subs != "posts/*" && subs != "chat" {
			t.Fatalf("subscriptions %q after the race", subs)
		}
		b.Disconnect(r, ReasonDisconnected)
		if n := b.stats.subscriptions.Load(); n != 0 {
			t.Fatalf("%d subscriptions counted after every client left", n)
		}
	}
}

// TestResumeDroppedAfterResumedConnect: a resumed stream that drops again
// after PB_CONNECT, before reading its replay, comes back with PB_CONNECT's
// bare client id (what EventSource remembers) and gets that replay again,
// not only what was published after its first resume.
func TestResumeDroppedAfterResumedConnect(t *testing.T) {
	t.Parallel()
	b := New("resume", nil)
	c, last := dropAfterFirstEvent(t, b, "posts/*")
	b.Publish(postEvent(t, "create", "r2", ""))
	b.Publish(postEvent(t, "create", "r3", ""))

	r, resumed, _ := b.Resume("127.0.0.1", last)
	if !resumed {
		t.Fatal("first resume refused")
	}
	fs := parseFrames(rawQueue(r))
	if len(fs) != 3 || fs[0].Event != "PB_CONNECT" || fs[0].ID != c.ID() {
		t.Fatalf("first resume frames %+v, want PB_CONNECT (bare id) and r2, r3", fs)
	}
	b.Disconnect(r, ReasonClientGone) // only PB_CONNECT reached the client
	b.Publish(postEvent(t, "create", "r4", ""))

	r2, resumed, _ := b.Resume("127.0.0.1", fs[0].ID)
	if !resumed {
		t.Fatal("resume from the resumed PB_CONNECT's id refused")
	}
	var got []string
	for _, f := range dataFrames(parseFrames(rawQueue(r2))) {
		var d struct{ Record struct{ ID string } }
		if err := json.Unmarshal([]byte(f.Data), &d); err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Record.ID)
	}
	if strings.Join(got, ",") != "r2,r3,r4" {
		t.Fatalf("second resume replayed %v, want r2, r3, r4", got)
	}
}

// TestResumeRacingServerDisconnect: a client that reconnects the moment the
// server notices its drop (the server's Disconnect and the client's Resume
// run at once) is resumed, not reset: between the server unregistering the
// old stream and keeping its session, a resume waits for the session.
func TestResumeRacingServerDisconnect(t *testing.T) {
	t.Parallel()
	b := New("resume", nil)
	refused := 0
	const rounds = 3000
	for range rounds {
		c := mustConnect(t, b)
		mustSubscribe(t, b, c, "posts/*")
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { <-start; b.Disconnect(c, ReasonClientGone) })
		var r *Client
		var resumed bool
		var err error
		wg.Go(func() { <-start; r, resumed, err = b.Resume("127.0.0.1", c.ID()) })
		close(start)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if !resumed || r.ID() != c.ID() || len(r.Subscriptions()) != 1 {
			refused++
		}
		b.Disconnect(r, ReasonDisconnected)
	}
	if refused > 0 {
		t.Fatalf("%d of %d resumes racing the server's own disconnect were refused", refused, rounds)
	}
}

// dropAfterFirstEvent connects a client subscribed to topics, publishes one
// event (r1) to it and drops its stream; last is the id of that event's frame.
func dropAfterFirstEvent(t *testing.T, b *Broker, topics ...string) (c *Client, last string) {
	t.Helper()
	c = mustConnect(t, b)
	mustSubscribe(t, b, c, topics...)
	b.Publish(postEvent(t, "create", "r1", ""))
	last = lastID(t, rawQueue(c))
	b.Disconnect(c, ReasonClientGone)
	return c, last
}

// lateTransport is a memory transport whose deliveries wait at gate while
// held: a record is in the log before it reaches the broker, as with both
// real transports (each logs a record, then delivers it).
type lateTransport struct {
	*MemoryTransport
	held atomic.Bool
	gate chan struct{}
}

func (t *lateTransport) Start(deliver func(*Record), from Position) error {
	return t.MemoryTransport.Start(func(r *Record) {
		if t.held.Load() {
			<-t.gate
		}
		deliver(r)
	}, from)
}

// A resume that reads the log between a record's logging and its delivery
// replays it, and is subscribed when the delivery comes: the client gets it
// once (found by TestCaddyReloadUnderLoad: the same frame id twice in a row).
func TestResumeReplayingARecordNotDeliveredYet(t *testing.T) {
	t.Parallel()
	b := New("resume-late", nil)
	lt := &lateTransport{MemoryTransport: NewMemoryTransport(time.Minute, 1<<20)}
	if err := b.UseTransport(lt); err != nil {
		t.Fatal(err)
	}
	c, last := dropAfterFirstEvent(t, b, "posts/*")
	r, got := lt.resumeMidDelivery(t, b, last, "r2", "r3")
	if r.ID() != c.ID() || !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("positions after the resume %v, want [2 3]", got)
	}

	// Resuming after a record this node has logged but not delivered yet
	// (the client had it from another node): nothing to replay, and the
	// delivery still to come is not sent again.
	b.Disconnect(r, ReasonClientGone)
	if _, got := lt.resumeMidDelivery(t, b, c.ID()+"."+b.Epoch()+".4", "r4", "r5"); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("positions after resuming from 4 %v, want [5]", got)
	}
}

// resumeMidDelivery publishes record and, while it is logged but its
// delivery waits, resumes with lastEventID; then it lets the delivery go on,
// publishes next, and returns the resumed client and the positions of the
// frames it got after PB_CONNECT.
func (lt *lateTransport) resumeMidDelivery(t *testing.T, b *Broker, lastEventID, record, next string) (*Client, []uint64) {
	t.Helper()
	lt.gate = make(chan struct{})
	lt.held.Store(true)
	want := lt.Last() + 1
	published := make(chan struct{})
	go func() {
		defer close(published)
		b.Publish(postEvent(t, "create", record, ""))
	}()
	for lt.Last() < want {
		time.Sleep(time.Millisecond)
	}
	r, resumed, err := b.Resume("127.0.0.1", lastEventID)
	if err != nil || !resumed {
		t.Fatalf("Resume(%s): resumed %v, err %v", lastEventID, resumed, err)
	}
	lt.held.Store(false)
	close(lt.gate) // the delivery goes on
	<-published
	b.Publish(postEvent(t, "create", next, ""))
	var got []uint64
	for _, f := range parseFrames(rawQueue(r))[1:] {
		id, _ := ParseEventID(f.ID)
		got = append(got, id.Position)
	}
	return r, got
}
