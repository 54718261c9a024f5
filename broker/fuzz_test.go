package broker

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

func FuzzValidateTopic(f *testing.F) {
	for _, s := range []string{
		"", "*", "posts/*", "posts/r1", "posts/*?options=%7B%7D", "a\nb", "a\rb", "\x00", "\x7f", "*?x",
		"\u0085", "\xc2\x85", "\xff\xfe", "emoji/🎉", "\u2028", "PB_CONNECT",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, topic string, wildcard bool) {
		err := ValidateTopic(topic, wildcard)
		hasControl := strings.ContainsFunc(topic, unicode.IsControl)
		for i := range len(topic) {
			if topic[i] < 0x20 || topic[i] == 0x7f {
				hasControl = true // bytes that would break an SSE line, whatever the encoding
			}
		}
		if hasControl && err == nil {
			t.Fatalf("topic %q with a control character accepted", topic)
		}
		if !hasControl {
			wantWildcardErr := !wildcard && TopicBase(topic) == Wildcard
			if (err != nil) != wantWildcardErr {
				t.Fatalf("ValidateTopic(%q, %v) = %v", topic, wildcard, err)
			}
		}
		// An accepted topic always frames as exactly one event line.
		if err == nil && strings.ContainsAny(topic, "\r\n") {
			t.Fatalf("accepted line break in %q", topic)
		}
	})
}

var snakeKey = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{
		"posts/*",
		"posts/*?options=%7B%7D",
		"posts/*?options=" + urlEnc(`{"query":{"filter":"a>1","fields":"id"},"headers":{"X-Token":"t","userAgent":1}}`),
		`posts/*?options={"query":{"a":[1,{"b":null}]}}`,
		"posts/*?options=%ZZ&options=%7B%7D",
		"?options=" + urlEnc(`{"headers":{"ÄÖ":"x","-":"y","":"z"}}`),
		"posts/*?options=" + urlEnc(`{"query":{"n":1e400}}`),
		"posts/*?a=1;b=2&options=null",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		o := ParseOptions(topic)
		if o == nil {
			return
		}
		if len(o.Query) == 0 && len(o.Headers) == 0 {
			t.Fatalf("empty options returned as non-nil for %q", topic)
		}
		for k := range o.Headers {
			if k != "" && !snakeKey.MatchString(k) {
				t.Fatalf("header name %q is not snake_case lowercase (topic %q)", k, topic)
			}
		}
		_ = o.Filter()
		_ = o.Fields()
	})
}

func FuzzSnakeCase(f *testing.F) {
	for _, s := range []string{"X-Token", "userAgent", "myTestDB", "XMLHttpRequest", "a--b__c", "ÄÖ-x", "aÄb", "1A", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := snakeLower(s), pbSnakecase(s); got != want {
			t.Fatalf("snakeLower(%q) = %q, PocketBase gives %q", s, got, want)
		}
	})
}

// pbSnakecase is PocketBase v0.40.4 tools/inflector.Snakecase, copied as the reference.
var pbSnakeSplit = regexp.MustCompile(`[\W_]+`)

func pbSnakecase(str string) string {
	var result strings.Builder
	for _, word := range pbSnakeSplit.Split(str, -1) {
		if word == "" {
			continue
		}
		if result.Len() > 0 {
			result.WriteString("_")
		}
		for i, c := range word {
			if unicode.IsUpper(c) && i > 0 && !unicode.IsUpper(rune(word[i-1])) {
				result.WriteString("_")
			}
			result.WriteRune(c)
		}
	}
	return strings.ToLower(result.String())
}

func FuzzDecodeEvents(f *testing.F) {
	for _, s := range []string{
		`{"action":"create","record":{"id":"r1","collectionName":"posts"}}`,
		`{"action":"update","collection":"posts","record":{"id":"r1","n":12345678901234567890,"x":{"y":[1,2,"\u2028"]}}}`,
		`[{"action":"delete","id":"k","record":{"id":"a","collectionName":"p","collectionId":"pbc"}},{"action":"create","record":{"id":"b","collectionName":"p"}}]`,
		`{"action":"create","record":{"id":"r1","collectionName":"posts"}}}`,
		`{"action":"create","record":{"id":"a/b","collectionName":"posts"}}`,
		`{"action":"create","record":{"id":"r\u0000","collectionName":"posts"}}`,
		"[]", "", "\x00", "null", "[null]", `{"record":"x"}`, `[1,2]`, `{"action":"create","record":{}}`,
		`{"action":"create","record":{"id":"é","collectionName":"\ud800"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := DecodeEvents(body)
		if err != nil {
			if evs != nil {
				t.Fatalf("events returned with error %v", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error with a raw line break: %q", err)
			}
			return
		}
		if len(evs) == 0 {
			t.Fatal("no events and no error")
		}
		for _, ev := range evs {
			if ev.RecordID == "" || ev.Collection == "" {
				t.Fatalf("accepted event without record id or collection: %+v", ev)
			}
			switch ev.Action {
			case ActionCreate, ActionUpdate, ActionDelete:
			default:
				t.Fatalf("accepted action %q", ev.Action)
			}
			for _, name := range []string{ev.RecordID, ev.Collection, ev.CollectionID} {
				if strings.ContainsAny(name, "/?*") || strings.ContainsFunc(name, unicode.IsControl) {
					t.Fatalf("accepted name %q that breaks topics", name)
				}
			}
			p := ev.payload("", nil, 0, nil)
			if !json.Valid(p) {
				t.Fatalf("payload is not valid JSON: %q", p)
			}
			if strings.ContainsAny(string(p), "\r\n") {
				t.Fatalf("payload spans lines: %q", p)
			}
			var decoded struct {
				Record map[string]any `json:"record"`
				Action string         `json:"action"`
			}
			if err := json.Unmarshal(p, &decoded); err != nil {
				t.Fatal(err)
			}
			if decoded.Action != ev.Action || decoded.Record["id"] != ev.RecordID || decoded.Record["collectionName"] != ev.Collection {
				t.Fatalf("payload %s does not match event %+v", p, ev)
			}
			// The frame built from it is one SSE message.
			fs := parseFrames("id:x\n" + string(frameTail("posts/*", p)))
			if len(fs) != 1 || fs[0].Data != string(p) {
				t.Fatalf("frame splits: %+v", fs)
			}
		}
	})
}

func FuzzParseEventID(f *testing.F) {
	client := strings.Repeat("a", 40)
	for _, s := range []string{
		"", client, client + ".AbCd1234.1", client + ".AbCd1234.18446744073709551615",
		client + ".AbCd1234.18446744073709551616", client + ".AbCd1234.0", client + ".AbCd1234.01",
		client + ".AbCd1234", client + ".AbCd1234.1.2", client + "..1", "." + client,
		client + ".AbCd1234.1\n", strings.Repeat("a", 39) + "é.AbCd1234.1",
		client + ".AbCd1234." + strings.Repeat("9", MaxEventIDLen),
	} {
		f.Add(s, uint64(len(s)))
	}
	f.Fuzz(func(t *testing.T, s string, pos uint64) {
		// Any id the encoder writes parses back to its parts.
		const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
		var parts [40 + epochLen]byte
		for i := range parts {
			c := byte(i)
			if i < len(s) {
				c = s[i]
			}
			parts[i] = alphabet[int(c)%len(alphabet)]
		}
		want := EventID{ClientID: string(parts[:40]), Epoch: string(parts[40:]), Position: pos}
		if pos == 0 {
			want.Epoch = ""
		}
		enc := appendEventID(nil, want.ClientID, want.Epoch, want.Position)
		if got, ok := ParseEventID(string(enc)); !ok || got != want {
			t.Fatalf("%q parses as %+v, %v; want %+v", enc, got, ok, want)
		}

		id, ok := ParseEventID(s)
		if !ok {
			if id != (EventID{}) {
				t.Fatalf("refused %q but returned %+v", s, id)
			}
			return
		}
		if len(s) > MaxEventIDLen {
			t.Fatalf("accepted an id of %d bytes", len(s))
		}
		if !validClientID(id.ClientID) || (id.Position == 0) != (id.Epoch == "") ||
			id.Epoch != "" && (len(id.Epoch) != epochLen || !inAlphabet(id.Epoch)) {
			t.Fatalf("ParseEventID(%q) = %+v", s, id)
		}
		// What the parser accepts is exactly what the encoder writes.
		again := appendEventID(nil, id.ClientID, id.Epoch, id.Position)
		if string(again) != s || len(again) != eventIDLen(id.ClientID, id.Epoch, id.Position) {
			t.Fatalf("ParseEventID(%q) = %+v, which encodes as %q", s, id, again)
		}
	})
}
