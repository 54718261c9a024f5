package cluster

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// delivered is what one client received: each event's position and record id.
type delivered struct{ position, record string }

func summary(frames []frame) []delivered {
	out := make([]delivered, len(frames))
	for i, f := range frames {
		out[i] = delivered{f.position(), f.recordID()}
	}
	return out
}

// checkSame fails unless every client received the same events at the same
// positions, each once, positions increasing.
func checkSame(t *testing.T, clients []*sseClient, got [][]delivered) {
	t.Helper()
	for i := range got {
		seen := map[string]bool{}
		for k, d := range got[i] {
			if seen[d.record] {
				t.Errorf("%s: %s delivered twice", clients[i].name, d.record)
			}
			seen[d.record] = true
			if d.position == "" {
				t.Errorf("%s: %s without a position in its id", clients[i].name, d.record)
			}
			if k > 0 && !after(d.position, got[i][k-1].position) {
				t.Errorf("%s: position %s after %s", clients[i].name, d.position, got[i][k-1].position)
			}
		}
		if !slices.Equal(got[i], got[0]) {
			t.Errorf("%s and %s received different orders:\n%v\n%v", clients[i].name, clients[0].name, got[i], got[0])
		}
	}
}

// after says whether position a ("<epoch>.<n>") follows b in one epoch.
func after(a, b string) bool {
	ea, na, _ := strings.Cut(a, ".")
	eb, nb, _ := strings.Cut(b, ".")
	if ea != eb {
		return false
	}
	var x, y uint64
	fmt.Sscan(na, &x)
	fmt.Sscan(nb, &y)
	return y < x
}

// (a) A publish on any node reaches clients on every node, in one order with
// the same positions; a stream through the load balancer is flushed at once.
func TestPublishAnywhereOneOrder(t *testing.T) {
	c := startCluster(t)
	clients := []*sseClient{c.client("client on node1", 0), c.client("client on node2", 1), c.client("client on node3", 2)}
	// PB_CONNECT arrived through the load balancer before any event: the
	// proxy flushes the stream as it comes.
	viaLB := c.client("client through the LB", -1)
	viaLB.heartbeat(10 * time.Second)
	clients = append(clients, viaLB)

	c.nodes[0].mustPublish(event("first"), 1)
	if f := clients[2].next(10 * time.Second); f.Event != "posts" || f.recordID() != "first" {
		t.Fatalf("client on node3 got %+v, want the event published on node1", f)
	}

	const per = 15
	var wg sync.WaitGroup
	errs := make(chan error, 3*per)
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range per {
				r, err := do(http.MethodPost, n.adminURL("/realtime/events"), event(fmt.Sprintf("n%d-%02d", i+1, k)))
				if err != nil || r.status != http.StatusOK || r.body != `{"published":1}` {
					errs <- fmt.Errorf("publish on %s: %d %s %v", n.name, r.status, r.body, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.nodes[1].mustPublish(event("last"), 1)

	got := make([][]delivered, len(clients))
	for i, s := range clients {
		var frames []frame
		if i != 2 {
			frames = append(frames, s.next(10*time.Second))
		}
		frames = append(frames, s.eventsUntil("last", 10*time.Second)...)
		got[i] = summary(frames)
	}
	got[2] = append([]delivered{got[0][0]}, got[2]...) // "first", read above
	checkSame(t, clients, got)
	if len(got[0]) != 3*per+2 {
		t.Fatalf("received %d events, want %d: %v", len(got[0]), 3*per+2, got[0])
	}
	// Each admin's publishes keep their order.
	for i := range c.nodes {
		var mine []string
		for _, d := range got[0] {
			if strings.HasPrefix(d.record, fmt.Sprintf("n%d-", i+1)) {
				mine = append(mine, d.record)
			}
		}
		if !slices.IsSorted(mine) || len(mine) != per {
			t.Errorf("node%d's events out of order or missing: %v", i+1, mine)
		}
	}
}

// (b) An event id is deduplicated by the stream, whichever node it is posted to.
func TestIdempotencyAcrossNodes(t *testing.T) {
	c := startCluster(t)
	s := c.client("client on node3", 2)
	c.nodes[0].mustPublish(event("dup-1"), 1)
	c.nodes[1].mustPublish(event("dup-1"), 0)
	// A batch holding an id seen before publishes only the new events.
	c.nodes[2].mustPublish("["+event("dup-1")+","+event("after")+"]", 1)
	c.nodes[1].mustPublish("["+event("dup-1")+","+event("after")+"]", 0)
	c.nodes[0].mustPublish(event("last"), 1)
	var ids []string
	for _, f := range s.eventsUntil("last", 10*time.Second) {
		ids = append(ids, f.recordID())
	}
	if want := []string{"dup-1", "after", "last"}; !slices.Equal(ids, want) {
		t.Fatalf("received %v, want %v", ids, want)
	}
}

// (c) Every NATS server down: open streams keep their heartbeats, new streams
// and local subscriptions work, publishes get 503; when NATS is back,
// publishes succeed and delivery continues with no gap and no duplicate.
func TestAllNATSServersDown(t *testing.T) {
	c := startCluster(t)
	old := c.client("client opened before", 1)
	c.nodes[0].mustPublish(event("before"), 1)
	if f := old.next(10 * time.Second); f.recordID() != "before" {
		t.Fatalf("got %+v, want before", f)
	}

	for i := range c.nats.servers {
		c.nats.stop(i)
	}
	for _, n := range c.nodes {
		waitFor(t, 20*time.Second, n.name+" answering 503 to a publish", func() bool {
			r, err := do(http.MethodPost, n.adminURL("/realtime/messages"), `{"name":"probe","data":1}`)
			return err == nil && r.status == http.StatusServiceUnavailable
		})
		if status, _ := n.publish(event("while-down")); status != http.StatusServiceUnavailable {
			t.Fatalf("publish on %s with NATS down: %d, want 503", n.name, status)
		}
	}
	old.heartbeat(10 * time.Second)
	fresh := c.client("client opened while NATS is down", 2)
	fresh.heartbeat(10 * time.Second)
	viaLB := c.client("client through the LB while NATS is down", -1)
	viaLB.heartbeat(10 * time.Second)

	for i := range c.nats.servers {
		c.nats.start(i)
	}
	c.nats.waitMetaLeader()
	// The first publish after the outage: retried with its id until JetStream
	// acknowledges it (a timed-out attempt may have been stored: the id
	// keeps it once).
	waitFor(t, 60*time.Second, "a publish after NATS came back", func() bool {
		status, _ := c.nodes[0].publish(event("after-1"))
		return status == http.StatusOK
	})
	for _, n := range c.nodes {
		c.waitPublishes(n)
	}
	c.nodes[2].mustPublish(event("after-2"), 1)

	for _, s := range []*sseClient{old, fresh, viaLB} {
		var ids []string
		for _, f := range s.eventsUntil("after-2", 20*time.Second) {
			ids = append(ids, f.recordID())
		}
		if want := []string{"after-1", "after-2"}; !slices.Equal(ids, want) {
			t.Errorf("%s received %v, want %v", s.name, ids, want)
		}
	}
}

// chaosRounds is how many NATS server restarts the chaos test makes:
// CLUSTER_CHAOS=full for a long local run.
func chaosRounds() int {
	if os.Getenv("CLUSTER_CHAOS") == "full" {
		return 12
	}
	return 2
}

// publisher publishes numbered events without pause, retrying each with its
// id until acknowledged, and keeps the acknowledged ids in order. With
// several nodes, a failed attempt is retried on the next (a node may be down).
type publisher struct {
	nodes []*caddyProc
	name  string
	mu    sync.Mutex
	acked []string
	err   error
}

func (p *publisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

func (p *publisher) run(stop <-chan struct{}) {
	next := 0
	for k := 0; ; k++ {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("%s-%06d", p.name, k)
		deadline := time.Now().Add(60 * time.Second)
		for {
			n := p.nodes[next%len(p.nodes)]
			r, err := do(http.MethodPost, n.adminURL("/realtime/events"), event(id))
			if err == nil && r.status == http.StatusOK {
				break // published 1, or 0 when an attempt that got 503 was stored after all
			}
			if err == nil && r.status != http.StatusServiceUnavailable {
				p.err = fmt.Errorf("publish %s on %s: %d %s", id, n.name, r.status, r.body)
				return
			}
			if time.Now().After(deadline) {
				p.err = fmt.Errorf("publish %s on %s: no acknowledgement for 60s: %d %s %v", id, n.name, r.status, r.body, err)
				return
			}
			next++
			time.Sleep(50 * time.Millisecond)
		}
		p.mu.Lock()
		p.acked = append(p.acked, id)
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

// (d) NATS servers of the cluster restarted one at a time while every node
// publishes without pause: every client receives every acknowledged event
// once, in one order.
func TestChaosNATSServerRestarts(t *testing.T) {
	c := startCluster(t)
	clients := []*sseClient{c.client("client on node1", 0), c.client("client on node2", 1), c.client("client on node3", 2), c.client("client through the LB", -1)}
	stop := make(chan struct{})
	var pubs []*publisher
	var wg sync.WaitGroup
	for i, n := range c.nodes {
		p := &publisher{nodes: []*caddyProc{n}, name: fmt.Sprintf("p%d", i+1)}
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
			for i, p := range pubs {
				if p.err != nil {
					return true
				}
				if p.count() < base[i]+10 {
					return false
				}
			}
			return true
		})
	}
	progress("publishing to start")
	rounds := chaosRounds()
	for r := range rounds {
		i := r % len(c.nats.servers)
		c.nats.stop(i)
		progress(fmt.Sprintf("publishing with nats-server %d down (round %d)", i+1, r+1))
		c.nats.start(i)
		progress(fmt.Sprintf("publishing after nats-server %d restarted (round %d)", i+1, r+1))
	}
	close(stop)
	wg.Wait()
	for _, p := range pubs {
		if p.err != nil {
			t.Fatal(p.err)
		}
	}
	c.nodes[0].mustPublish(event("end"), 1)

	got := make([][]delivered, len(clients))
	for i, s := range clients {
		got[i] = summary(s.eventsUntil("end", 30*time.Second))
	}
	checkSame(t, clients, got)
	var want []string
	for _, p := range pubs {
		want = append(want, p.acked...)
	}
	want = append(want, "end")
	var ids []string
	for _, d := range got[0] {
		ids = append(ids, d.record)
	}
	missing, extra := diff(want, ids)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("after %d restarts: %d acknowledged events missing %v, %d unexpected %v", rounds, len(missing), missing, len(extra), extra)
	}
	for _, p := range pubs {
		var mine []string
		for _, id := range ids {
			if strings.HasPrefix(id, p.name+"-") {
				mine = append(mine, id)
			}
		}
		if !slices.Equal(mine, p.acked) {
			t.Errorf("%s's events reordered", p.name)
		}
	}
	t.Logf("%d NATS server restarts, %d events, each delivered once in one order to %d clients on 3 nodes", rounds, len(ids), len(clients))
}

// diff returns what want holds and got lacks, and what got holds beyond want.
func diff(want, got []string) (missing, extra []string) {
	in := map[string]int{}
	for _, g := range got {
		in[g]++
	}
	for _, w := range want {
		if in[w] == 0 {
			missing = append(missing, w)
		}
		in[w]--
	}
	for g, n := range in {
		if n > 0 {
			extra = append(extra, g)
		}
	}
	return missing, extra
}

// (e) A Caddy node killed with SIGKILL: its client comes back through the load
// balancer with Last-Event-ID, lands on another node, and resumes from the
// session the dead node shared in JetStream KV, with what it missed.
func TestNodeKilledClientResumes(t *testing.T) {
	c := startCluster(t)
	c.waitSessionBuckets()
	bystander := c.client("bystander on node1", 0)
	var victim *sseClient
	for k := 0; victim == nil && k < 6; k++ {
		s := c.client(fmt.Sprintf("client %d through the LB", k+1), -1)
		if c.holder(s.id) == 1 {
			victim = s
		}
	}
	if victim == nil {
		t.Fatal("round robin never put a client on node2")
	}
	c.nodes[0].mustPublish(event("k1"), 1)
	for _, s := range []*sseClient{bystander, victim} {
		if f := s.next(10 * time.Second); f.recordID() != "k1" {
			t.Fatalf("%s got %+v, want k1", s.name, f)
		}
	}

	c.waitSession(victim.id)
	c.nodes[1].kill()
	victim.close()
	c.nodes[0].mustPublish(event("k2"), 1)
	c.nodes[2].mustPublish(event("k3"), 1)

	back := openStream(t, "the victim, back through the LB", c.lb.url("/api/realtime"), victim.lastID)
	if !back.resumed() {
		t.Fatalf("the killed node's client came back as a new client: %s", back.connect.Data)
	}
	if back.id != victim.id {
		t.Fatalf("resumed as %s, want %s", back.id, victim.id)
	}
	c.nodes[2].mustPublish(event("k4"), 1)
	for _, s := range []*sseClient{back, bystander} {
		var ids []string
		for _, f := range s.eventsUntil("k4", 10*time.Second) {
			ids = append(ids, f.recordID())
		}
		if want := []string{"k2", "k3", "k4"}; !slices.Equal(ids, want) {
			t.Errorf("%s received %v, want %v", s.name, ids, want)
		}
	}
}

// Requests about a client reach the node holding it wherever the load
// balancer sends them: subscription POSTs through round robin, and the admin
// client routes on every node.
func TestForwardedThroughLB(t *testing.T) {
	c := startCluster(t)
	s := openStream(t, "client through the LB", c.lb.url("/api/realtime"), "")
	for k, topics := range [][]string{{"posts"}, {"posts", "posts/a"}, {"posts/b"}, {"posts"}} {
		if r := subscribe(t, c.lb.url(""), s.id, topics...); r.status != http.StatusNoContent {
			t.Fatalf("subscription POST %d through the LB: %d %s", k+1, r.status, r.body)
		}
	}
	if r := subscribe(t, c.lb.url(""), "nosuchclient0000000000000000000000000000", "posts"); r.status != http.StatusNotFound {
		t.Fatalf("subscription POST of an unknown client: %d %s, want 404", r.status, r.body)
	}
	holder := c.holder(s.id)
	for _, n := range c.nodes {
		r := n.adminDo(http.MethodGet, "/realtime/clients/"+s.id, "")
		if r.status != http.StatusOK || !strings.Contains(r.body, `"posts"`) {
			t.Fatalf("GET /realtime/clients/{id} on %s: %d %s", n.name, r.status, r.body)
		}
	}
	c.nodes[(holder+1)%3].mustPublish(event("fwd-1"), 1)
	if f := s.next(10 * time.Second); f.recordID() != "fwd-1" {
		t.Fatalf("got %+v, want fwd-1", f)
	}
	other := c.nodes[(holder+2)%3]
	if r := other.adminDo(http.MethodDelete, "/realtime/clients/"+s.id, ""); r.status/100 != 2 {
		t.Fatalf("DELETE /realtime/clients/{id} on %s: %d %s", other.name, r.status, r.body)
	}
	select {
	case _, open := <-s.frames:
		for open {
			_, open = <-s.frames
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream stayed open after a DELETE on another node")
	}
}
