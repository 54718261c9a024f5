package admin

import (
	"fmt"
	"strings"
	"testing"
)

func TestPostMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	b := e.broker("default")
	a := subscribe(t, b, "chat", "posts")
	c := subscribe(t, b, "chat")
	d := subscribe(t, b, "chat?options=x") // a different topic string: not "exactly chat"

	type delivery struct {
		sub  *subscriber
		data string
	}
	tests := []struct {
		name, body string
		delivered  int
		got        []delivery // frames on "chat" this message must add
	}{
		{"everyone on the topic, data compacted", `{"name":"chat","data":{ "text" : "hi",  "n":[1, 2] }}`, 2,
			[]delivery{{a, `{"text":"hi","n":[1,2]}`}, {c, `{"text":"hi","n":[1,2]}`}}},
		{"only listed clients", fmt.Sprintf(`{"name":"chat","data":"x","clients":[%q,"nobody"]}`, c.c.ID()), 1,
			[]delivery{{c, `"x"`}}},
		{"null clients means everyone", `{"name":"chat","data":1,"clients":null}`, 2,
			[]delivery{{a, `1`}, {c, `1`}}},
		{"empty clients reaches nobody", `{"name":"chat","data":2,"clients":[]}`, 0, nil},
		{"no data is null", `{"name":"chat"}`, 2, []delivery{{a, `null`}, {c, `null`}}},
		{"nobody subscribed", `{"name":"news","data":true}`, 0, nil},
		{"NUL inside data is escaped JSON", `{"name":"chat","data":"a\u0000b"}`, 2,
			[]delivery{{a, `"a\u0000b"`}, {c, `"a\u0000b"`}}},
	}
	want := map[*subscriber]string{a: a.connectFrame(), c: c.connectFrame(), d: d.connectFrame()}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, e.do(t, "POST", "/realtime/messages", "application/json", tt.body), 200,
				fmt.Sprintf(`{"delivered":%d}`, tt.delivered))
			for _, dl := range tt.got {
				want[dl.sub] += dl.sub.frame("chat", dl.data)
			}
		})
	}
	// a final message to each topic marks the end of every stream: anything
	// delivered that should not have been would sit before it
	expect(t, e.do(t, "POST", "/realtime/messages", "", `{"name":"chat","data":"end"}`), 200, `{"delivered":2}`)
	expect(t, e.do(t, "POST", "/realtime/messages", "", `{"name":"chat?options=x","data":"end"}`), 200, `{"delivered":1}`)
	end := map[*subscriber]string{
		a: a.frame("chat", `"end"`),
		c: c.frame("chat", `"end"`),
		d: d.frame("chat?options=x", `"end"`),
	}
	for sub, w := range want {
		sub.waitFor(t, end[sub])
		w += end[sub]
		if got := sub.s.String(); got != w {
			t.Errorf("client %s got\n%q\nwant\n%q", sub.c.ID(), got, w)
		}
	}
}

func TestPostMessageErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 128)
	sub := subscribe(t, e.broker("default"), "chat")
	tests := []struct {
		name, contentType, body string
		status                  int
		err                     string
	}{
		{"empty body", "", "", 400, "empty body: expected a JSON object"},
		{"malformed", "", `{"name":`, 400, "malformed JSON: unexpected end of JSON input at byte 8"},
		{"trailing data", "", `{"name":"chat"} x`, 400, "malformed JSON: invalid character 'x' after top-level value at byte 17"},
		{"array", "", `[{"name":"chat"}]`, 400, "expected an object, not array"},
		{"missing name", "", `{"data":1}`, 400, "name is required"},
		{"name wrong type", "", `{"name":5}`, 400, "name must be a string, not number"},
		{"unknown field", "", `{"name":"chat","topic":"x"}`, 400, `unknown field "topic"`},
		{"clients not an array", "", `{"name":"chat","clients":"abc"}`, 400, "clients must be an array of client id strings"},
		{"clients of numbers", "", `{"name":"chat","clients":[1]}`, 400, "clients must be an array of client id strings"},
		{"NUL in name", "", `{"name":"chat\u0000"}`, 400, "name: topic contains a control character"},
		{"newline in name", "", `{"name":"ch\nat"}`, 400, "name: topic contains a control character"},
		{"name too long", "", `{"name":"` + strings.Repeat("a", 2501) + `"}`, 413,
			"request body is too large: the limit is 128 bytes"},
		{"wrong content type", "text/json", `{"name":"chat"}`, 415, `unsupported Content-Type "text/json": send application/json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, e.do(t, "POST", "/realtime/messages", tt.contentType, tt.body), tt.status, tt.err)
		})
	}
	expect(t, e.do(t, "POST", "/realtime/messages", "", `{"name":"chat","data":0}`), 200, `{"delivered":1}`)
	end := sub.frame("chat", "0")
	sub.waitFor(t, end)
	if got := sub.s.String(); got != sub.connectFrame()+end {
		t.Fatalf("refused messages reached the subscriber: %q", got)
	}
}

func TestPostMessageNameTooLong(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	expect(t, e.do(t, "POST", "/realtime/messages", "", `{"name":"`+strings.Repeat("a", 2501)+`"}`),
		400, "name is longer than 2500 bytes")
}
