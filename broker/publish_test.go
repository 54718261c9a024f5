package broker

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// recordIDs extracts record ids from data frames, in arrival order.
func recordIDs(t testing.TB, fs []frame) []string {
	t.Helper()
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		var p struct {
			Record struct {
				ID string `json:"id"`
			} `json:"record"`
		}
		if err := json.Unmarshal([]byte(f.Data), &p); err != nil {
			t.Fatalf("frame data %q: %v", f.Data, err)
		}
		out = append(out, p.Record.ID)
	}
	return out
}

func TestPublishOrderOneClient(t *testing.T) {
	t.Parallel()
	const n = 10000
	p := DefaultPolicy()
	p.ClientQueue = 0 // unbounded: this test is about order, not back-pressure
	b := New("t", p)
	c := mustConnect(t, b)
	mustSubscribe(t, b, c, "posts/*")
	sv := serve(t, b, c, nil)

	events := make([]*Event, n)
	for i := range events {
		events[i] = postEvent(t, "update", "r"+strconv.Itoa(i), "")
	}
	for _, ev := range events {
		b.Publish(ev)
	}
	ids := recordIDs(t, sv.waitFrames(t, n))
	if len(ids) != n {
		t.Fatalf("%d frames, want %d", len(ids), n)
	}
	for i, id := range ids {
		if id != "r"+strconv.Itoa(i) {
			t.Fatalf("frame %d is %s: out of order", i, id)
		}
	}
	if st := b.Stats(); st.EventsIn != n || st.Fanout.Count != n {
		t.Fatalf("stats: events in %d, fanout count %d", st.EventsIn, st.Fanout.Count)
	}
}

// Several publishers at once: every client sees one and the same global order,
// and each publisher's events keep their relative order.
func TestPublishGlobalOrderConcurrentPublishers(t *testing.T) {
	t.Parallel()
	const publishers, perPublisher, clients = 4, 500, 3
	p := DefaultPolicy()
	p.ClientQueue = 0
	b := New("t", p)
	var svs []*served
	for i := range clients {
		c := mustConnect(t, b)
		// Different topic forms, so the order does not depend on sharing one index entry.
		mustSubscribe(t, b, c, []string{"posts/*", "pbc_posts/*", "*"}[i])
		svs = append(svs, serve(t, b, c, nil))
	}
	var wg sync.WaitGroup
	for w := range publishers {
		events := make([]*Event, perPublisher)
		for i := range events {
			events[i] = postEvent(t, "create", fmt.Sprintf("p%d-%d", w, i), "")
		}
		wg.Go(func() {
			for i := 0; i < len(events); {
				// mix single and batched publishes
				k := min(1+i%3, len(events)-i)
				b.Publish(events[i : i+k]...)
				i += k
			}
		})
	}
	wg.Wait()
	var first []string
	for i, sv := range svs {
		ids := recordIDs(t, sv.waitFrames(t, publishers*perPublisher))
		if len(ids) != publishers*perPublisher {
			t.Fatalf("client %d got %d frames", i, len(ids))
		}
		if i == 0 {
			first = ids
			next := make([]int, publishers)
			for _, id := range ids {
				var w, k int
				fmt.Sscanf(id, "p%d-%d", &w, &k)
				if k != next[w] {
					t.Fatalf("publisher %d: got event %d, want %d", w, k, next[w])
				}
				next[w]++
			}
			continue
		}
		if !slices.Equal(ids, first) {
			for j := range ids {
				if ids[j] != first[j] {
					t.Fatalf("client %d diverges from client 0 at frame %d: %s vs %s", i, j, ids[j], first[j])
				}
			}
		}
	}
}

func TestPublishIdempotency(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)
	mustSubscribe(t, b, c, "posts/*")
	drain(c)

	withID := func(key, rec string) *Event {
		return mustEvent(t, fmt.Sprintf(`{"id":%q,"action":"create","record":{"id":%q,"collectionName":"posts"}}`, key, rec))
	}
	if n := b.Publish(withID("k1", "a")); n != 1 {
		t.Fatalf("first publish = %d", n)
	}
	if n := b.Publish(withID("k1", "b")); n != 0 {
		t.Fatalf("same id again = %d, want 0", n)
	}
	if n := b.Publish(withID("k2", "c"), withID("k2", "d"), withID("k3", "e")); n != 2 {
		t.Fatalf("batch with a duplicate = %d, want 2", n)
	}
	// Events without an id are never deduplicated.
	if n := b.Publish(postEvent(t, "create", "f", ""), postEvent(t, "create", "f", "")); n != 2 {
		t.Fatalf("events without id = %d, want 2", n)
	}
	ids := recordIDs(t, parseFrames(drain(c)))
	if want := []string{"a", "c", "e", "f", "f"}; !slices.Equal(ids, want) {
		t.Fatalf("delivered %q, want %q", ids, want)
	}
	if st := b.Stats(); st.EventsIn != 5 {
		t.Fatalf("EventsIn = %d, want 5", st.EventsIn)
	}
}

func TestPublishIdempotencyWindow(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	ev := func(key string) *Event {
		return &Event{ID: key, Action: ActionCreate, Collection: "posts", RecordID: "r", recordJSON: []byte(`{}`)}
	}
	if b.Publish(ev("old")) != 1 {
		t.Fatal("first")
	}
	for i := range idempotencyWindow - 1 {
		if b.Publish(ev("k"+strconv.Itoa(i))) != 1 {
			t.Fatalf("k%d", i)
		}
	}
	if b.Publish(ev("old")) != 0 {
		t.Fatal("still inside the window: must be dropped")
	}
	b.Publish(ev("push-out"))
	if b.Publish(ev("old")) != 1 {
		t.Fatal("outside the window: must publish again")
	}
	if seen := len(b.Transport().(*MemoryTransport).seen); seen > idempotencyWindow {
		t.Fatalf("remembers %d ids, window is %d", seen, idempotencyWindow)
	}
}

func TestSendMessage(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	exact1, exact2, withQuery, other, none := mustConnect(t, b), mustConnect(t, b), mustConnect(t, b), mustConnect(t, b), mustConnect(t, b)
	all := []*Client{exact1, exact2, withQuery, other, none}
	for _, c := range all {
		defer b.Disconnect(c, ReasonDisconnected)
		drain(c)
	}
	mustSubscribe(t, b, exact1, "custom", "posts/*")
	mustSubscribe(t, b, exact2, "custom")
	mustSubscribe(t, b, withQuery, "custom?x=1")
	mustSubscribe(t, b, other, "custom2", "Custom", "custom/*")

	m := &Message{Name: "custom", Data: json.RawMessage("{\n  \"hello\": \"world\",\n  \"n\": 1\n}")}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := b.SendMessage(m); n != 2 {
		t.Fatalf("delivered = %d, want 2", n)
	}
	for _, c := range all {
		got := drain(c)
		want := ""
		if c == exact1 || c == exact2 {
			want = "id:" + c.ID() + "\nevent:custom\n" + `data:{"hello":"world","n":1}` + "\n\n"
		}
		if got != want {
			t.Errorf("client %s got %q, want %q", c.ID(), got, want)
		}
	}

	// Restricted to listed clients (of those subscribed).
	m2 := &Message{Name: "custom", Data: json.RawMessage(`1`), Clients: []string{exact2.ID(), withQuery.ID(), "unknown"}}
	if n := b.SendMessage(m2); n != 1 {
		t.Fatalf("restricted delivered = %d, want 1", n)
	}
	if got := drain(exact2); got != "id:"+exact2.ID()+"\nevent:custom\ndata:1\n\n" {
		t.Fatalf("listed client got %q", got)
	}
	for _, c := range []*Client{exact1, withQuery} {
		if got := drain(c); got != "" {
			t.Fatalf("unlisted or unsubscribed client got %q", got)
		}
	}

	// A topic nobody subscribed to, and the exact topic with a query.
	if n := b.SendMessage(&Message{Name: "nobody", Data: json.RawMessage(`1`)}); n != 0 {
		t.Fatalf("delivered to nobody = %d", n)
	}
	if n := b.SendMessage(&Message{Name: "custom?x=1", Data: json.RawMessage(`true`)}); n != 1 {
		t.Fatalf("query topic delivered = %d", n)
	}
	if got := drain(withQuery); got != "id:"+withQuery.ID()+"\nevent:custom?x=1\ndata:true\n\n" {
		t.Fatalf("query subscriber got %q", got)
	}
	// A custom message is not a record event: "posts/*" only gets it when named exactly.
	if n := b.SendMessage(&Message{Name: "posts/*", Data: json.RawMessage(`{}`)}); n != 1 {
		t.Fatalf("exact posts/* delivered = %d", n)
	}
	if got := drain(exact1); !strings.HasSuffix(got, "event:posts/*\ndata:{}\n\n") {
		t.Fatalf("got %q", got)
	}
	// A closed client is not counted.
	exact2.Close(ReasonDisconnected)
	if n := b.SendMessage(&Message{Name: "custom", Data: json.RawMessage(`2`)}); n != 1 {
		t.Fatalf("delivered with a closed subscriber = %d, want 1", n)
	}
	if st := b.Stats(); st.MessagesIn != 6 || st.EventsIn != 0 {
		t.Fatalf("stats: messages in %d, events in %d", st.MessagesIn, st.EventsIn)
	}
}
