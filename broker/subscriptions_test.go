package broker

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSetSubscriptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		wildcard bool
		before   []string
		topics   []string
		want     []string // resulting set (unchanged on error)
		errIndex int      // -1 = no error
		errIs    error
	}{
		{"replace whole set", true, []string{"a", "b"}, []string{"b", "c"}, []string{"b", "c"}, -1, nil},
		{"empty list clears", true, []string{"a", "b"}, []string{}, nil, -1, nil},
		{"nil list clears", true, []string{"a"}, nil, nil, -1, nil},
		{"empty strings skipped", true, nil, []string{"", "a", "", "b", ""}, []string{"a", "b"}, -1, nil},
		{"only empty strings clear", true, []string{"a"}, []string{"", ""}, nil, -1, nil},
		{"duplicates collapse", true, nil, []string{"a", "a", "b", "a"}, []string{"a", "b"}, -1, nil},
		{"options are part of the topic", true, nil, []string{"posts/*", "posts/*?options=%7B%7D"}, []string{"posts/*", "posts/*?options=%7B%7D"}, -1, nil},
		{"wildcard on", true, nil, []string{"*"}, []string{"*"}, -1, nil},
		{"wildcard off", false, []string{"a"}, []string{"b", "*"}, []string{"a"}, 1, ErrWildcardDisabled},
		{"wildcard off with options", false, nil, []string{"*?options=%7B%7D"}, nil, 0, ErrWildcardDisabled},
		{"wildcard off allows collection star", false, nil, []string{"posts/*"}, []string{"posts/*"}, -1, nil},
		{"LF refused", true, []string{"keep"}, []string{"ok", "bad\ntopic"}, []string{"keep"}, 1, ErrControlCharacter},
		{"CR refused", true, nil, []string{"bad\r"}, nil, 0, ErrControlCharacter},
		{"NUL refused", true, nil, []string{"a\x00b"}, nil, 0, ErrControlCharacter},
		{"DEL refused", true, nil, []string{"a\x7fb"}, nil, 0, ErrControlCharacter},
		{"TAB refused", true, nil, []string{"a\tb"}, nil, 0, ErrControlCharacter},
		{"C1 control refused", true, nil, []string{"a\u0085b"}, nil, 0, ErrControlCharacter},
		{"index counts skipped empties", true, nil, []string{"", "a", "", "x\ny"}, nil, 3, ErrControlCharacter},
		{"unicode fine", true, nil, []string{"послания/*", "emoji/🎉"}, []string{"emoji/🎉", "послания/*"}, -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := DefaultPolicy()
			p.Wildcard = tt.wildcard
			b := New("t", p)
			c := mustConnect(t, b)
			defer b.Disconnect(c, ReasonDisconnected)
			if tt.before != nil {
				mustSubscribe(t, b, c, tt.before...)
			}
			err := b.SetSubscriptions(c, tt.topics)
			if tt.errIndex < 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
			} else {
				var te *TopicError
				if !errors.As(err, &te) {
					t.Fatalf("error %v (%T), want *TopicError", err, err)
				}
				if te.Index != tt.errIndex || te.Topic != tt.topics[tt.errIndex] || te.Forbidden {
					t.Fatalf("TopicError %+v, want index %d topic %q", te, tt.errIndex, tt.topics[tt.errIndex])
				}
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("error %v, want %v", err, tt.errIs)
				}
			}
			got := c.Subscriptions()
			if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Fatalf("subscriptions %q, want %q", got, tt.want)
			}
			for _, topic := range tt.want {
				if !c.HasSubscription(topic) {
					t.Fatalf("HasSubscription(%q) = false", topic)
				}
			}
			if st := b.Stats(); st.Subscriptions != int64(len(tt.want)) {
				t.Fatalf("stats subscriptions %d, want %d", st.Subscriptions, len(tt.want))
			}
			if n := len(indexEntries(b)); n != len(tt.want) {
				t.Fatalf("index has %d entries, want %d: %q", n, len(tt.want), indexEntries(b))
			}
		})
	}
}

func TestHasSubscriptionIsExact(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)
	mustSubscribe(t, b, c, "posts/*?a=1")
	for topic, want := range map[string]bool{"posts/*?a=1": true, "posts/*": false, "posts/*?a=2": false, "": false} {
		if got := c.HasSubscription(topic); got != want {
			t.Errorf("HasSubscription(%q) = %v, want %v", topic, got, want)
		}
	}
}

func TestSubscriptionStatsAcrossReplaceAndDisconnect(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c1, c2 := mustConnect(t, b), mustConnect(t, b)
	check := func(step string, want int64) {
		t.Helper()
		if got := b.Stats().Subscriptions; got != want {
			t.Fatalf("%s: subscriptions = %d, want %d", step, got, want)
		}
	}
	check("start", 0)
	mustSubscribe(t, b, c1, "a", "b", "c")
	check("c1 3", 3)
	mustSubscribe(t, b, c2, "a", "x")
	check("c2 2", 5)
	mustSubscribe(t, b, c1, "b", "d")
	check("c1 replaced", 4)
	mustSubscribe(t, b, c1, "b", "d", "b", "")
	check("c1 same set", 4)
	if err := b.SetSubscriptions(c1, []string{"e", "bad\x00"}); err == nil {
		t.Fatal("control char accepted")
	}
	check("refused request changes nothing", 4)
	b.Disconnect(c2, ReasonDisconnected)
	check("c2 gone", 2)
	b.Disconnect(c2, ReasonDisconnected)
	check("c2 gone twice", 2)
	mustSubscribe(t, b, c2, "late") // a disconnected client must not come back into the index
	check("subscribe after disconnect", 2)
	mustSubscribe(t, b, c1)
	check("c1 cleared", 0)
	mustSubscribe(t, b, c1, "z")
	b.Disconnect(c1, ReasonDisconnected)
	check("all gone", 0)
	if e := indexEntries(b); len(e) != 0 {
		t.Fatalf("index not empty: %q", e)
	}
	if st := b.Stats(); st.Clients != 0 || st.Connects != 2 {
		t.Fatalf("clients %d connects %d", st.Clients, st.Connects)
	}
}

// Two clients sharing a topic share one index entry; removing one keeps the other.
func TestIndexSharedTopic(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c1, c2 := mustConnect(t, b), mustConnect(t, b)
	defer b.Disconnect(c2, ReasonDisconnected)
	mustSubscribe(t, b, c1, "posts/*")
	mustSubscribe(t, b, c2, "posts/*")
	drain(c1)
	drain(c2)
	b.Disconnect(c1, ReasonDisconnected)
	b.Publish(postEvent(t, "create", "r1", ""))
	if got := drain(c2); !strings.Contains(got, "event:posts/*\n") {
		t.Fatalf("remaining subscriber got %q", got)
	}
	if e := indexEntries(b); len(e) != 1 || !strings.HasSuffix(e[0], c2.ID()) {
		t.Fatalf("index %q", e)
	}
}
