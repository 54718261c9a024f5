package realtime

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// TestCaddyResumeHTTP2: an HTTP/2 stream (a goroutine stream, not hijacked),
// and an HTTP/1.1 stream over TLS (adopted by the broker's writers), dropped
// mid-way (an h2 stream is reset with its connection kept; an HTTP/1.1
// stream's connection is closed) comes back with
// Last-Event-ID and gets every event it missed, once and in order, then live
// ones; dropped again right after the resumed PB_CONNECT, it comes back with
// that frame's id (the bare client id, what EventSource remembers) and gets
// the whole replay again.
func TestCaddyResumeHTTP2(t *testing.T) {
	for _, m := range transportModes {
		t.Run(m.name, func(t *testing.T) {
			p, client, base := startMode(t, m)
			open := func(lastEventID string) *sseConn {
				t.Helper()
				hdr := http.Header{}
				if lastEventID != "" {
					hdr.Set("Last-Event-ID", lastEventID)
				}
				s, err := dialSSE(client, base+"/api/realtime", hdr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(s.close)
				if s.resp.ProtoMajor != m.protoMajor {
					t.Fatalf("stream over %s, want HTTP/%d", s.resp.Proto, m.protoMajor)
				}
				return s
			}
			next := func(s *sseConn) sseFrame {
				t.Helper()
				f, err := s.next(10 * time.Second)
				if err != nil {
					t.Fatalf("reading a frame: %v", err)
				}
				return f
			}
			publish := func(from, to int) {
				t.Helper()
				for n := from; n <= to; n++ {
					p.publish(fmt.Sprintf(`{"action":"create","collection":"posts","record":{"id":"r%d","n":%d}}`, n, n), 1)
				}
			}
			// expect reads events from..to and returns the last one's id.
			var lastPos uint64
			expect := func(s *sseConn, cid string, from, to int) string {
				t.Helper()
				var last string
				for n := from; n <= to; n++ {
					f := next(s)
					var data struct{ Record struct{ N int } }
					id, ok := broker.ParseEventID(f.id)
					if f.event != "posts/*" || json.Unmarshal([]byte(f.data), &data) != nil || data.Record.N != n ||
						!ok || id.ClientID != cid || id.Position <= lastPos {
						t.Fatalf("frame %+v, want event %d after position %d", f, n, lastPos)
					}
					lastPos, last = id.Position, f.id
				}
				return last
			}

			s := open("")
			connect := next(s)
			cid := connect.id
			if connect != (sseFrame{id: cid, event: "PB_CONNECT", data: `{"clientId":"` + cid + `"}`}) {
				t.Fatalf("PB_CONNECT %+v", connect)
			}
			if r := p.subscribe(client, base, cid, "posts/*"); r.status != http.StatusNoContent {
				t.Fatalf("subscribe: %d %s", r.status, r.body)
			}
			publish(1, 10)
			last := expect(s, cid, 1, 4)
			s.close() // h2: RST_STREAM, the connection stays; this stream is gone with 5..10 unread
			publish(11, 20)

			resumed := sseFrame{id: cid, event: "PB_CONNECT", data: `{"clientId":"` + cid + `","resumed":true}`}
			s = open(last)
			if f := next(s); f != resumed {
				t.Fatalf("resumed PB_CONNECT %+v", f)
			}
			s.close() // before reading the replay
			publish(21, 22)

			s = open(resumed.id)
			if f := next(s); f != resumed {
				t.Fatalf("PB_CONNECT resuming from the resumed PB_CONNECT's id: %+v", f)
			}
			expect(s, cid, 5, 22)
			publish(23, 23)
			expect(s, cid, 23, 23)
		})
	}
}
