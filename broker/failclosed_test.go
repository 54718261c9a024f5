package broker

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/caddy-realtime/realtime/rules"
)

// Rule answers are shared only between clients whose auth records are equal:
// two tokens with the same id but different claims get their own answers.
func TestRuleAnswersNotSharedAcrossAuthRecordsOfOneID(t *testing.T) {
	t.Parallel()
	rs := &RuleSet{
		Superusers: rules.MustCompile(`@request.auth.role = "admin"`),
		Collections: map[string]*CollectionRules{
			"posts": {List: rules.MustCompile(`@request.auth.plan = "pro"`), View: rules.MustCompile(`@request.auth.plan = "pro"`)},
		},
	}
	p := DefaultPolicy()
	p.Access = rs
	b := New("memo-test", p)
	f := &accessFixture{b: b, rs: rs}
	mark := func(a *Auth) *Auth { a.Superuser = rs.IsSuperuser(a); return a }
	pro := f.client(t, mark(user("u1", "plan", "pro")), "posts/*")
	free := f.client(t, mark(user("u1", "plan", "free")), "posts/*")
	admin := f.client(t, mark(user("u1", "plan", "free", "role", "admin")), "posts/*")
	free2 := f.client(t, mark(user("u1", "plan", "free")), "posts/*")
	for i := range 12 {
		b.Publish(mustEvent(t, fmt.Sprintf(`{"action":"create","record":{"id":"r%d","collectionName":"posts"}}`, i)))
	}
	for name, tc := range map[string]struct {
		c    *Client
		want int
	}{"pro": {pro, 12}, "free": {free, 0}, "superuser of the same id": {admin, 12}, "second free": {free2, 0}} {
		if got := len(dataFrames(parseFrames(drain(tc.c)))); got != tc.want {
			t.Errorf("%s client received %d of 12 events, want %d", name, got, tc.want)
		}
	}
}

// Events that lack a field their collection's rules read cannot be judged
// (PocketBase judges the stored row): CheckEvents refuses them, naming the
// event, the field and the rule.
func TestPartialRecordsRefused(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	for _, tc := range []struct {
		name, events, want string
	}{
		{"update without status or author", `[{"action":"create","record":{"id":"ok","collectionName":"posts","status":"published","author":""}},
			{"action":"update","record":{"id":"d1","collectionName":"posts","title":"Secret"}}]`,
			"event 1: record.author is required by posts' list_rule"},
		{"delete with only the id", `[{"action":"delete","record":{"id":"d1","collectionName":"posts"}}]`,
			"event 0: record.author is required by posts' list_rule"},
		{"found by collectionId", `[{"action":"delete","record":{"id":"p1","collectionName":"x","collectionId":"private"}}]`,
			"event 0: record.owner is required by x' list_rule"},
		{"null is present", `[{"action":"update","record":{"id":"d1","collectionName":"posts","status":null,"author":null}}]`, ""},
		{"collections without rules read nothing", `[{"action":"update","record":{"id":"x","collectionName":"locked"}}]`, ""},
		{"unknown collections read nothing", `[{"action":"update","record":{"id":"x","collectionName":"nobody"}}]`, ""},
	} {
		evs, err := DecodeEvents([]byte(tc.events))
		if err != nil {
			t.Fatal(err)
		}
		err = f.b.CheckEvents(evs)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// A partial update of a signed-in client's own auth record must not drop
// fields rules read (banned: true would vanish and `banned != true` pass).
func TestPartialAuthRecordRefusedOrClientReset(t *testing.T) {
	t.Parallel()
	rs := &RuleSet{Collections: map[string]*CollectionRules{
		"posts": {List: rules.MustCompile(`@request.auth.banned != true`)},
	}}
	p := DefaultPolicy()
	p.Access = rs
	b := New("authrefresh-test", p)
	f := &accessFixture{b: b, rs: rs}
	c := f.client(t, user("alice", "banned", true, "name", "A"), "posts/*")
	partial := mustEvent(t, `{"action":"update","record":{"id":"alice","collectionName":"users","name":"B"}}`)
	err := b.CheckEvents([]*Event{partial})
	var ee *EventError
	if !errors.As(err, &ee) || ee.Index != 0 || !strings.Contains(err.Error(), "record.banned is required") {
		t.Fatalf("partial auth record update: err = %v", err)
	}
	// Unrelated clients don't make an event partial.
	if err := b.CheckEvents([]*Event{mustEvent(t, `{"action":"update","record":{"id":"bob","collectionName":"users"}}`)}); err != nil {
		t.Fatalf("an update of a record nobody is signed in as: %v", err)
	}
	// Published anyway (the client signed in after the check): the client is
	// reset instead of receiving with a half record.
	b.Publish(partial, mustEvent(t, `{"action":"create","record":{"id":"p1","collectionName":"posts"}}`))
	if got := dataFrames(parseFrames(drain(c))); len(got) != 0 {
		t.Fatalf("a banned client received %v after a partial refresh", got)
	}
	if c.Auth() != nil || c.closeReason() != ReasonAuthStale {
		t.Fatalf("auth = %+v, close reason %q; want guest and %q", c.Auth(), c.closeReason(), ReasonAuthStale)
	}
}

// A changed tokenKey logs the client out (PocketBase does the same).
func TestChangedTokenKeyMakesGuest(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	c := f.client(t, user("alice", "tokenKey", "k1", "isAdmin", false), "private/*")
	same := `{"action":"update","record":{"id":"alice","collectionName":"users","tokenKey":"k1","isAdmin":false,"name":"x"}}`
	f.b.Publish(mustEvent(t, same))
	if a := c.Auth(); a == nil || a.Record["name"] != "x" {
		t.Fatalf("same tokenKey: auth = %+v, want the fresh record", a)
	}
	f.b.Publish(mustEvent(t, `{"action":"update","record":{"id":"alice","collectionName":"users","tokenKey":"k2","isAdmin":false}}`))
	if c.Auth() != nil {
		t.Fatalf("changed tokenKey: auth = %+v, want guest", c.Auth())
	}
	f.b.Publish(mustEvent(t, `{"action":"create","record":{"id":"p1","collectionName":"private","owner":"alice"}}`))
	if got := dataFrames(parseFrames(drain(c))); len(got) != 0 {
		t.Fatalf("logged-out client received %v", got)
	}
}

// A user's delete of their own record is delivered (judged with the auth they
// had), then they become a guest.
func TestOwnAuthRecordDeleteDelivered(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	c := f.client(t, user("alice", "isAdmin", false), "users/alice", "users/*")
	f.b.Publish(mustEvent(t, `{"action":"delete","record":{"id":"alice","collectionName":"users","collectionId":"_pb_users_auth_","isAdmin":false}}`))
	got := dataFrames(parseFrames(drain(c)))
	if len(got) != 2 {
		t.Fatalf("own delete: got %d frames %v, want 2 (view and list topics)", len(got), got)
	}
	if c.Auth() != nil {
		t.Fatal("still signed in after the own record's delete")
	}
}

// PocketBase sends an auth record's email only to its owner and superusers
// unless emailVisibility is true.
func TestEmailVisibility(t *testing.T) {
	t.Parallel()
	rs := &RuleSet{Superusers: rules.MustCompile(`@request.auth.collectionName = "_superusers"`),
		Collections: map[string]*CollectionRules{"users": {List: rules.MustCompile(""), View: rules.MustCompile("")}}}
	p := DefaultPolicy()
	p.Access = rs
	f := &accessFixture{b: New("email-test", p), rs: rs}
	owner := f.client(t, user("alice"), "users/*")
	other := f.client(t, user("bob"), "users/*")
	guest := f.client(t, nil, "users/*", withOptions("users/alice", `{"fields":"id,email"}`))
	root := f.client(t, superuser(), "users/*")
	f.b.Publish(mustEvent(t, `{"action":"update","record":{"id":"alice","collectionName":"users","collectionId":"_pb_users_auth_","email":"a@x.io","emailVisibility":false}}`))
	f.b.Publish(mustEvent(t, `{"action":"update","record":{"id":"carol","collectionName":"users","email":"c@x.io","emailVisibility":true}}`))
	for name, tc := range map[string]struct {
		c         *Client
		seesAlice bool
	}{"owner": {owner, true}, "other user": {other, false}, "guest": {guest, false}, "superuser": {root, true}} {
		out := drain(tc.c)
		if strings.Contains(out, "a@x.io") != tc.seesAlice {
			t.Errorf("%s: sees alice's hidden email = %v, want %v: %q", name, !tc.seesAlice, tc.seesAlice, out)
		}
		if !strings.Contains(out, "c@x.io") {
			t.Errorf("%s: misses carol's visible email: %q", name, out)
		}
	}
}

// Records go out as PocketBase encodes them: <, > and & unescaped.
func TestRecordJSONNotHTMLEscaped(t *testing.T) {
	t.Parallel()
	ev := mustEvent(t, `{"action":"create","record":{"id":"x","collectionName":"posts","body":"<b>a & b</b>"}}`)
	if got, want := string(ev.RecordJSON()), `{"body":"<b>a & b</b>","collectionName":"posts","id":"x"}`; got != want {
		t.Fatalf("record JSON %s, want %s", got, want)
	}
}

// A filter on a field the record lacks delivers nothing (PocketBase refuses
// filters on fields the collection does not have or hides).
func TestFilterOnMissingFieldDeliversNothing(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	c := f.client(t, nil, withOptions("posts/*", `{"filter":"nosuch = ''"}`))
	f.b.Publish(mustEvent(t, `{"action":"create","record":{"id":"p","collectionName":"posts","status":"published","author":""}}`))
	if got := dataFrames(parseFrames(drain(c))); len(got) != 0 {
		t.Fatalf("filter on a missing field delivered %v", got)
	}
}

// Over max_queued_bytes the clients holding the most are evicted first;
// a client that keeps up is never the one to go.
func TestMaxQueuedBytesEvictsLargestQueues(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.MaxQueuedBytes = 64 << 10
	p.ClientQueue = 1 << 20
	b := New("queued-test", p)
	stalled := []*Client{mustConnect(t, b), mustConnect(t, b), mustConnect(t, b)}
	healthy := mustConnect(t, b)
	for _, c := range append(stalled, healthy) {
		drain(c)
		mustSubscribe(t, b, c, "posts/*")
	}
	big := strings.Repeat("x", 4<<10)
	for i := range 100 {
		b.Publish(mustEvent(t, fmt.Sprintf(`{"action":"create","record":{"id":"r%d","collectionName":"posts","pad":%q}}`, i, big)))
		drain(healthy)
	}
	evicted := 0
	for _, c := range stalled {
		if c.closeReason() == ReasonQueuedBytes {
			evicted++
		}
	}
	if evicted == 0 || healthy.isClosed() {
		t.Fatalf("evicted %d stalled clients, healthy closed: %v", evicted, healthy.isClosed())
	}
	if got := b.Stats().Evictions[ReasonQueuedBytes]; got != uint64(evicted) {
		t.Fatalf("eviction counter = %d, want %d", got, evicted)
	}
	if held := queuedMemory(b); held > p.MaxQueuedBytes+p.MaxQueuedBytes/8+8<<10 {
		t.Fatalf("%d bytes still queued, over the budget", held)
	}
}

// queuedMemory is what max_queued_bytes counts: every client's own bytes and
// each shared tail once.
func queuedMemory(b *Broker) int64 { return b.Stats().QueuedBytes }

// max_queued_bytes counts memory: a burst queued for many clients that all
// share its frames costs the frames once plus each client's id lines, and
// evicts nobody, however many clients it was queued for. Every reference
// is let go when the clients are gone.
func TestMaxQueuedBytesCountsSharedFramesOnce(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.MaxQueuedBytes = 1 << 20
	p.ClientQueue = 4 << 20
	b := New("queued-shared", p)
	var clients []*Client
	for range 40 {
		c := mustConnect(t, b)
		drain(c)
		mustSubscribe(t, b, c, "posts/*")
		clients = append(clients, c)
	}
	big := strings.Repeat("x", 20<<10)
	const events = 40 // 800 KB of frames, 32 MB counted per client
	for i := range events {
		b.Publish(mustEvent(t, fmt.Sprintf(`{"action":"create","record":{"id":"r%d","collectionName":"posts","pad":%q}}`, i, big)))
	}
	for _, c := range clients {
		if c.isClosed() {
			t.Fatalf("client evicted (%s) by a burst whose frames are shared", c.closeReason())
		}
	}
	perClient := 0
	for _, c := range clients {
		perClient += c.pendingBytes().n
	}
	mem := queuedMemory(b)
	if perClient < 30<<20 || mem > 1<<20 || mem < events*20<<10 {
		t.Fatalf("queued %d bytes counted per client, %d as memory", perClient, mem)
	}
	// Half the clients read what they got, half are closed: the tails stay
	// held until the last queue lets go of them.
	for i, c := range clients {
		if i%2 == 0 {
			drain(c)
		} else {
			c.Close(ReasonQueueFull) // an eviction drops the queue
		}
	}
	if got := b.heldShared.Load(); got != 0 {
		t.Fatalf("%d bytes of shared tails still counted after every queue let go", got)
	}
}

// max_clients_per_ip counts streams per IP; a disconnect frees a slot.
func TestMaxClientsPerIP(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.MaxClientsPerIP = 2
	b := New("perip-test", p)
	a, _ := b.Connect("10.0.0.1")
	if _, err := b.Connect("10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Connect("10.0.0.1"); !errors.Is(err, ErrTooManyClientsPerIP) {
		t.Fatalf("third stream: %v", err)
	}
	if _, err := b.Connect("10.0.0.2"); err != nil {
		t.Fatalf("another IP: %v", err)
	}
	b.Disconnect(a, ReasonDisconnected)
	if _, err := b.Connect("10.0.0.1"); err != nil {
		t.Fatalf("after a disconnect: %v", err)
	}
}

// Hidden fields reach superusers only; tokenKey and password reach nobody.
func TestHiddenAndSecretFields(t *testing.T) {
	t.Parallel()
	rs := &RuleSet{Superusers: rules.MustCompile(`@request.auth.collectionName = "_superusers"`),
		Collections: map[string]*CollectionRules{"notes": {List: rules.MustCompile(""), Hidden: []string{"secret"}}}}
	p := DefaultPolicy()
	p.Access = rs
	f := &accessFixture{b: New("hidden-test", p), rs: rs}
	guest := f.client(t, nil, "notes/*")
	root := f.client(t, superuser(), "notes/*", withOptions("notes/*", `{"fields":"id,secret,tokenKey"}`))
	f.b.Publish(mustEvent(t, `{"action":"create","record":{"id":"n1","collectionName":"notes","secret":"s3","tokenKey":"tk","password":"pw"}}`))
	// Only the frames' data: frame ids are random and may hold "s3", "tk"
	// or "pw", and the echoed topic names tokenKey.
	g, r := payloads(drain(guest)), payloads(drain(root))
	if strings.Contains(g, "s3") || !strings.Contains(r, `"secret":"s3"`) {
		t.Fatalf("hidden field: guest %q, superuser %q", g, r)
	}
	for _, s := range []string{g, r} {
		if strings.Contains(s, "tk") || strings.Contains(s, "pw") || strings.Contains(s, "tokenKey") || strings.Contains(s, "password") {
			t.Fatalf("tokenKey or password sent: %q", s)
		}
	}
}

// A client filter through a relation (members.id) is joined by PocketBase
// under the client's view of the related collection: without a database,
// such filters match nothing for non-superusers (found by the differential suite).
func TestFilterRelationPathFailsClosed(t *testing.T) {
	t.Parallel()
	rs := &RuleSet{Superusers: rules.MustCompile(`@request.auth.collectionName = "_superusers"`),
		Collections: map[string]*CollectionRules{"k": {List: rules.MustCompile("")}}}
	p := DefaultPolicy()
	p.Access = rs
	f := &accessFixture{b: New("join-test", p), rs: rs}
	filter := withOptions("k/*", `{"filter":"members.id ?= 'U2'"}`)
	guest := f.client(t, nil, filter)
	root := f.client(t, superuser(), filter)
	f.b.Publish(mustEvent(t, `{"action":"create","record":{"id":"r1","collectionName":"k","members":["U2"]}}`))
	if g := dataFrames(parseFrames(drain(guest))); len(g) != 0 {
		t.Fatalf("guest's relation filter matched: %v", g)
	}
	if r := dataFrames(parseFrames(drain(root))); len(r) != 1 {
		t.Fatalf("superuser's relation filter: %v", r)
	}
}

// payloads is the data of the frames in raw, one per line.
func payloads(raw string) string {
	var b strings.Builder
	for _, f := range parseFrames(raw) {
		b.WriteString(f.Data)
		b.WriteByte('\n')
	}
	return b.String()
}
