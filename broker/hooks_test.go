package broker

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestHookChainOrderAndStop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		stopAt    int // handler index that returns without Next; -1 = none
		errAt     int // handler index that returns an error after Next; -1 = none
		wantCalls []int
		wantFinal bool
		wantErr   bool
	}{
		{"all call next", -1, -1, []int{0, 1, 2}, true, false},
		{"second stops", 1, -1, []int{0, 1}, false, false},
		{"first stops", 0, -1, []int{0}, false, false},
		{"last stops", 2, -1, []int{0, 1, 2}, false, false},
		{"error after next", -1, 1, []int{0, 1, 2}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h Hook[*SubscribeEvent]
			var calls []int
			for i := range 3 {
				h.Bind(func(e *SubscribeEvent) error {
					calls = append(calls, i)
					if i == tt.stopAt {
						return nil
					}
					err := e.Next()
					if i == tt.errAt {
						return errors.New("handler error")
					}
					return err
				})
			}
			final := false
			err := h.Trigger(&SubscribeEvent{}, func(*SubscribeEvent) error { final = true; return nil })
			if !slices.Equal(calls, tt.wantCalls) || final != tt.wantFinal || (err != nil) != tt.wantErr {
				t.Fatalf("calls %v final %v err %v", calls, final, err)
			}
			if h.Len() != 3 {
				t.Fatalf("Len %d", h.Len())
			}
		})
	}
	var empty Hook[*ConnectEvent]
	ran := false
	if err := empty.Trigger(&ConnectEvent{}, func(*ConnectEvent) error { ran = true; return nil }); err != nil || !ran {
		t.Fatal("empty chain must run final")
	}
	if err := empty.Trigger(&ConnectEvent{}, nil); err != nil {
		t.Fatal("nil final")
	}
	e := &ConnectEvent{}
	if e.Next() != nil {
		t.Fatal("Next outside a chain")
	}
}

func TestOnConnect(t *testing.T) {
	t.Parallel()
	refuse := errors.New("refused")
	tests := []struct {
		name    string
		handler func(e *ConnectEvent) error
		wantErr bool
	}{
		{"error before next refuses", func(e *ConnectEvent) error { return refuse }, true},
		{"error after next refuses", func(e *ConnectEvent) error { _ = e.Next(); return refuse }, true},
		{"no next refuses", func(e *ConnectEvent) error { return nil }, true},
		{"next accepts", func(e *ConnectEvent) error {
			e.Client.Set("seen", true)
			if _, ok := e.Client.broker.Client(e.Client.ID()); ok {
				return errors.New("registered before Next")
			}
			return e.Next()
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := DefaultPolicy()
			p.MaxClients = 1
			b := New("t", p)
			var hooked *Client
			active := true
			b.OnConnect.Bind(func(e *ConnectEvent) error {
				if !active {
					return e.Next()
				}
				hooked = e.Client
				return tt.handler(e)
			})
			disconnects := 0
			b.OnDisconnect.Bind(func(e *DisconnectEvent) error { disconnects++; return e.Next() })

			c, err := b.Connect("ip")
			if tt.wantErr {
				if err == nil || c != nil {
					t.Fatalf("Connect = %v, %v; want refusal", c, err)
				}
				if st := b.Stats(); st.Clients != 0 || st.Connects != 0 {
					t.Fatalf("refused client counted: %+v", st)
				}
				if len(b.Clients()) != 0 {
					t.Fatal("refused client registered")
				}
				if _, ok := b.Client(hooked.ID()); ok {
					t.Fatal("refused client found by id")
				}
				if disconnects != 0 {
					t.Fatal("OnDisconnect for a refused client")
				}
				// The refused attempt must not use up max_clients.
				active = false
				c2 := mustConnect(t, b)
				b.Disconnect(c2, ReasonDisconnected)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Disconnect(c, ReasonDisconnected)
			if hooked != c {
				t.Fatal("hook saw another client")
			}
			if v, _ := c.Get("seen"); v != true {
				t.Fatal("state set in hook lost")
			}
			if pending(c) != connectFrameFor(c.ID()) {
				t.Fatalf("queue %q", pending(c))
			}
		})
	}
}

func TestOnSubscribe(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	b.OnSubscribe.Bind(func(e *SubscribeEvent) error {
		if slices.Contains(e.Topics, "forbidden") {
			return errors.New("no")
		}
		if slices.Contains(e.Topics, "swallow") {
			return nil // stop the chain: the set stays as it was
		}
		// rewrite: drop "drop", add "extra"
		e.Topics = slices.DeleteFunc(e.Topics, func(s string) bool { return s == "drop" })
		e.Topics = append(e.Topics, "extra", "")
		return e.Next()
	})
	var seen [][]string
	b.OnSubscribe.Bind(func(e *SubscribeEvent) error {
		seen = append(seen, slices.Clone(e.Topics))
		return e.Next()
	})
	c := mustConnect(t, b)
	defer b.Disconnect(c, ReasonDisconnected)

	mustSubscribe(t, b, c, "a", "", "drop", "a")
	if got := c.Subscriptions(); !slices.Equal(got, []string{"a", "extra"}) {
		t.Fatalf("subscriptions %q", got)
	}
	// The hook sees the cleaned list: no empty strings, no duplicates.
	if !slices.Equal(seen[0], []string{"a", "extra", ""}) {
		t.Fatalf("second handler saw %q", seen[0])
	}
	if err := b.SetSubscriptions(c, []string{"b", "forbidden"}); err == nil {
		t.Fatal("hook error ignored")
	}
	mustSubscribe(t, b, c, "swallow", "c")
	if got := c.Subscriptions(); !slices.Equal(got, []string{"a", "extra"}) {
		t.Fatalf("after refused/stopped requests: %q", got)
	}
	if b.Stats().Subscriptions != 2 {
		t.Fatalf("stats %d", b.Stats().Subscriptions)
	}
	// Invalid topics are refused before hooks run.
	n := len(seen)
	if err := b.SetSubscriptions(c, []string{"bad\n"}); err == nil || len(seen) != n {
		t.Fatalf("err %v, hooks ran %d times", err, len(seen)-n)
	}
}

func TestOnMessageSend(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	var rewrite, skip, errSkip, rename, plain *Client
	b.OnMessageSend.Bind(func(e *MessageSendEvent) error {
		switch e.Client {
		case rewrite:
			e.Data = []byte(`{"rewritten":true}`)
		case skip:
			return nil
		case errSkip:
			return errors.New("skip")
		case rename:
			e.Name = "renamed"
		}
		return e.Next()
	})
	rewrite, skip, errSkip, rename, plain = mustConnect(t, b), mustConnect(t, b), mustConnect(t, b), mustConnect(t, b), mustConnect(t, b)
	all := []*Client{rewrite, skip, errSkip, rename, plain}
	for _, c := range all {
		defer b.Disconnect(c, ReasonDisconnected)
		mustSubscribe(t, b, c, "posts/*", "custom")
		drain(c)
	}
	ev := postEvent(t, "create", "r1", "")
	orig := `{"record":{"collectionId":"pbc_posts","collectionName":"posts","id":"r1"},"action":"create"}`
	b.Publish(ev)
	want := map[*Client]string{
		rewrite: "event:posts/*\ndata:{\"rewritten\":true}\n\n",
		skip:    "",
		errSkip: "",
		rename:  "event:renamed\ndata:" + orig + "\n\n",
		plain:   "event:posts/*\ndata:" + orig + "\n\n",
	}
	for _, c := range all {
		got := drain(c)
		w := want[c]
		if w != "" {
			w = "id:" + c.ID() + "\n" + w
		}
		if got != w {
			t.Errorf("got %q, want %q", got, w)
		}
	}
	// Custom messages go through the hook too, and skipped ones are not counted as delivered.
	if n := b.SendMessage(&Message{Name: "custom", Data: []byte(`"m"`)}); n != 3 {
		t.Fatalf("SendMessage delivered = %d, want 3 (two clients skipped by the hook)", n)
	}
	if got := drain(rewrite); got != "id:"+rewrite.ID()+"\nevent:custom\ndata:{\"rewritten\":true}\n\n" {
		t.Fatalf("rewritten custom message %q", got)
	}
	if got := drain(plain); got != "id:"+plain.ID()+"\nevent:custom\ndata:\"m\"\n\n" {
		t.Fatalf("custom message %q", got)
	}
	if got := drain(skip) + drain(errSkip); got != "" {
		t.Fatalf("skipped clients got %q", got)
	}
}

// A hook that appends to e.Data (a normal Go idiom) must not corrupt the frame
// shared with the other subscribers of the same topic.
func TestOnMessageSendAppendDoesNotCorruptOthers(t *testing.T) {
	t.Parallel()
	// Which subscriber the map hands out first is random: repeat so that the
	// appending client is not always the last one.
	for i := range 40 {
		name := []string{"event", "message"}[i%2]
		b := New("t", nil)
		var first *Client
		b.OnMessageSend.Bind(func(e *MessageSendEvent) error {
			if e.Client == first {
				e.Data = append(e.Data, 'X') // fits in the spare capacity before the fix
			}
			return e.Next()
		})
		var clients []*Client
		for range 4 {
			c := mustConnect(t, b)
			mustSubscribe(t, b, c, "posts/*")
			drain(c)
			clients = append(clients, c)
		}
		first = clients[0]
		data := `{"record":{"collectionId":"pbc_posts","collectionName":"posts","id":"r1"},"action":"create"}`
		if name == "event" {
			b.Publish(postEvent(t, "create", "r1", ""))
		} else {
			b.SendMessage(&Message{Name: "posts/*", Data: []byte(data)})
		}
		for _, c := range clients {
			got := drain(c)
			want := "id:" + c.ID() + "\nevent:posts/*\ndata:" + data
			if c == first {
				want += "X"
			}
			want += "\n\n"
			if got != want {
				t.Errorf("%s: client %d got %q, want %q", name, slices.Index(clients, c), got, want)
			}
			b.Disconnect(c, ReasonDisconnected)
		}
	}
}

// Without hooks the shared frame is used as is; with a hook that changes nothing, too.
func TestOnMessageSendPassThroughSharesFrame(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	calls := 0
	b.OnMessageSend.Bind(func(e *MessageSendEvent) error {
		calls++
		if !bytes.HasPrefix(e.Data, []byte(`{"record":`)) || e.Name != "posts/*" {
			t.Errorf("hook saw %q %q", e.Name, e.Data)
		}
		return e.Next()
	})
	var clients []*Client
	for range 3 {
		c := mustConnect(t, b)
		defer b.Disconnect(c, ReasonDisconnected)
		mustSubscribe(t, b, c, "posts/*")
		drain(c)
		clients = append(clients, c)
	}
	b.Publish(postEvent(t, "delete", "r9", ""))
	if calls != 3 {
		t.Fatalf("hook ran %d times, want once per client", calls)
	}
	for _, c := range clients {
		if got := drain(c); !strings.HasSuffix(got, `"action":"delete"}`+"\n\n") {
			t.Fatalf("got %q", got)
		}
	}
}

func TestOnDisconnectReason(t *testing.T) {
	t.Parallel()
	b := New("t", nil)
	reasons := map[string]string{}
	b.OnDisconnect.Bind(func(e *DisconnectEvent) error {
		reasons[e.Client.ID()] = e.Reason
		if _, ok := b.Client(e.Client.ID()); ok {
			t.Error("client still registered during OnDisconnect")
		}
		return e.Next()
	})
	admin := mustConnect(t, b)
	idle := mustConnect(t, b)
	b.Disconnect(admin, ReasonDisconnected)
	idle.Close(ReasonIdleTimeout)
	b.Disconnect(idle, ReasonClientGone)
	if reasons[admin.ID()] != ReasonDisconnected || reasons[idle.ID()] != ReasonIdleTimeout {
		t.Fatalf("reasons %v", reasons)
	}

	// Through Serve: a failing stream reports write_error to the hook.
	c := mustConnect(t, b)
	sv := serve(t, b, c, &recStream{writeErr: errors.New("x")})
	if r := sv.waitReason(t); r != ReasonWriteError {
		t.Fatalf("Serve reason %q", r)
	}
	if reasons[c.ID()] != ReasonWriteError {
		t.Fatalf("OnDisconnect reason %q", reasons[c.ID()])
	}
}
