package broker

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-realtime/realtime/rules"
)

// accessFixture is a broker with PocketBase rules and a few identities.
type accessFixture struct {
	b  *Broker
	rs *RuleSet
}

func newAccessFixture(t testing.TB) *accessFixture {
	t.Helper()
	rule := func(s string) *rules.Rule { return rules.MustCompile(s) }
	rs := &RuleSet{
		Superusers: rule(`@request.auth.collectionName = "_superusers"`),
		Collections: map[string]*CollectionRules{
			"posts":   {List: rule(`status = "published" || author = @request.auth.id`), View: rule(`status = "published" || author = @request.auth.id`)},
			"private": {List: rule(`@request.auth.id != "" && owner = @request.auth.id`), View: rule(`@request.auth.id != "" && owner = @request.auth.id`)},
			"locked":  {},
			"users":   {List: rule(`id = @request.auth.id`), View: rule(`id = @request.auth.id`)},
		},
		Topics: []TopicRule{{Pattern: "admin_*", Rule: rule(`@request.auth.isAdmin = true`)}},
	}
	p := DefaultPolicy()
	p.Access = rs
	return &accessFixture{b: New("rules-test", p), rs: rs}
}

func user(id string, extra ...any) *Auth {
	rec := map[string]any{"id": id, "collectionName": "users", "collectionId": "_pb_users_auth_"}
	for i := 0; i+1 < len(extra); i += 2 {
		rec[extra[i].(string)] = extra[i+1]
	}
	a := &Auth{ID: id, Collection: "_pb_users_auth_", Record: rec}
	return a
}

func superuser() *Auth {
	return &Auth{ID: "root", Collection: "_superusers", Superuser: true,
		Record: map[string]any{"id": "root", "collectionName": "_superusers"}}
}

// client connects, authenticates as a (nil = guest) and subscribes.
func (f *accessFixture) client(t testing.TB, a *Auth, topics ...string) *Client {
	t.Helper()
	c := mustConnect(t, f.b)
	drain(c)
	if err := c.ReplaceAuth(a); err != nil {
		t.Fatal(err)
	}
	mustSubscribe(t, f.b, c, topics...)
	return c
}

func withOptions(topic, query string) string {
	return topic + "?options=" + url.QueryEscape(`{"query":`+query+`}`)
}

func TestRuleBypassTable(t *testing.T) {
	t.Parallel()
	alicePrivate := `{"action":"create","record":{"id":"p1","collectionName":"private","owner":"alice","body":"alice's diary"}}`
	bobPrivate := `{"action":"update","record":{"id":"p2","collectionName":"private","owner":"bob","body":"bob's diary"}}`
	draft := `{"action":"create","record":{"id":"d1","collectionName":"posts","status":"draft","author":"bob","secret":"s"}}`
	published := `{"action":"create","record":{"id":"pub1","collectionName":"posts","status":"published","author":"bob"}}`
	locked := `{"action":"create","record":{"id":"l1","collectionName":"locked","v":1}}`
	unknown := `{"action":"create","record":{"id":"u1","collectionName":"nobody_configured_this"}}`

	for _, tc := range []struct {
		name   string
		auth   *Auth
		topics []string
		event  string
		want   int // frames received
	}{
		{"guest vs private list", nil, []string{"private/*"}, alicePrivate, 0},
		{"guest vs private legacy topic", nil, []string{"private"}, alicePrivate, 0},
		{"guest vs private view", nil, []string{"private/p1"}, alicePrivate, 0},
		{"owner sees own private record", user("alice"), []string{"private/*"}, alicePrivate, 1},
		{"user A vs user B's record on list", user("alice"), []string{"private/*"}, bobPrivate, 0},
		{"user A vs user B's record on view", user("alice"), []string{"private/p2"}, bobPrivate, 0},
		{"user A vs B's draft", user("alice"), []string{"posts/*", "posts/d1"}, draft, 0},
		{"author sees own draft on both topics", user("bob"), []string{"posts/*", "posts/d1"}, draft, 2},
		{"guest sees published posts", nil, []string{"posts/*"}, published, 1},
		{"* does not leak a private record", user("alice"), []string{"*"}, bobPrivate, 0},
		{"* does not leak a locked collection", user("alice"), []string{"*"}, locked, 0},
		{"* does not leak an unconfigured collection", nil, []string{"*"}, unknown, 0},
		{"* delivers what the list rule allows", nil, []string{"*"}, published, 1},
		{"superuser bypasses rules on *", superuser(), []string{"*"}, locked, 1},
		{"superuser sees a private record", superuser(), []string{"private/*"}, bobPrivate, 1},
		{"filter injection with @request.auth by a guest", nil,
			[]string{withOptions("private/*", `{"filter":"@request.auth.id = ''"}`)}, alicePrivate, 0},
		{"filter with @request refused for non-superusers even where the rule passes", nil,
			[]string{withOptions("posts/*", `{"filter":"@request.headers.x = ''"}`)}, published, 0},
		{"filter with @collection refused", nil,
			[]string{withOptions("posts/*", `{"filter":"@collection.users.id != ''"}`)}, published, 0},
		{"filter OR cannot widen the rule", user("alice"),
			[]string{withOptions("posts/*", `{"filter":"id != '' || status = 'draft'"}`)}, draft, 0},
		{"fields cannot reach a refused record", user("alice"),
			[]string{withOptions("posts/*", `{"fields":"secret"}`)}, draft, 0},
		{"a plain filter narrows allowed events", nil,
			[]string{withOptions("posts/*", `{"filter":"author = 'nobody'"}`)}, published, 0},
		{"a malformed filter delivers nothing", nil,
			[]string{withOptions("posts/*", `{"filter":"author = "}`)}, published, 0},
		{"superuser filter may use @request", superuser(),
			[]string{withOptions("posts/*", `{"filter":"@request.auth.id = 'root'"}`)}, draft, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newAccessFixture(t)
			c := f.client(t, tc.auth, tc.topics...)
			f.b.Publish(mustEvent(t, tc.event))
			got := dataFrames(parseFrames(drain(c)))
			if len(got) != tc.want {
				t.Fatalf("got %d frames %v, want %d", len(got), got, tc.want)
			}
		})
	}
}

func TestFieldsPickOnlyAllowedData(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	c := f.client(t, nil, withOptions("posts/*", `{"fields":"id,title"}`))
	f.b.Publish(mustEvent(t, `{"action":"create","record":{"id":"x","collectionName":"posts","status":"published","title":"T","secret":"s"}}`))
	out := drain(c)
	if !strings.Contains(out, `data:{"record":{"id":"x","title":"T"},"action":"create"}`) || strings.Contains(out, "secret") {
		t.Fatalf("fields not applied: %q", out)
	}
}

func TestTopicRules(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	for _, tc := range []struct {
		name  string
		auth  *Auth
		topic string
		ok    bool
	}{
		{"guest refused an admin topic", nil, "admin_stats", false},
		{"user without the flag refused", user("alice"), "admin_stats", false},
		{"options cannot unlock an admin topic", user("alice"), withOptions("admin_stats", `{"isAdmin":"true"}`), false},
		{"admin allowed", user("carol", "isAdmin", true), "admin_stats", true},
		{"superuser allowed", superuser(), "admin_stats", true},
		{"other custom topics are open", nil, "chat", true},
		{"collection topics are accepted (events are checked)", nil, "private/*", true},
	} {
		c := mustConnect(t, f.b)
		if err := c.ReplaceAuth(tc.auth); err != nil {
			t.Fatal(err)
		}
		err := f.b.SetSubscriptions(c, []string{"chat", tc.topic})
		var te *TopicError
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case !tc.ok && (!errors.As(err, &te) || !te.Forbidden || te.Index != 1):
			t.Errorf("%s: err = %v, want a forbidden TopicError at index 1", tc.name, err)
		case !tc.ok && len(c.Subscriptions()) != 0:
			t.Errorf("%s: a refused request changed the subscriptions: %v", tc.name, c.Subscriptions())
		}
	}
}

func TestAuthSwitchAndDowngradeRefused(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	c := f.client(t, nil)
	for _, step := range []struct {
		auth *Auth
		err  error
	}{
		{nil, nil},                     // guest -> guest
		{user("alice"), nil},           // upgrade
		{user("alice", "x", 1), nil},   // same identity, fresh record
		{user("bob"), ErrAuthMismatch}, // switch
		{nil, ErrAuthMismatch},         // downgrade
		{superuser(), ErrAuthMismatch}, // to a superuser
	} {
		if err := c.ReplaceAuth(step.auth); !errors.Is(err, step.err) {
			t.Fatalf("ReplaceAuth(%v) = %v, want %v", step.auth.Identity(), err, step.err)
		}
	}
	if got := c.Auth(); got == nil || got.ID != "alice" || got.Record["x"] != 1 {
		t.Fatalf("auth = %+v, want alice's fresh record", got)
	}
}

func TestAuthRecordEventsRefreshClients(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	var forgotten []string
	p := *f.b.Policy()
	p.ForgetAuth = func(identity string) { forgotten = append(forgotten, identity) }
	f.b.SetPolicy(&p)

	alice := f.client(t, user("alice", "plan", "free"), "private/*")
	other := f.client(t, user("bob"), "private/*")
	// An update of alice's auth record (by collection name: events may omit the id).
	f.b.Publish(mustEvent(t, `{"action":"update","record":{"id":"alice","collectionName":"users","plan":"pro","isAdmin":false}}`))
	if got := alice.Auth(); got == nil || got.Record["plan"] != "pro" || got.Identity() != user("alice").Identity() {
		t.Fatalf("after update auth = %+v, want alice with plan pro", got)
	}
	if other.Auth().Record["plan"] != nil {
		t.Fatal("bob's auth record changed by alice's event")
	}
	if len(forgotten) != 1 || forgotten[0] != user("alice").Identity() {
		t.Fatalf("ForgetAuth calls = %v", forgotten)
	}
	// Deleted: alice becomes a guest and keeps her stream and subscriptions.
	f.b.Publish(mustEvent(t, `{"action":"delete","record":{"id":"alice","collectionName":"users","collectionId":"_pb_users_auth_"}}`))
	if alice.Auth() != nil {
		t.Fatalf("after delete auth = %+v, want guest", alice.Auth())
	}
	if _, ok := f.b.Client(alice.ID()); !ok || len(alice.Subscriptions()) != 1 {
		t.Fatal("a deleted auth record closed the stream or dropped subscriptions")
	}
	drain(alice)
	f.b.Publish(mustEvent(t, `{"action":"create","record":{"id":"p9","collectionName":"private","owner":"alice"}}`))
	if frames := dataFrames(parseFrames(drain(alice))); len(frames) != 0 {
		t.Fatalf("a guest (deleted auth) still receives private records: %v", frames)
	}
	// As a guest she may log in again (as anyone: PocketBase allows guest -> auth).
	if err := alice.ReplaceAuth(user("alice")); err != nil {
		t.Fatal(err)
	}
}

func TestRulesEvaluatedOncePerIdentity(t *testing.T) {
	t.Parallel()
	f := newAccessFixture(t)
	const users, perUser = 5, 20
	for u := range users {
		for range perUser {
			f.client(t, user(fmt.Sprint("u", u)), "private/*")
		}
	}
	before := f.rs.Evaluations()
	f.b.Publish(mustEvent(t, `{"action":"create","record":{"id":"p1","collectionName":"private","owner":"u3"}}`))
	if n := f.rs.Evaluations() - before; n != users {
		t.Fatalf("%d rule evaluations for %d clients of %d identities, want %d", n, users*perUser, users, users)
	}
	received := 0
	for _, c := range f.b.Clients() {
		received += len(dataFrames(parseFrames(drain(c))))
	}
	if received != perUser {
		t.Fatalf("%d clients received u3's record, want %d", received, perUser)
	}
}
