package broker

import (
	"fmt"
	"testing"

	"github.com/caddy-realtime/realtime/rules"
)

// BenchmarkOwnerRule: 1,000 authenticated subscribers of 50 distinct users on
// posts/* with an owner rule. Each op publishes one event; rule evaluations
// per event must stay near the number of distinct identities (50), not clients.
func BenchmarkOwnerRule(b *testing.B) {
	const clients, users = 1000, 50
	owner := rules.MustCompile(`@request.auth.id = author`)
	rs := &RuleSet{Collections: map[string]*CollectionRules{"posts": {List: owner, View: owner}}}
	p := DefaultPolicy()
	p.Access = rs
	p.ClientQueue = 0
	p.MaxClientsPerIP = 0 // every subscriber is on 127.0.0.1
	br := New("bench", p)
	all := make([]*Client, 0, clients)
	for i := range clients {
		c := mustConnect(b, br)
		if err := c.ReplaceAuth(user(fmt.Sprint("user", i%users))); err != nil {
			b.Fatal(err)
		}
		mustSubscribe(b, br, c, "posts/*")
		all = append(all, c)
	}
	events := make([]*Event, 1000)
	for i := range events {
		events[i] = mustEvent(b, fmt.Sprintf(`{"action":"update","record":{"id":"r%d","collectionName":"posts","author":"user%d","title":"t"}}`, i, i%users))
	}
	drainAll := func() {
		for _, c := range all {
			c.mu.Lock()
			c.queue.reset()
			c.frames = 0
			c.mu.Unlock()
		}
	}
	drainAll()
	before := rs.Evaluations()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		br.Publish(events[i%len(events)])
		if i%len(events) == len(events)-1 {
			b.StopTimer()
			drainAll()
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rs.Evaluations()-before)/float64(b.N), "evals/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}
