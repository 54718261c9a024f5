package broker

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
)

// countingAccess is an Access stub that counts every evaluation.
type countingAccess struct {
	mu         sync.Mutex
	receive    map[string]int  // identity|kind|options filter -> calls
	picks      map[string]int  // fields -> calls
	denyIDs    map[string]bool // identities refused by CanReceive ("" = guests)
	denyFilter string          // options filter value that refuses
	denyTopic  string          // CanSubscribe refuses this topic
}

func newCountingAccess() *countingAccess {
	return &countingAccess{receive: map[string]int{}, picks: map[string]int{}, denyIDs: map[string]bool{}}
}

func (a *countingAccess) CanSubscribe(auth *Auth, topic string) error {
	if topic == a.denyTopic {
		return errors.New("forbidden")
	}
	return nil
}

func (a *countingAccess) CanReceive(auth *Auth, ev *Event, kind TopicKind, opts *Options) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.receive[receiveKey(auth, kind, opts.Filter())]++
	if a.denyIDs[auth.Identity()] {
		return false
	}
	return opts.Filter() == "" || opts.Filter() != a.denyFilter
}

func receiveKey(auth *Auth, kind TopicKind, filter string) string {
	return fmt.Sprintf("%s|%d|%s", auth.Identity(), kind, filter)
}

func (a *countingAccess) PickFields() FieldPicker {
	return func(record map[string]any, fields string) map[string]any {
		a.mu.Lock()
		a.picks[fields]++
		a.mu.Unlock()
		out := map[string]any{}
		for _, f := range strings.Split(fields, ",") {
			if v, ok := record[f]; ok {
				out[f] = v
			}
		}
		return out
	}
}

func (a *countingAccess) calls() (total int, byKey map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, v := range a.receive {
		total += v
	}
	return total, maps.Clone(a.receive)
}

func (a *countingAccess) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.receive)
	clear(a.picks)
}

func identity(i int) *Auth {
	if i == 0 {
		return nil // guests share one identity
	}
	return &Auth{ID: fmt.Sprintf("u%d", i), Collection: "users"}
}

// 100 clients of 5 identities: rules run 5 times per event, not 100.
func TestAccessRulesOncePerIdentity(t *testing.T) {
	t.Parallel()
	acc := newCountingAccess()
	acc.denyIDs["users/u2"] = true
	p := DefaultPolicy()
	p.Access = acc
	b := New("t", p)
	const clients, identities = 100, 5
	var cs []*Client
	for i := range clients {
		c := mustConnect(t, b)
		defer b.Disconnect(c, ReasonDisconnected)
		c.SetAuth(identity(i % identities))
		// Several topic strings without options share one answer per identity and kind.
		mustSubscribe(t, b, c, []string{"posts/*", "posts", "pbc_posts/*", "*", "posts/*?x=1"}[i%5])
		drain(c)
		cs = append(cs, c)
	}
	const events = 3
	for e := range events {
		acc.reset()
		b.Publish(postEvent(t, "create", fmt.Sprintf("r%d", e), ""))
		total, byKey := acc.calls()
		if total != identities {
			t.Fatalf("event %d: CanReceive ran %d times for %d clients of %d identities, want %d (%v)",
				e, total, clients, identities, identities, byKey)
		}
		for id := range identities {
			if k := receiveKey(identity(id), KindList, ""); byKey[k] != 1 {
				t.Fatalf("identity %q evaluated %d times", k, byKey[k])
			}
		}
	}
	for i, c := range cs {
		got := len(parseFrames(drain(c)))
		want := events
		if i%identities == 2 {
			want = 0 // denied identity
		}
		if got != want {
			t.Fatalf("client %d (identity %q) got %d frames, want %d", i, c.Auth().Identity(), got, want)
		}
	}
}

// Topics with options are evaluated once per identity and topic string (the
// options may change the answer); list and view rules are memoized apart.
func TestAccessOncePerIdentityAndOptionsTopic(t *testing.T) {
	t.Parallel()
	acc := newCountingAccess()
	acc.denyFilter = "no"
	p := DefaultPolicy()
	p.Access = acc
	b := New("t", p)
	topics := []string{
		"posts/*?options=" + urlEnc(`{"query":{"filter":"yes"}}`),
		"posts/*?options=" + urlEnc(`{"query":{"filter":"no"}}`),
	}
	const clients, identities = 40, 4
	type sub struct {
		c     *Client
		topic string
	}
	var subs []sub
	for i := range clients {
		c := mustConnect(t, b)
		defer b.Disconnect(c, ReasonDisconnected)
		c.SetAuth(identity(i % identities))
		topic := topics[(i/identities)%2]
		// everyone also holds a view subscription and a plain list one
		mustSubscribe(t, b, c, topic, "posts/r1", "pbc_posts/*")
		drain(c)
		subs = append(subs, sub{c, topic})
	}
	b.Publish(postEvent(t, "update", "r1", ""))

	want := map[string]int{}
	for id := range identities {
		a := identity(id)
		want[receiveKey(a, KindView, "")] = 1 // posts/r1
		want[receiveKey(a, KindList, "")] = 1 // pbc_posts/*
		want[receiveKey(a, KindList, "yes")] = 1
		want[receiveKey(a, KindList, "no")] = 1
	}
	if _, got := acc.calls(); !maps.Equal(got, want) {
		t.Fatalf("CanReceive calls\n got %v\nwant %v", got, want)
	}
	for _, s := range subs {
		fs := parseFrames(drain(s.c))
		events := map[string]bool{}
		for _, f := range fs {
			events[f.Event] = true
		}
		wantFiltered := strings.Contains(s.topic, "yes")
		if events[s.topic] != wantFiltered || !events["posts/r1"] || !events["pbc_posts/*"] || len(fs) != len(events) {
			t.Fatalf("client with %q got %v", s.topic, events)
		}
	}
}

func TestAccessCanSubscribeForbidden(t *testing.T) {
	t.Parallel()
	acc := newCountingAccess()
	acc.denyTopic = "secret/*"
	p := DefaultPolicy()
	p.Access = acc
	b := New("t", p)
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)
	mustSubscribe(t, b, c, "posts/*")
	err := b.SetSubscriptions(c, []string{"a", "secret/*"})
	var te *TopicError
	if !errors.As(err, &te) || !te.Forbidden || te.Index != 1 || te.Topic != "secret/*" {
		t.Fatalf("err %#v", err)
	}
	if got := c.Subscriptions(); len(got) != 1 || got[0] != "posts/*" {
		t.Fatalf("set changed to %q", got)
	}
}

// The fields option is applied once per event and distinct fields value.
func TestAccessFieldsEncodedOncePerFieldsValue(t *testing.T) {
	t.Parallel()
	acc := newCountingAccess()
	p := DefaultPolicy()
	p.Access = acc
	b := New("t", p)
	fieldsTopic := func(fields, extra string) string {
		return "posts/*?options=" + urlEnc(`{"query":{"fields":"`+fields+`"}}`) + extra
	}
	topics := []string{fieldsTopic("id,title", ""), fieldsTopic("id,title", "&x=1"), fieldsTopic("id", ""), "posts/*"}
	var cs []*Client
	for i := range 12 {
		c := mustConnect(t, b)
		defer b.Disconnect(c, ReasonDisconnected)
		mustSubscribe(t, b, c, topics[i%len(topics)])
		drain(c)
		cs = append(cs, c)
	}
	b.Publish(postEvent(t, "create", "r1", `,"title":"hi","body":"long"`))
	acc.mu.Lock()
	picks := maps.Clone(acc.picks)
	acc.mu.Unlock()
	if !maps.Equal(picks, map[string]int{"id,title": 1, "id": 1}) {
		t.Fatalf("picker calls %v", picks)
	}
	want := []string{
		`{"record":{"id":"r1","title":"hi"},"action":"create"}`,
		`{"record":{"id":"r1","title":"hi"},"action":"create"}`,
		`{"record":{"id":"r1"},"action":"create"}`,
		`{"record":{"body":"long","collectionId":"pbc_posts","collectionName":"posts","id":"r1","title":"hi"},"action":"create"}`,
	}
	for i, c := range cs {
		fs := parseFrames(drain(c))
		if len(fs) != 1 || fs[0].Data != want[i%len(topics)] || fs[0].Event != topics[i%len(topics)] {
			t.Fatalf("client %d got %+v", i, fs)
		}
	}
}

// The memo is per event: a rule that changes its answer is asked again for the next event.
func TestAccessMemoIsPerEvent(t *testing.T) {
	t.Parallel()
	acc := newCountingAccess()
	p := DefaultPolicy()
	p.Access = acc
	b := New("t", p)
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)
	c.SetAuth(identity(1))
	mustSubscribe(t, b, c, "posts/*")
	drain(c)
	b.Publish(postEvent(t, "create", "r1", ""))
	acc.mu.Lock()
	acc.denyIDs["users/u1"] = true
	acc.mu.Unlock()
	b.Publish(postEvent(t, "create", "r2", ""))
	if n := len(parseFrames(drain(c))); n != 1 {
		t.Fatalf("%d frames, want 1 (second event denied)", n)
	}
	if total, byKey := acc.calls(); total != 2 {
		t.Fatalf("CanReceive calls %v", byKey)
	}
}

// Changing a client's auth changes the identity its rules are evaluated (and memoized) under.
func TestAccessFollowsAuthChanges(t *testing.T) {
	t.Parallel()
	acc := newCountingAccess()
	acc.denyIDs[""] = true // guests see nothing
	p := DefaultPolicy()
	p.Access = acc
	b := New("t", p)
	guest, user := mustConnect(t, b), mustConnect(t, b)
	defer b.Disconnect(guest, ReasonDisconnected)
	defer b.Disconnect(user, ReasonDisconnected)
	for _, c := range []*Client{guest, user} {
		mustSubscribe(t, b, c, "posts/*")
		drain(c)
	}
	b.Publish(postEvent(t, "create", "r1", ""))
	if pending(guest) != "" || pending(user) != "" {
		t.Fatal("guests must get nothing")
	}
	if err := user.ReplaceAuth(identity(1)); err != nil {
		t.Fatal(err)
	}
	b.Publish(postEvent(t, "create", "r2", ""))
	if pending(guest) != "" || len(parseFrames(drain(user))) != 1 {
		t.Fatal("upgraded client must receive, the guest must not")
	}
	if err := user.ReplaceAuth(nil); !errors.Is(err, ErrAuthMismatch) {
		t.Fatalf("downgrade: %v", err)
	}
	if err := user.ReplaceAuth(identity(2)); !errors.Is(err, ErrAuthMismatch) {
		t.Fatalf("switch user: %v", err)
	}
}

// Identical options on different topic strings share one evaluation per
// event and auth record (a client can't multiply work by respelling a topic).
func TestAccessOncePerOptionsAcrossTopics(t *testing.T) {
	t.Parallel()
	acc := newCountingAccess()
	p := DefaultPolicy()
	p.Access = acc
	b := New("t", p)
	opts := "?options=" + urlEnc(`{"query":{"filter":"yes"}}`)
	for i := range 10 {
		c := mustConnect(t, b)
		defer b.Disconnect(c, ReasonDisconnected)
		mustSubscribe(t, b, c, "posts/*"+opts, "*"+opts, "pbc_posts/*"+opts, fmt.Sprintf("posts/*%s&n=%d", opts, i%2))
		drain(c)
	}
	b.Publish(postEvent(t, "create", "r1", ""))
	if total, byKey := acc.calls(); total != 3 {
		t.Fatalf("CanReceive ran %d times, want 3 (one per distinct options string): %v", total, byKey)
	}
}
