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
