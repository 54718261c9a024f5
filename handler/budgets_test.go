package handler

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// One IP may hold max_clients_per_ip streams; the next gets 429 and other IPs are unaffected.
func TestBudgetClientsPerIP(t *testing.T) {
	p := broker.DefaultPolicy()
	p.MaxClientsPerIP = 2
	ip := "203.0.113.7"
	env := newEnv(t, p, func(h *Handler) {
		h.ClientIP = func(r *http.Request) string {
			if other := r.Header.Get("X-Test-IP"); other != "" {
				return other
			}
			return ip
		}
	})
	first := env.openStream(nil)
	env.openStream(nil)
	r := env.do(http.MethodGet, env.url(), nil, nil)
	if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, "max_clients_per_ip") {
		t.Fatalf("third stream from one IP: %d %s", r.status, r.body)
	}
	env.openStream(http.Header{"X-Test-Ip": {"198.51.100.1"}}) // another IP still connects
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for env.b.Stats().Clients > 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	env.openStream(nil) // the freed slot is usable again
	if got := env.b.Stats().Refused[broker.BudgetMaxClientsPerIP]; got != 1 {
		t.Fatalf("refused counter = %d, want 1", got)
	}
}

// The subscription budgets answer 400 with PocketBase's body and leave the
// client's subscriptions as they were.
func TestBudgetSubscriptions(t *testing.T) {
	p := broker.DefaultPolicy()
	p.MaxSubscriptionBytes = 100
	p.MaxTopicVariants = 3
	env := newEnv(t, p, nil)
	s := env.openStream(nil)
	env.subscribe(s.id, nil, "posts/*")
	for _, tc := range []struct {
		name, budget string
		topics       []string
	}{
		{"bytes", "max_subscription_bytes", []string{strings.Repeat("a", 60), strings.Repeat("b", 60)}},
		{"variants", "max_topic_variants", []string{"posts/*?v=1", "posts/*?v=2", "posts/*?v=3", "posts/*?v=4"}},
	} {
		r := env.postJSON(mustJSON(t, map[string]any{"clientId": s.id, "subscriptions": tc.topics}), nil)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, `"code":"validation_`+tc.budget+`"`) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	// Duplicates count once; three variants are fine.
	env.subscribe(s.id, nil, "posts/*?v=1", "posts/*?v=2", "posts/*?v=3", "posts/*?v=1")
	if got := env.mustClient(s.id).Subscriptions(); len(got) != 3 {
		t.Fatalf("subscriptions = %q", got)
	}
}

// A JSON body is decoded as a stream: past max_subscriptions it is refused
// without waiting for (or holding) the rest of the body.
func TestSubscribeBodyStopsAtTheLimit(t *testing.T) {
	p := broker.DefaultPolicy()
	p.MaxSubscriptions = 10
	env := newEnv(t, p, nil)
	s := env.openStream(nil)
	r := postUnfinished(t, env, func(w io.Writer) {
		fmt.Fprintf(w, `{"clientId":%q,"subscriptions":[`, s.id)
		for range 11 {
			io.WriteString(w, `"",`)
		}
	})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "validation_length_too_long") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// postUnfinished POSTs a JSON body whose sender writes the start and then
// never finishes it; the answer must come anyway, without the rest.
func postUnfinished(t *testing.T, env *testEnv, start func(io.Writer)) response {
	t.Helper()
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go start(pw)
	done := make(chan response, 1)
	go func() {
		done <- env.do(http.MethodPost, env.url(), pr, map[string]string{"Content-Type": "application/json"})
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the POST waited for the rest of a body it should have refused")
		return response{}
	}
}

// The body limit follows the policy: a body larger than max_subscriptions
// topics of max_topic_length bytes can only be refused.
func TestSubscribeBodyLimitFollowsPolicy(t *testing.T) {
	p := broker.DefaultPolicy()
	p.MaxSubscriptions, p.MaxTopicLength = 10, 100
	env := newEnv(t, p, nil)
	s := env.openStream(nil)
	body := fmt.Sprintf(`{"clientId":%q,"subscriptions":["%s"]}`, s.id, strings.Repeat("a", int(bodyLimit(p))))
	if r := env.postJSON(body, nil); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// A body trickled slower than body_timeout is cut off with 408.
func TestSubscribeBodyTimeout(t *testing.T) {
	env := newEnv(t, nil, func(h *Handler) { h.BodyTimeout = 300 * time.Millisecond })
	s := env.openStream(nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		fmt.Fprintf(pw, `{"clientId":%q,"subscriptions":[`, s.id)
		// one byte every second: never finishes within the timeout
		for range 30 {
			time.Sleep(time.Second)
			if _, err := io.WriteString(pw, " "); err != nil {
				return
			}
		}
	}()
	r := env.do(http.MethodPost, env.url(), pr, map[string]string{"Content-Type": "application/json"})
	if r.status != http.StatusRequestTimeout {
		t.Fatalf("trickled body: %d %s", r.status, r.body)
	}
	env.subscribe(s.id, nil, "posts/*") // the client itself is fine
}

// Past max_subscription_bytes the body stops being read: no waiting for the
// rest, and no filter of the request is compiled.
func TestSubscribeBodyStopsAtTheByteBudget(t *testing.T) {
	p := broker.DefaultPolicy()
	p.MaxSubscriptionBytes = 1000
	env := newEnv(t, p, nil)
	s := env.openStream(nil)
	r := postUnfinished(t, env, func(w io.Writer) {
		fmt.Fprintf(w, `{"clientId":%q,"subscriptions":[`, s.id)
		for i := range 20 {
			fmt.Fprintf(w, `"posts/%d?options={\"query\":{\"filter\":\"title ~ '%s'\"}}",`, i, strings.Repeat("x", 60))
		}
	})
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "validation_max_subscription_bytes") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// A burst that every stream holds at once, stalled and healthy alike, costs
// its frames once: max_queued_bytes counts memory that way, and the bytes
// owed per client only against streams that stopped reading. A budget the
// per-client sum passes 4-15 times over evicts no healthy stream, and each
// gets the whole burst. (Counted per client alone, the budget was passed
// before any writer had tried the stalled sockets, when stalled and healthy
// streams look alike, and healthy ones were evicted with them.)
func TestBudgetQueuedBytesBurstSharedByStalledStreams(t *testing.T) {
	const stalledN, healthyN, events, pad = 150, 8, 50, 20 << 10
	p := broker.DefaultPolicy()
	p.MaxClientsPerIP = 0
	p.MaxQueuedBytes = 8 << 20
	p.ClientQueue = 4 << 20
	p.WriteTimeout = time.Minute
	p.Heartbeat = 0
	env := newEnv(t, p, nil)
	var healthy []*sseStream
	for range healthyN {
		s := env.openStream(nil)
		env.subscribe(s.id, nil, "posts/*")
		healthy = append(healthy, s)
	}
	for range stalledN {
		conn := env.dial() // small receive buffer, never read
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, "GET /api/realtime HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "stalled streams connected", func() bool { return env.b.Stats().Clients == stalledN+healthyN })
	isHealthy := map[string]bool{}
	for _, s := range healthy {
		isHealthy[s.id] = true
	}
	for _, c := range env.b.Clients() {
		if !isHealthy[c.ID()] {
			env.subscribe(c.ID(), nil, "posts/*")
		}
	}

	big := strings.Repeat("x", pad)
	for i := range events {
		env.publish(fmt.Sprintf(`{"action":"create","record":{"id":"r%d","collectionName":"posts","pad":%q}}`, i, big))
	}
	perClient := 0
	for _, c := range env.b.Clients() {
		perClient += c.Pending()
	}
	next := func(s *sseStream, i int) string {
		for {
			select {
			case f, ok := <-s.frames:
				if !ok {
					<-s.done
					t.Fatalf("healthy stream %s ended (%v) before event %d; evictions %v", s.id, s.err, i, env.b.Stats().Evictions)
				}
				if !strings.HasPrefix(f, ":") {
					return f
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("healthy stream %s: no event %d within 20s", s.id, i)
			}
		}
	}
	for _, s := range healthy {
		for i := range events {
			if f := next(s, i); !strings.Contains(f, fmt.Sprintf(`"id":"r%d"`, i)) {
				t.Fatalf("healthy stream: event %d is %.80q", i, f)
			}
		}
	}
	for _, s := range healthy {
		if _, ok := env.b.Client(s.id); !ok {
			t.Fatalf("healthy stream %s closed", s.id)
		}
	}
	// What the stalled streams still hold: the burst's frames once, plus
	// their own id lines and framing. (Stalled streams may have been evicted
	// meanwhile: the bytes owed to streams that stopped reading count too.)
	st := env.b.Stats()
	if st.QueuedBytes > 4<<20 {
		t.Fatalf("queued bytes counted %d, more than the frames and id lines", st.QueuedBytes)
	}
	t.Logf("per-client sum right after the burst %d MB (budget %d MB); memory counted after %d KB; %d stalled streams evicted for queued_bytes",
		perClient>>20, p.MaxQueuedBytes>>20, st.QueuedBytes>>10, st.Evictions[broker.ReasonQueuedBytes])
}
