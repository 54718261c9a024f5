package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestClientState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	c, err := e.broker("default").Connect("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	base := "/realtime/clients/" + c.ID() + "/state"
	steps := []struct {
		method, path, body, want string
	}{
		{"GET", "", "", `{}`},
		{"PUT", "", `{"a": 1, "b" : { "x" : [1, 2] }}`, `{"a":1,"b":{"x":[1,2]}}`},
		// merge: keys not in the body stay; null is a value
		{"PUT", "", `{"a":"one","c":null}`, `{"a":"one","b":{"x":[1,2]},"c":null}`},
		{"PUT", "", `{}`, `{"a":"one","b":{"x":[1,2]},"c":null}`},
		{"GET", "/b", "", `{"x":[1,2]}`},
		{"GET", "/c", "", `null`},
		{"PUT", "/d", ` [ true , "s" ] `, `{"a":"one","b":{"x":[1,2]},"c":null,"d":[true,"s"]}`},
		{"PUT", "/a", `2`, `{"a":2,"b":{"x":[1,2]},"c":null,"d":[true,"s"]}`},
		{"DELETE", "/c", "", `{"a":2,"b":{"x":[1,2]},"d":[true,"s"]}`},
		// keys are path segments: "/" inside one is sent as %2F (or left plain)
		{"PUT", "/x%2Fy%20z", `"slash"`, `{"a":2,"b":{"x":[1,2]},"d":[true,"s"],"x/y z":"slash"}`},
		{"GET", "/x/y%20z", "", `"slash"`},
		{"DELETE", "/x%2Fy%20z", "", `{"a":2,"b":{"x":[1,2]},"d":[true,"s"]}`},
		{"PUT", "/" + strings.Repeat("k", 255), `0`, `{"a":2,"b":{"x":[1,2]},"d":[true,"s"],"` + strings.Repeat("k", 255) + `":0}`},
		{"DELETE", "", "", `{}`},
		{"GET", "", "", `{}`},
	}
	for _, s := range steps {
		r := e.do(t, s.method, base+s.path, "", s.body)
		t.Run(s.method+" state"+s.path, func(t *testing.T) { expect(t, r, 200, s.want) })
	}

	// values written through the API are compacted json.RawMessage, visible to Go hooks
	expect(t, e.do(t, "PUT", base, "", `{"obj": { "k" : [ 1 ] }}`), 200, `{"obj":{"k":[1]}}`)
	if v, _ := c.Get("obj"); string(asRaw(v)) != `{"k":[1]}` {
		t.Fatalf("Get(obj) = %T %s, want json.RawMessage {\"k\":[1]}", v, v)
	}
	expect(t, e.do(t, "DELETE", base+"/obj", "", ""), 200, `{}`)
	expect(t, e.do(t, "PUT", base+"/raw", "application/json", "{ \"k\" :\n [1] }"), 200, `{"raw":{"k":[1]}}`)
	v, ok := c.Get("raw")
	if raw, isRaw := v.(json.RawMessage); !ok || !isRaw || string(raw) != `{"k":[1]}` {
		t.Fatalf("Get(raw) = %T %s, want json.RawMessage {\"k\":[1]}", v, v)
	}
	// and in the client view
	r := e.do(t, "GET", "/realtime/clients/"+c.ID(), "", "")
	if !strings.HasSuffix(r.body, `,"state":{"raw":{"k":[1]}}}`+"\n") {
		t.Fatalf("client view: %s", r.body)
	}
}

func TestClientStateErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 64)
	c, err := e.broker("default").Connect("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.Set("keep", json.RawMessage(`1`))
	id := c.ID()
	base := "/realtime/clients/" + id + "/state"
	tests := []struct {
		name, method, path, contentType, body string
		status                                int
		err                                   string
	}{
		{"unknown client", "GET", "/realtime/clients/nope/state", "", "", 404, `unknown client "nope"`},
		{"unknown client put", "PUT", "/realtime/clients/nope/state/k", "", "1", 404, `unknown client "nope"`},
		{"unknown client delete", "DELETE", "/realtime/clients/nope/state", "", "", 404, `unknown client "nope"`},
		{"unknown key", "GET", base + "/zzz", "", "", 404, `unknown state key "zzz" for client "` + id + `"`},
		{"delete unknown key", "DELETE", base + "/zzz", "", "", 404, `unknown state key "zzz" for client "` + id + `"`},
		{"array for the object", "PUT", base, "", `[1]`, 400, "state must be a JSON object of keys and values"},
		{"null for the object", "PUT", base, "", `null`, 400, "state must be a JSON object of keys and values"},
		{"string for the object", "PUT", base, "", `"x"`, 400, "state must be a JSON object of keys and values"},
		{"empty key in the object", "PUT", base, "", `{"":1,"a":2}`, 400, "state keys must not be empty"},
		{"malformed object", "PUT", base, "", `{"a":}`, 400, "malformed JSON: invalid character '}' looking for beginning of value at byte 6"},
		{"trailing data", "PUT", base, "", `{"a":1}{}`, 400, "malformed JSON: invalid character '{' after top-level value at byte 8"},
		{"empty body", "PUT", base + "/k", "", "", 400, "empty body: expected a JSON value"},
		{"empty body for the object", "PUT", base, "", "", 400, "empty body: expected a JSON object of state keys"},
		{"bare word", "PUT", base + "/k", "", `hello`, 400, "malformed JSON: invalid character 'h' looking for beginning of value at byte 1"},
		{"two values", "PUT", base + "/k", "", `1 2`, 400, "malformed JSON: invalid character '2' after top-level value at byte 3"},
		{"key too long", "PUT", base + "/" + strings.Repeat("k", 256), "", `1`, 400, "state key is longer than 255 bytes"},
		{"key not UTF-8", "PUT", base + "/%ff", "", `1`, 400, `state key "\xff" is not valid UTF-8`},
		{"too large", "PUT", base + "/k", "", `"` + strings.Repeat("x", 100) + `"`, 413,
			"request body is too large: the limit is 64 bytes"},
		{"wrong content type", "PUT", base + "/k", "text/plain", `1`, 415, `unsupported Content-Type "text/plain": send application/json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, e.do(t, tt.method, tt.path, tt.contentType, tt.body), tt.status, tt.err)
		})
	}
	// none of the refused writes changed anything
	expect(t, e.do(t, "GET", base, "", ""), 200, `{"keep":1}`)
}

func asRaw(v any) json.RawMessage {
	raw, _ := v.(json.RawMessage)
	return raw
}
