package broker

// Security review: attempts to make a client receive what PocketBase v0.40.4
// would not send it, or to make one client hurt others. Tests named
// TestAttack... that are skipped demonstrate a leak that still exists (the
// skip message says which); the others hold and stay as regression tests.
// PocketBase behaviour quoted below was observed on e2e/.peer/base (v0.40.4).

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/rules"
)

func atkRule(expr string) *rules.Rule { return rules.MustCompile(expr) }

// atkBroker is a broker whose rules are rs.
func atkBroker(t *testing.T, rs *RuleSet) *Broker {
	t.Helper()
	p := DefaultPolicy()
	p.Access = rs
	return New("attack", p)
}

// atkTopic is base with a PocketBase SDK style options parameter.
func atkTopic(base string, query map[string]string) string {
	js, err := json.Marshal(map[string]any{"query": query})
	if err != nil {
		panic(err)
	}
	return base + "?options=" + url.QueryEscape(string(js))
}

// atkClient connects a client with auth (nil = guest) subscribed to topics.
func atkClient(t *testing.T, b *Broker, a *Auth, topics ...string) *Client {
	t.Helper()
	c := mustConnect(t, b)
	t.Cleanup(func() { b.Disconnect(c, ReasonDisconnected) })
	if a != nil {
		c.SetAuth(a)
	}
	mustSubscribe(t, b, c, topics...)
	drain(c)
	return c
}

// atkFrames drains c's data frames.
func atkFrames(c *Client) []frame { return dataFrames(parseFrames(drain(c))) }

func atkUser(id string, extra map[string]any) *Auth {
	rec := map[string]any{"id": id, "collectionName": "users", "collectionId": "_pb_users_auth_"}
	for k, v := range extra {
		rec[k] = v
	}
	return &Auth{ID: id, Collection: "_pb_users_auth_", Record: rec}
}

const aliceEvent = `{"action":"update","record":{"id":"alice","collectionName":"users","collectionId":"_pb_users_auth_",` +
	`"email":"alice@secret.io","emailVisibility":false,"name":"x"}}`

func usersOpen() *RuleSet {
	return &RuleSet{Collections: map[string]*CollectionRules{
		"users": {List: atkRule(""), View: atkRule("")},
	}}
}

// A filter on `email` turns delivery into an oracle for a hidden email:
// `email ~ 'a%'`, then `email ~ 'al%'`... PocketBase ANDs every filter
// comparison on an auth collection's email with emailVisibility = TRUE
// (core/record_field_resolver_runner.go): observed on v0.40.4, a guest, another
// user, the owner and even a superuser subscribed with `email ~ 'alice%'` or
// `email != ""` get nothing for a record whose emailVisibility is false, while
// the same subscriptions get the record whose emailVisibility is true.
func TestAttackEmailFilterProbesHiddenEmail(t *testing.T) {
	t.Parallel()
	b := atkBroker(t, usersOpen())
	probes := []string{"email ~ 'alice%'", "email !~ 'zzz%'", "email != ''", "email:lower ~ 'alice'", "email:length > 3"}
	var subs []string
	for _, f := range probes {
		subs = append(subs, atkTopic("users/*", map[string]string{"filter": f}))
	}
	guest := atkClient(t, b, nil, subs...)
	carol := atkClient(t, b, atkUser("carol", nil), subs...)
	b.Publish(mustEvent(t, aliceEvent))
	for name, c := range map[string]*Client{"guest": guest, "carol": carol} {
		if fs := atkFrames(c); len(fs) != 0 {
			t.Errorf("%s's filters on email matched a record whose email is hidden (%d frames: %q): the email can be guessed by probing", name, len(fs), fs[0].Event)
		}
	}
}

// The hidden email never reaches others, whatever the fields option asks for
// and whichever topic carries the event; the owner and superusers get it.
func TestHiddenEmailNotInPayloadWhateverFields(t *testing.T) {
	t.Parallel()
	b := atkBroker(t, usersOpen())
	var subs []string
	for _, base := range []string{"users/*", "users", "_pb_users_auth_/*", "*", "users/alice", "_pb_users_auth_/alice"} {
		subs = append(subs, base)
		for _, fields := range []string{"email", "*", "id,email", "email:excerpt(100)", "email:excerpt(100,true)", "email:bogus", "email:excerpt(", "'", " email ", "*,email"} {
			subs = append(subs, atkTopic(base, map[string]string{"fields": fields}))
		}
	}
	// Topic variants per base are budgeted; lift the budgets for this test.
	p := *b.Policy()
	p.MaxTopicVariants, p.MaxSubscriptionBytes = 0, 0
	b.SetPolicy(&p)
	guest := atkClient(t, b, nil, subs...)
	carol := atkClient(t, b, atkUser("carol", nil), subs...)
	// Same id, another auth collection: not the owner.
	other := atkClient(t, b, &Auth{ID: "alice", Collection: "staff", Record: map[string]any{"id": "alice", "collectionName": "staff"}}, subs...)
	owner := atkClient(t, b, atkUser("alice", nil), subs...)
	su := atkUser("root", nil)
	su.Superuser = true
	super := atkClient(t, b, su, subs...)
	b.Publish(mustEvent(t, aliceEvent))
	for name, c := range map[string]*Client{"guest": guest, "carol": carol, "staff/alice": other} {
		fs := atkFrames(c)
		if len(fs) == 0 {
			t.Fatalf("%s got nothing", name)
		}
		for _, f := range fs {
			if strings.Contains(f.Data, "alice@secret.io") {
				t.Errorf("%s got the hidden email on %q: %s", name, f.Event, f.Data)
			}
		}
	}
	for name, c := range map[string]*Client{"owner": owner, "superuser": super} {
		if got := atkFrames(c); !strings.Contains(got[0].Data, "alice@secret.io") {
			t.Errorf("%s should see the email: %s", name, got[0].Data)
		}
	}
}

// Fields PocketBase never sends: an auth record's tokenKey (and password) are
// hidden system fields, absent from realtime payloads even for superusers
// (observed). The broker requires tokenKey in events about the record of a
// signed-in client whose auth record has one (else 400, identities.go), and
// then sends the event as it came to every subscriber the list rule lets in.
func TestAttackTokenKeyBroadcast(t *testing.T) {
	t.Parallel()
	b := atkBroker(t, usersOpen())
	atkClient(t, b, atkUser("alice", map[string]any{"tokenKey": "tk-secret", "email": "alice@secret.io", "emailVisibility": false}))
	guest := atkClient(t, b, nil, "users/*")
	ev := mustEvent(t, `{"action":"update","record":{"id":"alice","collectionName":"users","collectionId":"_pb_users_auth_",`+
		`"email":"alice@secret.io","emailVisibility":false,"name":"x","tokenKey":"tk-secret","password":"$2a$hash"}}`)
	if err := b.CheckEvents([]*Event{ev}); err != nil {
		t.Fatalf("CheckEvents: %v", err)
	}
	b.Publish(ev)
	for _, f := range atkFrames(guest) {
		if strings.Contains(f.Data, "tk-secret") || strings.Contains(f.Data, "$2a$hash") {
			t.Errorf("guest got a field PocketBase never sends: %s", f.Data)
		}
	}
}

// PocketBase rules may read a field marked hidden; realtime payloads leave it
// out for everyone but superusers (observed: list_rule "secret != 'deny'", a
// guest gets {"id","title",...} without secret). The event must carry every
// field the rules read, so the collection declares it hidden (hidden_fields).
func TestAttackHiddenFieldReadByRuleIsBroadcast(t *testing.T) {
	t.Parallel()
	b := atkBroker(t, &RuleSet{Collections: map[string]*CollectionRules{
		"notes": {List: atkRule("secret != 'deny'"), View: atkRule("secret != 'deny'"), Hidden: []string{"secret"}},
	}})
	guest := atkClient(t, b, nil, "notes/*")
	prober := atkClient(t, b, nil, atkTopic("notes/*", map[string]string{"filter": "secret ~ 's3'"}))
	ev := mustEvent(t, `{"action":"update","record":{"id":"n1","collectionName":"notes","title":"u","secret":"s3cr3t"}}`)
	if err := b.CheckEvents([]*Event{ev}); err != nil {
		t.Fatalf("CheckEvents: %v", err)
	}
	b.Publish(ev)
	fs := atkFrames(guest)
	if len(fs) != 1 {
		t.Fatalf("want one frame, got %d", len(fs))
	}
	if strings.Contains(fs[0].Data, "s3cr3t") {
		t.Errorf("guest got the hidden field: %s", fs[0].Data)
	}
	if fs := atkFrames(prober); len(fs) != 0 {
		t.Errorf("a filter on a hidden field matched: %v", fs)
	}
}

// The owner check behind email visibility compares collections; an auth
// record without collectionId/collectionName (a JWT with only `sub`) has the
// collection "", which equals the empty CollectionID of an event that names
// only its collectionName: such a client sees the email of every record with
// its id, in any auth collection.
func TestAttackEmailOwnerWithoutCollection(t *testing.T) {
	t.Parallel()
	b := atkBroker(t, &RuleSet{Collections: map[string]*CollectionRules{
		"staff": {List: atkRule(""), View: atkRule("")},
	}})
	jwtUser := atkClient(t, b, &Auth{ID: "u1", Record: map[string]any{"id": "u1", "sub": "u1"}}, "staff/*")
	b.Publish(mustEvent(t, `{"action":"update","record":{"id":"u1","collectionName":"staff","email":"boss@corp.io","emailVisibility":false}}`))
	for _, f := range atkFrames(jwtUser) {
		if strings.Contains(f.Data, "boss@corp.io") {
			t.Errorf("a collection-less auth u1 got staff/u1's hidden email: %s", f.Data)
		}
	}
}

// Topic rules are checked when subscribing only: a client that passed
// `@request.auth.isAdmin = true` keeps receiving the topic's custom messages
// after its record is refreshed to isAdmin false, after its tokenKey changes
// (it is a guest now) and after its record is deleted.
func TestAttackCustomTopicKeptAfterDemotion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, event string }{
		{"demoted", `{"action":"update","record":{"id":"ann","collectionName":"users","isAdmin":false,"tokenKey":"k1"}}`},
		{"logged out", `{"action":"update","record":{"id":"ann","collectionName":"users","isAdmin":true,"tokenKey":"k2"}}`},
		{"deleted", `{"action":"delete","record":{"id":"ann","collectionName":"users","isAdmin":true,"tokenKey":"k1"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := atkBroker(t, &RuleSet{
				Collections: map[string]*CollectionRules{"users": {}},
				Topics:      []TopicRule{{Pattern: "admin_*", Rule: atkRule("@request.auth.isAdmin = true")}},
			})
			ann := &Auth{ID: "ann", Collection: "users", Record: map[string]any{"id": "ann", "collectionName": "users", "isAdmin": true, "tokenKey": "k1"}}
			c := atkClient(t, b, ann, "admin_stats")
			ev := mustEvent(t, tc.event)
			if err := b.CheckEvents([]*Event{ev}); err != nil {
				t.Fatal(err)
			}
			b.Publish(ev)
			if n := b.SendMessage(&Message{Name: "admin_stats", Data: json.RawMessage(`{"revenue":1}`)}); n != 0 {
				t.Errorf("%s client (auth %v) still got admin_stats", tc.name, c.Auth())
			}
		})
	}
}

// Rule answers are memoised per auth fingerprint: records that rules could
// tell apart, or superuser status, must never share an answer.
func TestMemoNeverSharesAcrossDistinguishableAuth(t *testing.T) {
	t.Parallel()
	rs := &RuleSet{Collections: map[string]*CollectionRules{
		"posts": {
			List: atkRule("@request.auth.level = 1 || @request.auth.level = '1x' || owner = @request.auth.id"),
			View: atkRule("@request.auth.level = 1"),
		},
	}}
	auths := []*Auth{
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": json.Number("1")}},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": "1"}},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": float64(1)}},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": json.Number("1.0")}},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": "1x"}},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": true}},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": json.Number("2")}},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": json.Number("2")}, Superuser: true},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u"}},
		{ID: "u", Collection: "users", Record: map[string]any{"id": "u", "level": nil}},
		{ID: "b/c", Collection: "a", Record: map[string]any{"id": "o1"}},
		{ID: "c", Collection: "a/b", Record: map[string]any{"id": "o1"}},
		{ID: "x", Collection: "users", Record: map[string]any{"id": "o1\x00"}},
		{ID: "x", Collection: "users", Record: map[string]any{"id": "o1\ufffd"}},
		nil,
	}
	topics := []string{"posts/*", "posts/p1", "*", atkTopic("posts/*", map[string]string{"filter": "owner != ''"})}
	ev := func() *Event {
		return mustEvent(t, `{"action":"create","record":{"id":"p1","collectionName":"posts","owner":"o1"}}`)
	}
	// Every auth alone, then all together: the answers must not change.
	want := make([]int, len(auths))
	for i, a := range auths {
		b := atkBroker(t, rs)
		c := atkClient(t, b, a, topics...)
		b.Publish(ev())
		want[i] = len(atkFrames(c))
	}
	b := atkBroker(t, rs)
	var cs []*Client
	for i := len(auths) - 1; i >= 0; i-- { // reversed: the memo is filled in another order
		cs = append([]*Client{atkClient(t, b, auths[i], topics...)}, cs...)
	}
	b.Publish(ev())
	for i, c := range cs {
		if got := len(atkFrames(c)); got != want[i] {
			t.Errorf("auth %d (%v): %d frames beside the others, %d alone", i, auths[i], got, want[i])
		}
	}
}

// A config reload between CheckEvents and Publish (admin/events.go runs them
// apart) can publish an event lacking a field the new rules read: the rule
// must then deny, never read the missing field as null ("" != 'draft').
func TestMissingFieldDeniesWhenCheckRaced(t *testing.T) {
	t.Parallel()
	for _, rule := range []string{"status != 'draft'", "status = ''", "status = null", "status !~ 'draft'", "status:length = 0", "meta.x != 1", "tags:each != 'a'"} {
		b := atkBroker(t, &RuleSet{Collections: map[string]*CollectionRules{"posts": {List: atkRule(rule), View: atkRule(rule)}}})
		guest := atkClient(t, b, nil, "posts/*", "posts/d1", "*")
		b.Publish(mustEvent(t, `{"action":"update","record":{"id":"d1","collectionName":"posts","title":"Secret"}}`))
		if fs := atkFrames(guest); len(fs) != 0 {
			t.Errorf("rule %q delivered a record lacking the field it reads: %v", rule, fs)
		}
	}
}

// View and list rules guard their own topic kinds, by collection name and id,
// and one client holding both kinds gets each judged by its own rule.
func TestViewListKindsNotConfused(t *testing.T) {
	t.Parallel()
	b := atkBroker(t, &RuleSet{Collections: map[string]*CollectionRules{
		"posts": {List: nil, View: atkRule("")}, // list superusers only, view everyone
	}})
	listOnly := atkClient(t, b, nil, "posts/*", "posts", "pbc_posts/*", "pbc_posts", "*")
	both := atkClient(t, b, nil, "posts/*", "posts/p1", "*", "pbc_posts/p1")
	b.Publish(postEvent(t, "update", "p1", ""))
	if fs := atkFrames(listOnly); len(fs) != 0 {
		t.Errorf("list topics got an event whose list rule is superusers only: %v", fs)
	}
	var got []string
	for _, f := range atkFrames(both) {
		got = append(got, f.Event)
	}
	if fmt.Sprint(got) != "[posts/p1 pbc_posts/p1]" && fmt.Sprint(got) != "[pbc_posts/p1 posts/p1]" {
		t.Errorf("want only the view topics, got %v", got)
	}
}

// max_clients_per_ip counts the address text as given: every IPv6 address
// is its own budget, and one host usually holds a whole /64 (2^64 addresses).
func TestAttackPerIPBudgetIPv6Prefix(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.MaxClientsPerIP = 2
	b := New("attack", p)
	refused := 0
	for i := range 10 {
		c, err := b.Connect(fmt.Sprintf("2001:db8:1:2::%x", i+1))
		if err != nil {
			refused++
			continue
		}
		defer b.Disconnect(c, ReasonDisconnected)
	}
	if refused == 0 {
		t.Errorf("10 streams from one /64 with max_clients_per_ip 2: none refused")
	}
}

// A stream refused or closed at any point gives its per-IP slot back.
func TestPerIPSlotsFreed(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.MaxClientsPerIP = 1
	b := New("attack", p)
	refuse := true
	b.OnConnect.Bind(func(e *ConnectEvent) error {
		if refuse {
			return nil // ends the chain without e.Next(): refused
		}
		return e.Next()
	})
	for range 3 {
		if _, err := b.Connect("10.0.0.1"); err == nil {
			t.Fatal("refused by the hook, yet connected")
		}
	}
	refuse = false
	for range 3 {
		c, err := b.Connect("10.0.0.1")
		if err != nil {
			t.Fatalf("slot not freed: %v", err)
		}
		c.Close(ReasonQueueFull) // closed first, disconnected later (eviction path)
		b.Disconnect(c, ReasonQueueFull)
		b.Disconnect(c, ReasonQueueFull) // twice: must not free a slot twice
	}
	c1, err := b.Connect("10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Disconnect(c1, ReasonDisconnected)
	if c2, err := b.Connect("10.0.0.1"); err == nil {
		b.Disconnect(c2, ReasonDisconnected)
		t.Fatal("a double Disconnect freed a slot twice: the budget is now 2")
	}
}

// One guest's subscription filters stall every publish: see
// rules.TestAttackLikeStepCapBypass. Within the default budgets one client
// holds ~30 such topics (max_subscription_bytes 64 KiB), each a distinct
// options string, so each is evaluated once per event with pubMu held.
func TestAttackFilterStallsPublish(t *testing.T) {
	t.Parallel()
	b := atkBroker(t, &RuleSet{Collections: map[string]*CollectionRules{"posts": {List: atkRule(""), View: atkRule("")}}})
	var subs []string
	for i := range 4 {
		subs = append(subs, atkTopic("posts/*", map[string]string{"filter": "body ~ '%" + strings.Repeat("_", 2000-i) + "§'"}))
	}
	for _, s := range subs {
		if len(s) > DefaultPolicy().MaxTopicLength {
			t.Fatalf("topic of %d bytes is over max_topic_length", len(s))
		}
	}
	atkClient(t, b, nil, subs...)
	body := strings.Repeat("lorem ipsum dolor sit amet ", 400) // an ordinary 10 KB post
	ev := mustEvent(t, `{"action":"create","record":{"id":"p1","collectionName":"posts","body":"`+body+`"}}`)
	start := time.Now()
	b.Publish(ev)
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("one guest's 4 filters held Publish for %v", took)
	}
}
