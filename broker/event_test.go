package broker

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

func TestDecodeEventsValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want []string // "action collection collectionId recordId id" per event
		json []string // RecordJSON per event
	}{
		{
			"single object",
			`{"action":"create","record":{"id":"r1","collectionName":"posts","title":"hi"}}`,
			[]string{"create posts  r1 "},
			[]string{`{"collectionName":"posts","id":"r1","title":"hi"}`},
		},
		{
			"surrounding whitespace",
			" \n\t{\"action\":\"update\",\"record\":{\"id\":\"r1\",\"collectionName\":\"posts\"}}\r\n ",
			[]string{"update posts  r1 "},
			[]string{`{"collectionName":"posts","id":"r1"}`},
		},
		{
			"array",
			`[{"action":"create","record":{"id":"a","collectionName":"posts"}},
			  {"action":"delete","id":"key-2","record":{"id":"b","collectionName":"tags","collectionId":"pbc_tags"}}]`,
			[]string{"create posts  a ", "delete tags pbc_tags b key-2"},
			[]string{`{"collectionName":"posts","id":"a"}`, `{"collectionId":"pbc_tags","collectionName":"tags","id":"b"}`},
		},
		{
			"top-level collection stands in",
			`{"action":"create","collection":"posts","record":{"id":"r1"}}`,
			[]string{"create posts  r1 "},
			[]string{`{"collectionName":"posts","id":"r1"}`},
		},
		{
			"top-level collection equal to record's",
			`{"action":"create","collection":"posts","record":{"id":"r1","collectionName":"posts"}}`,
			[]string{"create posts  r1 "},
			[]string{`{"collectionName":"posts","id":"r1"}`},
		},
		{
			"empty collectionId ignored",
			`{"action":"create","record":{"id":"r1","collectionName":"posts","collectionId":""}}`,
			[]string{"create posts  r1 "},
			[]string{`{"collectionId":"","collectionName":"posts","id":"r1"}`},
		},
		{
			"null collectionId ignored",
			`{"action":"create","record":{"id":"r1","collectionName":"posts","collectionId":null}}`,
			[]string{"create posts  r1 "},
			[]string{`{"collectionId":null,"collectionName":"posts","id":"r1"}`},
		},
		{
			"keys sorted, nested kept",
			`{"record":{"z":{"b":1,"a":[3,2,1]},"id":"r1","collectionName":"posts","A":null,"m":"ü<"},"action":"update"}`,
			[]string{"update posts  r1 "},
			[]string{`{"A":null,"collectionName":"posts","id":"r1","m":"ü<","z":{"a":[3,2,1],"b":1}}`},
		},
		{
			"numbers keep precision",
			`{"action":"create","record":{"id":"r1","collectionName":"posts","big":12345678901234567890,"f":0.10000000000000000000001,"e":1E400,"neg":-0}}`,
			[]string{"create posts  r1 "},
			[]string{`{"big":12345678901234567890,"collectionName":"posts","e":1E400,"f":0.10000000000000000000001,"id":"r1","neg":-0}`},
		},
		{
			"unicode ids",
			`{"action":"create","record":{"id":"ключ","collectionName":"записи"}}`,
			[]string{"create записи  ключ "},
			[]string{`{"collectionName":"записи","id":"ключ"}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			evs, err := DecodeEvents([]byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeEvents: %v", err)
			}
			if len(evs) != len(tt.want) {
				t.Fatalf("%d events, want %d", len(evs), len(tt.want))
			}
			for i, ev := range evs {
				got := strings.Join([]string{ev.Action, ev.Collection, ev.CollectionID, ev.RecordID, ev.ID}, " ")
				if got != tt.want[i] {
					t.Errorf("event %d: %q, want %q", i, got, tt.want[i])
				}
				if string(ev.RecordJSON()) != tt.json[i] {
					t.Errorf("event %d record JSON:\n got %s\nwant %s", i, ev.RecordJSON(), tt.json[i])
				}
				if ev.Record["collectionName"] != ev.Collection {
					t.Errorf("event %d: Record.collectionName = %v", i, ev.Record["collectionName"])
				}
				p := ev.payload("", nil, 0, nil)
				if want := `{"record":` + tt.json[i] + `,"action":"` + ev.Action + `"}`; string(p) != want {
					t.Errorf("event %d payload %s, want %s", i, p, want)
				}
			}
		})
	}
}

func TestDecodeEventNumbersAreJSONNumbers(t *testing.T) {
	t.Parallel()
	ev := mustEvent(t, `{"action":"create","record":{"id":"r1","collectionName":"posts","n":12345678901234567890,"nested":{"x":1.5}}}`)
	n, ok := ev.Record["n"].(json.Number)
	if !ok || n.String() != "12345678901234567890" {
		t.Fatalf("n = %#v, want json.Number 12345678901234567890", ev.Record["n"])
	}
	x, ok := ev.Record["nested"].(map[string]any)["x"].(json.Number)
	if !ok || x != "1.5" {
		t.Fatalf("nested.x = %#v", ev.Record["nested"])
	}
}

func TestDecodeEventsErrors(t *testing.T) {
	t.Parallel()
	const ok = `{"action":"create","record":{"id":"r1","collectionName":"posts"}}`
	tests := []struct {
		name string
		body string
		want string // substring of the error; array bodies must carry the "event N: " prefix
	}{
		{"empty body", ``, "empty body"},
		{"whitespace body", " \n\t", "empty body"},
		{"not an object", `"create"`, "malformed JSON"},
		{"number", `42`, "malformed JSON"},
		{"null", `null`, "malformed JSON"},
		{"NUL byte body", "\x00", "malformed JSON"},
		{"NUL before object", "\x00" + ok, "malformed JSON"},
		{"NUL inside JSON", `{"action":"create","record":{"id":"r1` + "\x00" + `","collectionName":"posts"}}`, "malformed event"},
		{"escaped NUL in id", `{"action":"create","record":{"id":"r\u0000","collectionName":"posts"}}`, "record.id"},
		{"empty array", `[]`, "empty array"},
		{"empty array with spaces", ` [ ] `, "empty array"},
		{"malformed object", `{"action":`, "malformed event"},
		{"malformed array", `[` + ok + `,`, "malformed JSON"},
		{"array trailing comma", `[` + ok + `,]`, "malformed JSON"},
		{"trailing object", ok + ` ` + ok, "trailing data"},
		{"trailing garbage", ok + ` x`, "trailing data"},
		{"trailing brace", ok + `}`, "trailing data"},
		{"trailing bracket", ok + `]`, "trailing data"},
		{"array trailing data", `[` + ok + `] x`, "malformed JSON"},
		{"missing action", `{"record":{"id":"r1","collectionName":"posts"}}`, "action is required"},
		{"null action", `{"action":null,"record":{"id":"r1","collectionName":"posts"}}`, "action is required"},
		{"unknown action", `{"action":"upsert","record":{"id":"r1","collectionName":"posts"}}`, `unknown action "upsert"`},
		{"action case", `{"action":"Create","record":{"id":"r1","collectionName":"posts"}}`, `unknown action "Create"`},
		{"action not string", `{"action":1,"record":{"id":"r1","collectionName":"posts"}}`, "action must be a string"},
		{"missing record", `{"action":"create","collection":"posts"}`, "record is required"},
		{"null record", `{"action":"create","record":null}`, "record is required"},
		{"record array", `{"action":"create","record":[1]}`, "record must be a JSON object"},
		{"record string", `{"action":"create","record":"r1"}`, "record must be a JSON object"},
		{"record number", `{"action":"create","record":1}`, "record must be a JSON object"},
		{"missing record.id", `{"action":"create","record":{"collectionName":"posts"}}`, "record.id is required"},
		{"empty record.id", `{"action":"create","record":{"id":"","collectionName":"posts"}}`, "record.id is required"},
		{"null record.id", `{"action":"create","record":{"id":null,"collectionName":"posts"}}`, "record.id is required"},
		{"numeric record.id", `{"action":"create","record":{"id":1,"collectionName":"posts"}}`, "record.id must be a string"},
		{"object record.id", `{"action":"create","record":{"id":{},"collectionName":"posts"}}`, "record.id must be a string"},
		{"record.id with slash", `{"action":"create","record":{"id":"a/b","collectionName":"posts"}}`, "record.id"},
		{"record.id with ?", `{"action":"create","record":{"id":"a?b","collectionName":"posts"}}`, "record.id"},
		{"record.id star", `{"action":"create","record":{"id":"*","collectionName":"posts"}}`, "record.id"},
		{"record.id with LF", `{"action":"create","record":{"id":"a\nb","collectionName":"posts"}}`, "record.id"},
		{"record.id with CR", `{"action":"create","record":{"id":"a\rb","collectionName":"posts"}}`, "record.id"},
		{"record.id with DEL", `{"action":"create","record":{"id":"a` + "\x7f" + `b","collectionName":"posts"}}`, "record.id"},
		{"record.id with space", `{"action":"create","record":{"id":"a b","collectionName":"posts"}}`, "record.id"},
		{"record.id too long", `{"action":"create","record":{"id":"` + strings.Repeat("x", 256) + `","collectionName":"posts"}}`, "record.id is longer than 255"},
		{"missing collection", `{"action":"create","record":{"id":"r1"}}`, "record.collectionName (or a top-level collection) is required"},
		{"empty collection", `{"action":"create","record":{"id":"r1","collectionName":""}}`, "is required"},
		{"collectionName not string", `{"action":"create","record":{"id":"r1","collectionName":5}}`, "record.collectionName must be a string"},
		{"collection not string", `{"action":"create","collection":5,"record":{"id":"r1"}}`, "collection must be a string"},
		{"collection mismatch", `{"action":"create","collection":"posts","record":{"id":"r1","collectionName":"tags"}}`, `collection "posts" does not match record.collectionName "tags"`},
		{"collection with slash", `{"action":"create","collection":"a/b","record":{"id":"r1"}}`, "collection"},
		{"collection with LF", `{"action":"create","record":{"id":"r1","collectionName":"a\nb"}}`, "collection"},
		{"collection star", `{"action":"create","record":{"id":"r1","collectionName":"*"}}`, "collection"},
		{"collectionId number", `{"action":"create","record":{"id":"r1","collectionName":"posts","collectionId":7}}`, "record.collectionId must be a string"},
		{"collectionId with slash", `{"action":"create","record":{"id":"r1","collectionName":"posts","collectionId":"a/b"}}`, "record.collectionId"},
		{"collectionId with ?", `{"action":"create","record":{"id":"r1","collectionName":"posts","collectionId":"a?"}}`, "record.collectionId"},
		{"unknown top-level field", `{"action":"create","record":{"id":"r1","collectionName":"posts"},"extra":1}`, `unknown field "extra"`},
		{"collectionName at top level", `{"action":"create","collectionName":"posts","record":{"id":"r1"}}`, `unknown field "collectionName"`},
		{"empty idempotency id", `{"id":"","action":"create","record":{"id":"r1","collectionName":"posts"}}`, "id must be 1 to 255 bytes"},
		{"long idempotency id", `{"id":"` + strings.Repeat("k", 256) + `","action":"create","record":{"id":"r1","collectionName":"posts"}}`, "id must be 1 to 255 bytes"},
		{"array: bad second event", `[` + ok + `,{"action":"create","record":{"collectionName":"posts"}}]`, "event 1: record.id is required"},
		{"array: bad first event", `[{"action":"nope","record":{}},` + ok + `]`, `event 0: unknown action "nope"`},
		{"array: bad fourth event", `[` + ok + `,` + ok + `,` + ok + `,{"action":"create","record":{"id":"r1"}}]`, "event 3: record.collectionName"},
		{"array: non-object element", `[` + ok + `,1]`, "event 1: malformed event"},
		{"array: null element", `[` + ok + `,null]`, "event 1: action is required"},
		{"array: unknown field", `[` + ok + `,{"action":"create","record":{"id":"r1","collectionName":"posts"},"x":1}]`, `event 1: malformed event: unknown field "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			evs, err := DecodeEvents([]byte(tt.body))
			if err == nil {
				t.Fatalf("accepted %q as %d events", tt.body, len(evs))
			}
			if evs != nil {
				t.Fatalf("returned %d events along with error %v (must be all or nothing)", len(evs), err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(strings.TrimSpace(tt.body), "[") && strings.HasPrefix(err.Error(), "event ") {
				t.Fatalf("single-object error %q must not carry an event index", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error has a raw line break: %q", err)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		topic   string
		query   map[string]string
		headers map[string]string
		isNil   bool
	}{
		{name: "no query", topic: "posts/*", isNil: true},
		{name: "no options param", topic: "posts/*?foo=bar", isNil: true},
		{name: "empty options", topic: "posts/*?options=", isNil: true},
		{name: "empty object", topic: "posts/*?options=%7B%7D", isNil: true},
		{name: "empty query", topic: "posts/*?options=%7B%22query%22%3A%7B%7D%7D", isNil: true},
		{
			name:  "SDK example",
			topic: `posts/n1nd?options=%7B%22query%22%3A%7B%22fields%22%3A%22id%2Ctitle%22%2C%22filter%22%3A%22title%20!%3D%20%5C%22%5C%22%22%7D%7D`,
			query: map[string]string{"fields": "id,title", "filter": `title != ""`},
		},
		{
			name:  "values stringified",
			topic: "posts/*?options=" + urlEnc(`{"query":{"s":"x","n":1,"f":1.5,"b":true,"z":null,"neg":-2}}`),
			query: map[string]string{"s": "x", "n": "1", "f": "1.5", "b": "true", "z": "", "neg": "-2"},
		},
		{
			name:    "header names snake_cased and lowercased",
			topic:   "posts/*?options=" + urlEnc(`{"headers":{"X-Token":"abc","Content-Type":"json","authorization":"t","userAgent":"ua","X_Double--dash":"d","n":5}}`),
			headers: map[string]string{"x_token": "abc", "content_type": "json", "authorization": "t", "user_agent": "ua", "x_double_dash": "d", "n": "5"},
		},
		{
			name:    "query and headers",
			topic:   "posts/*?a=1&options=" + urlEnc(`{"query":{"filter":"a>1"},"headers":{"X-A":"1"}}`) + "&b=2",
			query:   map[string]string{"filter": "a>1"},
			headers: map[string]string{"x_a": "1"},
		},
		{
			name:  "unescaped JSON still parsed",
			topic: `posts/*?options={"query":{"a":"b"}}`,
			query: map[string]string{"a": "b"},
		},
		{name: "malformed JSON", topic: "posts/*?options=%7Bnot-json", isNil: true},
		// PocketBase v0.40.4 keeps what json/v2 decoded before the error.
		{name: "truncated JSON", topic: "posts/*?options=" + urlEnc(`{"query":{"a":"b"}`), query: map[string]string{"a": "b"}},
		{name: "array", topic: "posts/*?options=%5B%5D", isNil: true},
		{name: "query is a string", topic: "posts/*?options=" + urlEnc(`{"query":"x"}`), isNil: true},
		{name: "bad escape", topic: "posts/*?options=%ZZ", isNil: true},
		{name: "semicolon", topic: "posts/*?options=" + urlEnc(`{"query":{"a":"b"}}`) + ";x", isNil: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ParseOptions(tt.topic)
			if tt.isNil {
				if got != nil {
					t.Fatalf("ParseOptions = %+v, want nil", got)
				}
				return
			}
			if got == nil {
				t.Fatal("ParseOptions = nil")
			}
			if !maps.Equal(got.Query, tt.query) {
				t.Errorf("query %q, want %q", got.Query, tt.query)
			}
			if !maps.Equal(got.Headers, tt.headers) {
				t.Errorf("headers %q, want %q", got.Headers, tt.headers)
			}
			if got.Filter() != tt.query["filter"] || got.Fields() != tt.query["fields"] {
				t.Errorf("Filter %q Fields %q", got.Filter(), got.Fields())
			}
		})
	}
	var none *Options
	if none.Filter() != "" || none.Fields() != "" {
		t.Fatal("nil Options must give empty filter and fields")
	}
}

// urlEnc mimics encodeURIComponent closely enough for these tests.
func urlEnc(s string) string {
	const keep = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"
	var b strings.Builder
	for i := range len(s) {
		if strings.IndexByte(keep, s[i]) >= 0 {
			b.WriteByte(s[i])
		} else {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[s[i]>>4])+string("0123456789abcdef"[s[i]&15])))
		}
	}
	return b.String()
}

func TestSnakeCaseLikePocketBase(t *testing.T) {
	t.Parallel()
	// Expected values are what PocketBase's inflector.Snakecase returns.
	for in, want := range map[string]string{
		"X-Token":         "x_token",
		"x_token":         "x_token",
		"Authorization":   "authorization",
		"userAgent":       "user_agent",
		"myTestDB":        "my_test_db",
		"XMLHttpRequest":  "xmlhttp_request",
		"a--b__c  d":      "a_b_c_d",
		"-lead-":          "lead",
		"X.Forwarded.For": "x_forwarded_for",
		"ÄÖ-x":            "x",
		"":                "",
	} {
		if got := snakeLower(in); got != want {
			t.Errorf("snakeLower(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTopicBase(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"posts/*": "posts/*", "posts/*?a=1": "posts/*", "?x": "", "": "", "a?b?c": "a", "*?options=%7B%7D": "*",
	} {
		if got := TopicBase(in); got != want {
			t.Errorf("TopicBase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidateTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		topic    string
		wildcard bool
		want     error
	}{
		{"", true, nil},
		{"", false, nil},
		{"posts/*", false, nil},
		{"*", true, nil},
		{"*", false, ErrWildcardDisabled},
		{"*?a=1", false, ErrWildcardDisabled},
		{"**", false, nil},
		{"a\nb", true, ErrControlCharacter},
		{"a\rb", true, ErrControlCharacter},
		{"\x00", true, ErrControlCharacter},
		{"\x7f", true, ErrControlCharacter},
		{"\x1b[31m", true, ErrControlCharacter},
		{"*\n", false, ErrControlCharacter},
		{"\u2028", true, nil}, // a line separator is not an SSE line break
		{"posts/*?options=%0A", true, nil},
	}
	for _, tt := range tests {
		if got := ValidateTopic(tt.topic, tt.wildcard); got != tt.want {
			t.Errorf("ValidateTopic(%q, %v) = %v, want %v", tt.topic, tt.wildcard, got, tt.want)
		}
	}
}

func TestMessageValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		msg     Message
		want    string // compacted data
		wantErr string
	}{
		{"compacts multi-line data", Message{Name: "custom", Data: json.RawMessage("{\n  \"a\": 1,\r\n  \"b\": [1, 2]\n}\n")}, `{"a":1,"b":[1,2]}`, ""},
		{"keeps escaped newline in strings", Message{Name: "custom", Data: json.RawMessage(`"line1\nline2"`)}, `"line1\nline2"`, ""},
		{"no data is null", Message{Name: "custom"}, "null", ""},
		{"scalar", Message{Name: "custom", Data: json.RawMessage(` 42 `)}, "42", ""},
		{"name required", Message{Data: json.RawMessage(`1`)}, "", "name is required"},
		{"name with LF", Message{Name: "a\nb", Data: json.RawMessage(`1`)}, "", "name:"},
		{"name too long", Message{Name: strings.Repeat("n", 2501), Data: json.RawMessage(`1`)}, "", "longer than 2500"},
		{"name at limit", Message{Name: strings.Repeat("n", 2500), Data: json.RawMessage(`1`)}, "1", ""},
		{"invalid data", Message{Name: "custom", Data: json.RawMessage(`{"a":`)}, "", "data is not valid JSON"},
		{"two values", Message{Name: "custom", Data: json.RawMessage(`1 2`)}, "", "data is not valid JSON"},
		{"raw newline in string", Message{Name: "custom", Data: json.RawMessage("\"a\nb\"")}, "", "data is not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := tt.msg
			err := m.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if string(m.Data) != tt.want {
				t.Fatalf("data %q, want %q", m.Data, tt.want)
			}
			if strings.ContainsAny(string(m.Data), "\r\n") {
				t.Fatalf("data still spans lines: %q", m.Data)
			}
		})
	}
}
