package broker

import (
	"context"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConnectFrameIsFirst(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)

	if !clientIDRe.MatchString(c.ID()) {
		t.Fatalf("client id %q is not 40 chars of [A-Za-z0-9]", c.ID())
	}
	// Subscribing and publishing before Serve starts must not get ahead of PB_CONNECT.
	mustSubscribe(t, b, c, "posts/*")
	b.Publish(postEvent(t, "create", "r1", ""))

	got := pending(c)
	want := connectFrameFor(c.ID())
	if !strings.HasPrefix(got, want) {
		t.Fatalf("queue does not start with PB_CONNECT:\n got %q\nwant prefix %q", got, want)
	}
}

func TestClientIDsAreUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	counts := map[byte]int{}
	for range 2000 {
		id := newClientID()
		if !clientIDRe.MatchString(id) {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		for i := range len(id) {
			counts[id[i]]++
		}
	}
	// 80,000 characters over 62 symbols: every symbol must show up.
	if len(counts) != len(idAlphabet) {
		t.Fatalf("ids use %d distinct characters, want %d", len(counts), len(idAlphabet))
	}
}

// TestServeWireBytes checks the exact bytes Serve puts on a real connection.
func TestServeWireBytes(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	p.Heartbeat = 0
	b := New("t", p)
	c := mustConnect(t, b)
	mustSubscribe(t, b, c, "posts/*")

	server, client := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan string, 1)
	go func() {
		r := c.Serve(ctx, connStream{server})
		b.Disconnect(c, r)
		server.Close()
		done <- r
	}()

	b.Publish(postEvent(t, "create", "r1", `,"title":"hi"`))
	want := connectFrameFor(c.ID()) +
		"id:" + c.ID() + "." + b.Epoch() + ".1\nevent:posts/*\n" +
		`data:{"record":{"collectionId":"pbc_posts","collectionName":"posts","id":"r1","title":"hi"},"action":"create"}` + "\n\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != want {
		t.Fatalf("wire bytes:\n got %q\nwant %q", got, want)
	}
	cancel()
	if r := <-done; r != ReasonClientGone {
		t.Fatalf("reason %q, want %q", r, ReasonClientGone)
	}
}

// connStream adapts a net.Conn to Stream.
type connStream struct{ net.Conn }

func (connStream) Flush() error { return nil }

func TestRecordEventFrames(t *testing.T) {
	t.Parallel()
	const payload = `{"record":{"a":1,"collectionId":"pbc_posts","collectionName":"posts","id":"r1","title":"hi","z":"last"},"action":"%s"}`
	optsTopic := `posts/*?options=%7B%22query%22%3A%7B%22fields%22%3A%22id%2Ctitle%22%7D%7D`
	tests := []struct {
		name   string
		topics []string
		action string
		want   []string // event names, sorted
	}{
		{"collection wildcard", []string{"posts/*"}, "create", []string{"posts/*"}},
		{"record id", []string{"posts/r1"}, "update", []string{"posts/r1"}},
		{"legacy bare collection", []string{"posts"}, "delete", []string{"posts"}},
		{"collectionId wildcard", []string{"pbc_posts/*"}, "create", []string{"pbc_posts/*"}},
		{"collectionId record", []string{"pbc_posts/r1"}, "create", []string{"pbc_posts/r1"}},
		{"collectionId bare", []string{"pbc_posts"}, "create", []string{"pbc_posts"}},
		{"star", []string{"*"}, "create", []string{"*"}},
		{"query suffix echoed", []string{"posts/*?foo=bar"}, "create", []string{"posts/*?foo=bar"}},
		{"options echoed byte for byte", []string{optsTopic}, "create", []string{optsTopic}},
		{"record with options", []string{"posts/r1?options=%7B%7D"}, "create", []string{"posts/r1?options=%7B%7D"}},
		{"one message per matching topic", []string{"posts/*", "posts/r1"}, "create", []string{"posts/*", "posts/r1"}},
		{"every form at once", []string{"posts/*", "posts/r1", "posts", "pbc_posts/*", "*", "posts/*?x=1"}, "update",
			[]string{"*", "pbc_posts/*", "posts", "posts/*", "posts/*?x=1", "posts/r1"}},
		{"singular name", []string{"post/*"}, "create", nil},
		{"case differs", []string{"Posts/*"}, "create", nil},
		{"other record", []string{"posts/r2"}, "create", nil},
		{"record id prefix", []string{"posts/r"}, "create", nil},
		{"record id longer", []string{"posts/r10"}, "create", nil},
		{"other collection", []string{"comments/*"}, "create", nil},
		{"collection prefix", []string{"post"}, "create", nil},
		{"trailing slash", []string{"posts/"}, "create", nil},
		{"no slash", []string{"posts*"}, "create", nil},
		{"PB_CONNECT topic", []string{"PB_CONNECT"}, "create", nil},
		{"suffix without ?", []string{"posts/*&x=1"}, "create", nil},
		{"mixed match and miss", []string{"post/*", "posts/r1", "Posts"}, "create", []string{"posts/r1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := New("t", nil)
			c := mustConnect(t, b)
			defer b.Disconnect(c, ReasonDisconnected)
			mustSubscribe(t, b, c, tt.topics...)
			connect := drain(c)
			if connect != connectFrameFor(c.ID()) {
				t.Fatalf("connect frame %q", connect)
			}

			ev := postEvent(t, tt.action, "r1", `,"title":"hi","z":"last","a":1`)
			if n := b.Publish(ev); n != 1 {
				t.Fatalf("Publish = %d, want 1", n)
			}
			got := drain(c)
			var want strings.Builder
			fs := parseFrames(got)
			slices.SortFunc(fs, func(a, b frame) int { return strings.Compare(a.Event, b.Event) })
			for _, topic := range tt.want {
				want.WriteString("id:" + c.ID() + "\nevent:" + topic + "\ndata:" + strings.Replace(payload, "%s", tt.action, 1) + "\n\n")
			}
			var sorted strings.Builder
			for _, f := range fs {
				sorted.WriteString("id:" + f.ID + "\nevent:" + f.Event + "\ndata:" + f.Data + "\n\n")
			}
			if sorted.String() != want.String() {
				t.Fatalf("frames:\n got %q\nwant %q", got, want.String())
			}
			// The reassembled frames must be the raw bytes too (nothing else was written).
			if len(got) != want.Len() {
				t.Fatalf("raw queue has %d bytes, want %d: %q", len(got), want.Len(), got)
			}
			if st := b.Stats(); st.EventsIn != 1 {
				t.Fatalf("EventsIn = %d, want 1", st.EventsIn)
			}
		})
	}
}

// An event without collectionId only matches by name; "*" still matches.
func TestEventWithoutCollectionID(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	byID := mustConnect(t, b)
	byName := mustConnect(t, b)
	star := mustConnect(t, b)
	for _, c := range []*Client{byID, byName, star} {
		defer b.Disconnect(c, ReasonDisconnected)
		drain(c)
	}
	mustSubscribe(t, b, byID, "pbc_posts/*")
	mustSubscribe(t, b, byName, "posts/*")
	mustSubscribe(t, b, star, "*")
	b.Publish(mustEvent(t, `{"action":"create","collection":"posts","record":{"id":"r1"}}`))

	if got := drain(byID); got != "" {
		t.Errorf("collectionId subscriber got %q", got)
	}
	want := `data:{"record":{"collectionName":"posts","id":"r1"},"action":"create"}`
	for name, c := range map[string]*Client{"name": byName, "star": star} {
		if got := drain(c); !strings.Contains(got, want) {
			t.Errorf("%s subscriber got %q, want it to contain %q", name, got, want)
		}
	}
}

// Events are delivered frame by frame in publish order through Serve.
func TestServeDeliversFrames(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	c := mustConnect(t, b)
	mustSubscribe(t, b, c, "posts/*", "posts/r2")
	sv := serve(t, b, c, nil)

	b.Publish(postEvent(t, "create", "r1", ""), postEvent(t, "update", "r2", ""), postEvent(t, "delete", "r3", ""))
	fs := sv.waitFrames(t, 4)
	all := sv.s.frames()
	if all[0].Event != "PB_CONNECT" || all[0].ID != c.ID() || all[0].Data != `{"clientId":"`+c.ID()+`"}` {
		t.Fatalf("first frame %+v", all[0])
	}
	var got []string
	for _, f := range fs {
		if !strings.HasPrefix(f.ID, c.ID()+"."+b.Epoch()+".") {
			t.Fatalf("frame id %q, want client id, epoch and position", f.ID)
		}
		got = append(got, f.Event+" "+f.Data[strings.Index(f.Data, `"action"`):])
	}
	// r2 matches two topics; their relative order within one event is not specified.
	if got[0] != `posts/* "action":"create"}` || got[3] != `posts/* "action":"delete"}` {
		t.Fatalf("order: %q", got)
	}
	mid := []string{got[1], got[2]}
	slices.Sort(mid)
	if mid[0] != `posts/* "action":"update"}` || mid[1] != `posts/r2 "action":"update"}` {
		t.Fatalf("update frames: %q", mid)
	}
	if c.Delivered() != 5 { // PB_CONNECT + 4
		t.Fatalf("Delivered = %d, want 5", c.Delivered())
	}
	if st := b.Stats(); st.MessagesOut != 5 || st.BytesOut != uint64(len(sv.s.String())) {
		t.Fatalf("stats out: %d msgs %d bytes, wrote %d bytes", st.MessagesOut, st.BytesOut, len(sv.s.String()))
	}
	if r := sv.stop(); r != ReasonClientGone {
		t.Fatalf("reason %q", r)
	}
	// Every write got a deadline of WriteTimeout.
	sv.s.mu.Lock()
	dl := sv.s.writeDeadline
	sv.s.mu.Unlock()
	if dl.IsZero() || time.Until(dl) > b.Policy().WriteTimeout {
		t.Fatalf("write deadline %v not set from WriteTimeout", dl)
	}
}
