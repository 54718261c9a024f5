package admin

import (
	"net/http"
	"strings"
	"testing"
)

func TestPostEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	tests := []struct {
		name, contentType, body, want string
	}{
		{"one event", "", `{"action":"create","record":{"id":"r1","collectionName":"posts"}}`, `{"published":1}`},
		{"json content type", "application/json", `{"action":"update","record":{"id":"r1","collectionName":"posts"}}`, `{"published":1}`},
		{"content type with params", "Application/JSON; charset=utf-8", `{"action":"delete","record":{"id":"r1","collectionName":"posts"}}`, `{"published":1}`},
		{"array", "", `[{"action":"create","record":{"id":"a","collectionName":"posts"}},
			{"action":"create","collection":"posts","record":{"id":"b"}},
			{"action":"create","record":{"id":"c","collectionName":"posts","collectionId":"pbc_1"}}]`, `{"published":3}`},
		{"whitespace around", "", "\n\t " + `{"action":"create","record":{"id":"r2","collectionName":"posts"}}` + " \n", `{"published":1}`},
		{"duplicate ids in one batch count once", "", `[{"id":"k1","action":"create","record":{"id":"a","collectionName":"posts"}},
			{"id":"k1","action":"create","record":{"id":"a","collectionName":"posts"}}]`, `{"published":1}`},
		{"an id seen before is not published again", "", `{"id":"k1","action":"create","record":{"id":"a","collectionName":"posts"}}`, `{"published":0}`},
		{"NUL in a record field is fine", "", `{"action":"create","record":{"id":"r3","collectionName":"posts","title":"a\u0000b"}}`, `{"published":1}`},
	}
	for _, tt := range tests { // sequential: later cases depend on earlier idempotency ids
		r := e.do(t, "POST", "/realtime/events", tt.contentType, tt.body)
		t.Run(tt.name, func(t *testing.T) { expect(t, r, 200, tt.want) })
	}
	if got := e.broker("default").Stats().EventsIn; got != 9 {
		t.Errorf("events_in = %d, want 9", got)
	}
}

func TestPostEventsErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 256)
	ok := `{"action":"create","record":{"id":"ok","collectionName":"posts"}}`
	tests := []struct {
		name, contentType, body string
		status                  int
		err                     string
	}{
		{"empty body", "", "", 400, "empty body: expected an event object or an array of events"},
		{"blank body", "", " \n", 400, "empty body: expected an event object or an array of events"},
		{"null", "", "null", 400, "malformed JSON: expected an event object or an array of events"},
		{"string", "", `"create"`, 400, "malformed JSON: expected an event object or an array of events"},
		{"truncated object", "", `{"action":"create","record":{"id":`, 400, "malformed event: unexpected EOF"},
		{"truncated array", "", `[` + ok, 400, "malformed JSON: unexpected end of JSON input at byte 66"},
		{"trailing brace", "", ok + `}`, 400, "malformed event: trailing data after the event object"},
		{"two objects", "", ok + ok, 400, "malformed event: trailing data after the event object"},
		{"raw NUL byte in a string", "", `{"action":"create","record":{"id":"a` + "\x00" + `b","collectionName":"posts"}}`, 400,
			"malformed event: invalid character '\\x00' in string literal at byte 37"},
		{"empty array", "", `[]`, 400, "empty array: expected at least one event"},
		{"action wrong type", "", `{"action":1,"record":{"id":"a","collectionName":"posts"}}`, 400, "malformed event: action must be a string, not number"},
		{"missing action", "", `{"record":{"id":"a","collectionName":"posts"}}`, 400, "action is required (create, update or delete)"},
		{"unknown action", "", `{"action":"upsert","record":{"id":"a","collectionName":"posts"}}`, 400, `unknown action "upsert": expected create, update or delete`},
		{"unknown field", "", `{"action":"create","recrod":{}}`, 400, `malformed event: unknown field "recrod"`},
		{"missing record", "", `{"action":"create"}`, 400, "record is required"},
		{"record not an object", "", `{"action":"create","record":[1]}`, 400, "record must be a JSON object: expected an object, not array"},
		{"missing record id", "", `{"action":"create","record":{"collectionName":"posts"}}`, 400, "record.id is required"},
		{"record id wrong type", "", `{"action":"create","record":{"id":7,"collectionName":"posts"}}`, 400, "record.id must be a string"},
		{"missing collection", "", `{"action":"create","record":{"id":"a"}}`, 400, "record.collectionName (or a top-level collection) is required"},
		{"NUL escape in record id", "", `{"action":"create","record":{"id":"a\u0000b","collectionName":"posts"}}`, 400,
			`record.id "a\x00b" must not contain spaces or control characters`},
		{"newline in collection", "", `{"action":"create","record":{"id":"a","collectionName":"po\nsts"}}`, 400,
			`collection "po\nsts" must not contain spaces or control characters`},
		{"bad event in a batch names its index", "", `[` + ok + `,` + ok + `,{"action":"create","record":{"collectionName":"posts"}}]`, 400,
			"event 2: record.id is required"},
		{"text/plain", "text/plain", ok, 415, `unsupported Content-Type "text/plain": send application/json`},
		{"form", "application/x-www-form-urlencoded", ok, 415, `unsupported Content-Type "application/x-www-form-urlencoded": send application/json`},
		{"malformed content type", "application/json; =", ok, 415, `unsupported Content-Type "application/json; =": send application/json`},
		{"over the limit", "", `[` + strings.Repeat(ok+",", 4) + ok + `]`, 413,
			"request body is too large: the limit is 256 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			expect(t, e.do(t, "POST", "/realtime/events", tt.contentType, tt.body), tt.status, tt.err)
		})
	}
}

// A body without Content-Length (chunked) is cut by http.MaxBytesReader.
func TestPostEventsTooLargeChunked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 256)
	sub := subscribe(t, e.broker("default"), "posts")
	ok := `{"action":"create","record":{"id":"ok","collectionName":"posts"}}`
	body := `[` + strings.Repeat(ok+",", 10) + ok + `]`
	req, err := http.NewRequest("POST", e.srv.URL+"/realtime/events", struct{ *strings.Reader }{strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	if req.ContentLength != 0 || req.TransferEncoding != nil {
		t.Fatalf("request should have an unknown length, has %d %q", req.ContentLength, req.TransferEncoding)
	}
	expect(t, send(t, req), 413, "request body is too large: the limit is 256 bytes")
	// just under the limit still works, and nothing of the refused batch got through
	expect(t, e.do(t, "POST", "/realtime/events", "", ok), 200, `{"published":1}`)
	want := sub.frame("posts", `{"record":{"collectionName":"posts","id":"ok"},"action":"create"}`)
	sub.waitFor(t, want)
	if got := sub.s.String(); got != sub.connectFrame()+want {
		t.Fatalf("stream = %q\nwant %q", got, sub.connectFrame()+want)
	}
}

func TestPostEventsDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	b := e.broker("default")
	sub := subscribe(t, b, "posts")
	one := subscribe(t, b, "posts/r1")
	other := subscribe(t, e.broker("other"), "posts")

	// a batch with one bad event publishes nothing
	expect(t, e.do(t, "POST", "/realtime/events", "application/json", `[
		{"action":"create","record":{"id":"r0","collectionName":"posts"}},
		{"action":"create","record":{"id":"r1","collectionName":"posts"}},
		{"action":"update","record":{"id":"r1","collectionName":"posts","note":"x"}},
		{"action":"explode","record":{"id":"r1","collectionName":"posts"}}]`),
		400, `event 3: unknown action "explode": expected create, update or delete`)
	expect(t, e.do(t, "POST", "/realtime/events", "", `[
		{"action":"create","record":{"id":"r1","collectionName":"posts"}},
		{"action":"create","record":{"id":"a\u0000","collectionName":"posts"}}]`),
		400, `event 1: record.id "a\x00" must not contain spaces or control characters`)

	// then a good batch arrives byte-exactly, in order, and is the only thing that arrives
	expect(t, e.do(t, "POST", "/realtime/events", "", `[
		{"action":"create","record":{"title":"a\u0000b","id":"r1","collectionName":"posts","n":1.50}},
		{"action":"delete","collection":"posts","record":{"id":"r2"}}]`),
		200, `{"published":2}`)
	r1 := `{"record":{"collectionName":"posts","id":"r1","n":1.50,"title":"a\u0000b"},"action":"create"}`
	r2 := `{"record":{"collectionName":"posts","id":"r2"},"action":"delete"}`
	want := sub.connectFrame() + sub.frame("posts", r1) + sub.frame("posts", r2)
	sub.waitFor(t, sub.frame("posts", r2))
	if got := sub.s.String(); got != want {
		t.Fatalf("collection subscriber got\n%q\nwant\n%q", got, want)
	}

	// the record subscriber gets r1 only; prove r2 passed it by publishing a marker after it
	expect(t, e.do(t, "POST", "/realtime/events", "", `{"action":"update","record":{"id":"r1","collectionName":"posts"}}`),
		200, `{"published":1}`)
	marker := one.frame("posts/r1", `{"record":{"collectionName":"posts","id":"r1"},"action":"update"}`)
	one.waitFor(t, marker)
	if got, want := one.s.String(), one.connectFrame()+one.frame("posts/r1", r1)+marker; got != want {
		t.Fatalf("record subscriber got\n%q\nwant\n%q", got, want)
	}

	// another broker's subscriber got none of it
	expect(t, e.do(t, "POST", "/realtime/events?broker=other", "", `{"action":"create","record":{"id":"z","collectionName":"posts"}}`),
		200, `{"published":1}`)
	zf := other.frame("posts", `{"record":{"collectionName":"posts","id":"z"},"action":"create"}`)
	other.waitFor(t, zf)
	if got := other.s.String(); got != other.connectFrame()+zf {
		t.Fatalf("other broker's subscriber got %q", got)
	}
}
