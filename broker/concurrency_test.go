package broker

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkIndexConsistent verifies that the index holds exactly the subscriptions
// of the registered clients and that the stats agree.
func checkIndexConsistent(t *testing.T, b *Broker) {
	t.Helper()
	want := map[string]bool{}
	total := 0
	for _, c := range b.Clients() {
		for _, topic := range c.Subscriptions() {
			want[TopicBase(topic)+"|"+topic+"|"+c.ID()] = true
			total++
		}
	}
	got := indexEntries(b)
	for _, e := range got {
		if !want[e] {
			t.Fatalf("stray index entry %q", e)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("index has %d entries, clients hold %d", len(got), len(want))
	}
	if st := b.Stats(); st.Subscriptions != int64(total) {
		t.Fatalf("stats subscriptions %d, clients hold %d", st.Subscriptions, total)
	}
}

func TestConcurrentSetSubscriptionsOneClient(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)
	sets := [][]string{
		{"a", "b", "c"},
		{"b", "posts/*"},
		{},
		{"posts/*", "posts/r1", "*", "x?y=1"},
		{"a"},
		{"z1", "z2", "z3", "z4", "z5", "z6"},
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 300 {
				if err := b.SetSubscriptions(c, sets[(w+i)%len(sets)]); err != nil {
					t.Error(err)
					return
				}
				_ = c.Subscriptions()
				_ = c.HasSubscription("a")
			}
		})
	}
	// publish meanwhile
	wg.Go(func() {
		for i := range 300 {
			b.Publish(postEvent(t, "update", "r1", ""))
			b.SendMessage(&Message{Name: "a", Data: []byte(fmt.Sprint(i))})
			drain(c)
		}
	})
	wg.Wait()
	got := c.Subscriptions()
	found := false
	for _, s := range sets {
		sorted := slices.Sorted(slices.Values(s))
		if slices.Equal(sorted, got) || (len(s) == 0 && len(got) == 0) {
			found = true
		}
	}
	if !found {
		t.Fatalf("final set %q is none of the requested sets", got)
	}
	checkIndexConsistent(t, b)
}

// Publishing while clients connect, subscribe, receive and disconnect.
func TestPublishDuringConnectDisconnect(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var published atomic.Int64
	var pubWG sync.WaitGroup
	for range 2 {
		pubWG.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				b.Publish(postEvent(t, "create", fmt.Sprintf("r%d", i%50), ""))
				b.SendMessage(&Message{Name: "custom", Data: []byte(`1`)})
				published.Add(1)
			}
		})
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 60 {
				c, err := b.Connect("ip")
				if err != nil {
					t.Error(err)
					return
				}
				topics := []string{"posts/*", fmt.Sprintf("posts/r%d", i%50), "custom", "*"}[:1+(w+i)%4]
				if err := b.SetSubscriptions(c, topics); err != nil {
					t.Error(err)
				}
				sctx, scancel := context.WithCancel(ctx)
				defer scancel()
				done := make(chan string)
				go func() { done <- c.Serve(sctx, &recStream{}) }()
				switch i % 3 {
				case 0: // client goes away
					scancel()
					b.Disconnect(c, <-done)
				case 1: // server-side disconnect while the stream runs
					b.Disconnect(c, ReasonDisconnected)
					if r := <-done; r != ReasonDisconnected {
						t.Errorf("Serve returned %q", r)
					}
					scancel()
				case 2: // subscribe again concurrently with the disconnect
					var inner sync.WaitGroup
					inner.Go(func() { _ = b.SetSubscriptions(c, []string{"late", "posts/*"}) })
					b.Disconnect(c, ReasonDisconnected)
					inner.Wait()
					<-done
					scancel()
				}
			}
		})
	}
	wg.Wait()
	cancel()
	pubWG.Wait()
	if published.Load() == 0 {
		t.Fatal("nothing published")
	}
	st := b.Stats()
	if st.Clients != 0 || st.Subscriptions != 0 || len(b.Clients()) != 0 {
		t.Fatalf("left over: %+v", st)
	}
	if e := indexEntries(b); len(e) != 0 {
		t.Fatalf("index not empty: %d entries, e.g. %q", len(e), e[0])
	}
}

// Disconnect while Serve is inside Write: the write completes, nothing more is
// queued, and Serve returns the disconnect reason.
func TestDisconnectMidWrite(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	mustSubscribe(t, b, c, "posts/*")
	s := &recStream{gate: make(chan struct{}), inWrite: make(chan struct{}, 1)}
	sv := serve(t, b, c, s)
	<-s.inWrite // Serve is blocked writing PB_CONNECT

	var wg sync.WaitGroup
	wg.Go(func() { b.Disconnect(c, ReasonDisconnected) })
	wg.Go(func() {
		for i := range 100 {
			b.Publish(postEvent(t, "create", fmt.Sprintf("r%d", i), ""))
		}
	})
	wg.Wait()
	close(s.gate)
	if r := sv.waitReason(t); r != ReasonDisconnected {
		t.Fatalf("reason %q", r)
	}
	out := s.String()
	if !strings.HasPrefix(out, connectFrameFor(c.ID())) {
		t.Fatalf("stream %q", out)
	}
	// Anything after PB_CONNECT was queued before the disconnect; nothing is half-written.
	for _, f := range parseFrames(out) {
		if strings.HasPrefix(f.Event, "INCOMPLETE") || strings.HasPrefix(f.Event, "BAD") {
			t.Fatalf("broken frame %q", f.Event)
		}
	}
	if st := b.Stats(); st.Clients != 0 || st.Subscriptions != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Many clients, each served, all receiving concurrently published events.
func TestConcurrentFanoutManyClients(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.ClientQueue = 0
	b := New("t", p)
	var svs []*served
	for i := range 50 {
		c := mustConnect(t, b)
		mustSubscribe(t, b, c, []string{"posts/*", "*", "posts"}[i%3])
		svs = append(svs, serve(t, b, c, nil))
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				b.Publish(postEvent(t, "create", fmt.Sprintf("w%d-%d", w, i), ""))
			}
		})
	}
	wg.Wait()
	var first []string
	for i, sv := range svs {
		ids := recordIDs(t, sv.waitFrames(t, 200))
		if i == 0 {
			first = ids
		} else if !slices.Equal(ids, first) {
			t.Fatalf("client %d order differs", i)
		}
	}
	if st := b.Stats(); st.MessagesOut < 50*201 {
		t.Fatalf("messages out %d", st.MessagesOut)
	}
}

// A blocking write in progress (Serve's) makes its stream a refusing one for
// max_queued_bytes only once it has been stuck for stuckWrite: a reader
// caught mid-write by a budget check is not taken for a stalled one.
func TestBlockingWriteRefusesOnlyOnceStuck(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	s := &recStream{gate: make(chan struct{}), inWrite: make(chan struct{}, 1)}
	sv := serve(t, b, c, s)
	<-s.inWrite // Serve is blocked writing PB_CONNECT
	start := time.Now()
	h := c.pendingBytes()
	n, refusing := h.n, h.refusing
	if n == 0 || (refusing && time.Since(start) < stuckWrite) {
		t.Fatalf("pending %d, refusing %v right after the write started", n, refusing)
	}
	time.Sleep(stuckWrite + 20*time.Millisecond)
	if !c.pendingBytes().refusing {
		t.Fatalf("not refusing after a write stuck for %v", stuckWrite)
	}
	close(s.gate)
	b.Disconnect(c, ReasonDisconnected)
	if r := sv.waitReason(t); r != ReasonDisconnected {
		t.Fatalf("reason %q", r)
	}
	if c.pendingBytes().refusing {
		t.Fatal("still refusing after the write returned")
	}
}
