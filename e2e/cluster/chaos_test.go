package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// follower is an SDK-like client through the load balancer: when its stream
// ends it reconnects with Last-Event-ID, and it keeps what it received.
type follower struct {
	c    *testCluster
	name string

	mu       sync.Mutex
	id       string
	lastID   string
	got      []delivered
	resumes  int
	resets   []string // reconnects answered resumed:false
	err      error
	stream   *sseClient
	finished chan struct{}
}

func (f *follower) received() []delivered {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func (f *follower) fail(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

// run keeps the client connected until stop.
func (f *follower) run(stop <-chan struct{}) {
	defer close(f.finished)
	for {
		select {
		case <-stop:
			return
		default:
		}
		var s *sseClient
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			if s, err = dialStream(f.c.t, f.name, f.c.lb.url("/api/realtime"), f.lastID); err == nil {
				break
			}
			if time.Now().After(deadline) {
				f.fail(fmt.Errorf("%s: reconnecting: %w", f.name, err))
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		f.mu.Lock()
		f.stream = s
		first := f.id == ""
		if !first && !s.resumed() {
			f.resets = append(f.resets, fmt.Sprintf("%s after %s", s.connect.Data, f.lastID))
		}
		if !first && s.resumed() {
			f.resumes++
		}
		f.id = s.id
		f.mu.Unlock()
		if first || !s.resumed() {
			if err := f.subscribe(s.id); err != nil {
				f.fail(err)
				return
			}
		}
		for fr := range s.frames {
			if fr.Comment || fr.Event != "posts" {
				continue
			}
			f.mu.Lock()
			f.lastID = fr.ID
			f.got = append(f.got, delivered{fr.position(), fr.recordID()})
			f.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// subscribe POSTs the subscription to the node holding the stream.
func (f *follower) subscribe(id string) error {
	body, _ := json.Marshal(map[string]any{"clientId": id, "subscriptions": []string{"posts"}})
	for _, n := range f.c.nodes {
		if r, err := do(http.MethodPost, n.url("/api/realtime"), string(body)); err == nil && r.status == http.StatusNoContent {
			return nil
		}
	}
	return fmt.Errorf("%s: no node took the subscription of %s", f.name, id)
}

// (d+e) Chaos: while events are published without pause, Caddy nodes are
// killed with SIGKILL and started again, and NATS servers restarted; clients
// behind the load balancer reconnect with Last-Event-ID. Every client must end
// with every acknowledged event once, in the one order.
func TestChaosNodeKills(t *testing.T) {
	c := startCluster(t)
	start := time.Now()
	c.waitSessionBuckets()
	t.Logf("the session bucket open on every node %v after the cluster started", time.Since(start).Round(100*time.Millisecond))
	stop := make(chan struct{})
	var followers []*follower
	for k := range 6 {
		f := &follower{c: c, name: fmt.Sprintf("client %d", k+1), finished: make(chan struct{})}
		followers = append(followers, f)
		go f.run(stop)
	}
	waitFor(t, 20*time.Second, "clients connected and subscribed", func() bool {
		for _, f := range followers {
			f.mu.Lock()
			ok := f.id != "" || f.err != nil
			f.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
	for _, f := range followers {
		f.mu.Lock()
		id := f.id
		f.mu.Unlock()
		c.waitSession(id) // shared before any node dies
	}
	var pubs []*publisher
	var wg sync.WaitGroup
	for i := range c.nodes {
		p := &publisher{name: fmt.Sprintf("p%d", i+1), nodes: slices.Concat(c.nodes[i:], c.nodes[:i])} // each starts on its own node
		pubs = append(pubs, p)
		wg.Add(1)
		go func() { defer wg.Done(); p.run(stop) }()
	}
	progress := func(what string) {
		t.Helper()
		var base []int
		for _, p := range pubs {
			base = append(base, p.count())
		}
		waitFor(t, 60*time.Second, what, func() bool {
			total := 0
			for i, p := range pubs {
				if p.err != nil {
					return true
				}
				total += p.count() - base[i]
			}
			return total >= 30
		})
	}
	progress("publishing to start")
	rounds := chaosRounds()
	for r := range rounds {
		n := c.nodes[r%len(c.nodes)]
		n.kill()
		progress(fmt.Sprintf("publishing with %s killed (round %d)", n.name, r+1))
		n.launch()
		if r%2 == 1 {
			i := (r / 2) % len(c.nats.servers)
			c.nats.stop(i)
			progress(fmt.Sprintf("publishing with nats-server %d down (round %d)", i+1, r+1))
			c.nats.start(i)
		}
		c.waitPublishes(n)
		progress(fmt.Sprintf("publishing after round %d", r+1))
	}
	close(stop)
	wg.Wait()
	for _, p := range pubs {
		if p.err != nil {
			t.Fatal(p.err)
		}
	}
	c.nodes[0].mustPublish(event("end"), 1)
	var want []string
	for _, p := range pubs {
		want = append(want, p.acked...)
	}
	want = append(want, "end")
	var resets []string
	checked := 0
	for _, f := range followers {
		waitFor(t, 30*time.Second, f.name+" receiving the last event", func() bool {
			got := f.received()
			return f.err != nil || len(got) > 0 && got[len(got)-1].record == "end"
		})
		f.mu.Lock()
		err, fresets := f.err, slices.Clone(f.resets)
		f.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if len(fresets) > 0 {
			// A new client: what it missed in between is an announced reset,
			// not a loss; reported below.
			for _, r := range fresets {
				resets = append(resets, f.name+": "+r)
			}
			continue
		}
		checked++
		got := f.received()
		var ids []string
		for _, d := range got {
			ids = append(ids, d.record)
		}
		if missing, extra := diff(want, ids); len(missing) > 0 || len(extra) > 0 {
			t.Errorf("%s: %d acknowledged events missing %v, %d unexpected %v", f.name, len(missing), missing, len(extra), extra)
		}
		for k := 1; k < len(got); k++ {
			if !after(got[k].position, got[k-1].position) {
				t.Errorf("%s: %s at %s after %s at %s", f.name, got[k].record, got[k].position, got[k-1].record, got[k-1].position)
			}
		}
	}
	if len(resets) > 0 {
		t.Errorf("%d of %d clients checked (every event once, in order); the others came back from a killed node as new "+
			"clients (resumed:false):\n%s", checked, len(followers), strings.Join(resets, "\n"))
	}
	resumes := 0
	for _, f := range followers {
		f.mu.Lock()
		resumes += f.resumes
		f.mu.Unlock()
	}
	if resumes == 0 {
		t.Error("no client resumed: the killed nodes held none?")
	}
	t.Logf("%d rounds (Caddy node killed, every other round a NATS server restarted): %d events to %d clients, %d resumes on another node",
		rounds, len(want), len(followers), resumes)
}
