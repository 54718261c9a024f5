package admin

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

type listBody struct {
	Total   int               `json:"total"`
	Offset  int               `json:"offset"`
	Limit   int               `json:"limit"`
	Clients []json.RawMessage `json:"clients"`
}

func TestListClientsPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	b := e.broker("other")
	for i := range 5 {
		if _, err := b.Connect(fmt.Sprintf("10.0.0.%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	all := b.Clients()
	ids := make([]string, len(all))
	for i, c := range all {
		ids[i] = c.ID()
	}
	tests := []struct {
		query         string
		offset, limit int
		want          []string
	}{
		{"", 0, 100, ids},
		{"limit=2", 0, 2, ids[:2]},
		{"limit=2&offset=2", 2, 2, ids[2:4]},
		{"limit=2&offset=4", 4, 2, ids[4:]},
		{"offset=5", 5, 100, nil},
		{"offset=1000000", 1000000, 100, nil},
		{"limit=1000&offset=1", 1, 1000, ids[1:]},
		{"limit=&offset=", 0, 100, ids},
		{"limit=1&offset=3", 3, 1, ids[3:4]},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			r := e.do(t, "GET", "/realtime/clients?broker=other&"+tt.query, "", "")
			if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s", r.status, r.body)
			}
			var got listBody
			if err := json.Unmarshal([]byte(r.body), &got); err != nil {
				t.Fatal(err)
			}
			if got.Total != 5 || got.Offset != tt.offset || got.Limit != tt.limit || got.Clients == nil {
				t.Fatalf("got total %d offset %d limit %d clients %v, want 5 %d %d (a list)",
					got.Total, got.Offset, got.Limit, got.Clients, tt.offset, tt.limit)
			}
			var gotIDs []string
			for _, raw := range got.Clients {
				var c struct{ ID string }
				if err := json.Unmarshal(raw, &c); err != nil {
					t.Fatal(err)
				}
				gotIDs = append(gotIDs, c.ID)
			}
			if fmt.Sprint(gotIDs) != fmt.Sprint(tt.want) {
				t.Errorf("ids = %v\nwant %v", gotIDs, tt.want)
			}
		})
	}
	r := e.do(t, "GET", "/realtime/clients", "", "")
	expect(t, r, 200, `{"total":0,"offset":0,"limit":100,"clients":[]}`)
}

func TestListClientsBadParams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	tests := []struct{ query, err string }{
		{"limit=abc", `limit must be an integer from 1 to 1000, not "abc"`},
		{"limit=0", `limit must be an integer from 1 to 1000, not "0"`},
		{"limit=-5", `limit must be an integer from 1 to 1000, not "-5"`},
		{"limit=1001", `limit must be an integer from 1 to 1000, not "1001"`},
		{"limit=1.5", `limit must be an integer from 1 to 1000, not "1.5"`},
		{"limit=99999999999999999999", `limit must be an integer from 1 to 1000, not "99999999999999999999"`},
		{"offset=-1", `offset must be an integer of at least 0, not "-1"`},
		{"offset=x", `offset must be an integer of at least 0, not "x"`},
		{"limit=10&offset=%20", `offset must be an integer of at least 0, not " "`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			expect(t, e.do(t, "GET", "/realtime/clients?"+tt.query, "", ""), 400, tt.err)
		})
	}
}

func TestGetClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	b := e.broker("default")

	// not served: its PB_CONNECT frame is still pending, nothing delivered
	idle, err := b.Connect("192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetSubscriptions(idle, []string{"posts/*", "chat", "posts/r1"}); err != nil {
		t.Fatal(err)
	}
	idle.SetAuth(&broker.Auth{ID: "u1", Collection: "users", Superuser: true})
	idle.Set("plan", json.RawMessage(`"pro"`))
	idle.Set("count", 3)                  // stored by Go code, not through the API
	idle.Set("callback", func() {})       // cannot be encoded: shown as null
	idle.Set("when", time.Unix(0, 0).UTC) // a method value: also null
	id := idle.ID()
	pending := len("id:" + id + "\nevent:PB_CONNECT\ndata:{\"clientId\":\"" + id + "\"}\n\n")
	at := idle.ConnectedAt().UTC().Format(time.RFC3339Nano)

	info := fmt.Sprintf(`"id":%q,"ip":"192.0.2.7","connected_at":%q,"subscriptions":["chat","posts/*","posts/r1"],`+
		`"auth":{"id":"u1","collection":"users"},"pending_bytes":%d,"delivered":0`, id, at, pending)
	expect(t, e.do(t, "GET", "/realtime/clients/"+id, "", ""), 200,
		`{`+info+`,"state":{"callback":null,"count":3,"plan":"pro","when":null}}`)
	expect(t, e.do(t, "GET", "/realtime/clients", "", ""), 200,
		`{"total":1,"offset":0,"limit":100,"clients":[{`+info+`}]}`)

	// a guest that is being served: auth null, no subscriptions, delivered counts its PB_CONNECT
	sub := subscribe(t, b)
	deadline := time.After(10 * time.Second)
	for sub.c.Delivered() == 0 { // the counter moves just after the write the stream saw
		select {
		case <-deadline:
			t.Fatal("PB_CONNECT never counted as delivered")
		case <-time.After(time.Millisecond):
		}
	}
	gid := sub.c.ID()
	expect(t, e.do(t, "GET", "/realtime/clients/"+gid, "", ""), 200,
		fmt.Sprintf(`{"id":%q,"ip":"127.0.0.1","connected_at":%q,"subscriptions":[],"auth":null,"pending_bytes":0,"delivered":1,"state":{}}`,
			gid, sub.c.ConnectedAt().UTC().Format(time.RFC3339Nano)))

	expect(t, e.do(t, "GET", "/realtime/clients/nope", "", ""), 404, `unknown client "nope"`)
	expect(t, e.do(t, "GET", "/realtime/clients/"+id+"?broker=other", "", ""), 404, `unknown client "`+id+`"`)
	expect(t, e.do(t, "GET", "/realtime/clients/a%20b", "", ""), 404, `unknown client "a b"`)
}

func TestDeleteClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	b := e.broker("default")
	sub := subscribe(t, b, "posts", "chat")
	keep := subscribe(t, b, "posts")
	id := sub.c.ID()

	expect(t, e.do(t, "DELETE", "/realtime/clients/"+id+"?broker=other", "", ""), 404, `unknown client "`+id+`"`)
	expect(t, e.do(t, "DELETE", "/realtime/clients/"+id, "", ""), 200, `{"disconnected":"`+id+`"}`)
	if reason := sub.waitEnded(t); reason != broker.ReasonDisconnected {
		t.Fatalf("Serve returned %q, want %q", reason, broker.ReasonDisconnected)
	}
	if _, ok := b.Client(id); ok {
		t.Fatal("the broker still knows the client")
	}
	if s := b.Stats(); s.Clients != 1 || s.Subscriptions != 1 {
		t.Fatalf("after disconnect: %d clients %d subscriptions, want 1 and 1", s.Clients, s.Subscriptions)
	}
	expect(t, e.do(t, "DELETE", "/realtime/clients/"+id, "", ""), 404, `unknown client "`+id+`"`)
	expect(t, e.do(t, "GET", "/realtime/clients/"+id, "", ""), 404, `unknown client "`+id+`"`)
	// the others are untouched
	expect(t, e.do(t, "POST", "/realtime/events", "", `{"action":"create","record":{"id":"r","collectionName":"posts"}}`),
		200, `{"published":1}`)
	keep.waitFor(t, keep.frame("posts", `{"record":{"collectionName":"posts","id":"r"},"action":"create"}`))
}
