package rules

import (
	"encoding/json"
	"reflect"
	"testing"
)

const fieldsRecord = `{
	"id": "1", "title": "T", "n": 1, "tags": ["a", "b"],
	"body": "<p>Hello <b>big</b>\n\n  world</p><script>x()</script><p>Second para</p>",
	"expand": {
		"author": {"id": "u1", "name": "Ann", "email": "a@x"},
		"tags": [{"id": "t1", "name": "go"}, {"id": "t2", "name": "sse"}]
	}
}`

func TestPickFields(t *testing.T) {
	tests := []struct {
		fields string
		want   string
	}{
		{``, fieldsRecord},
		{` , `, fieldsRecord},
		{`*`, fieldsRecord},
		{`id,title`, `{"id": "1", "title": "T"}`},
		{` id , title `, `{"id": "1", "title": "T"}`},
		{`missing`, `{}`},
		{`id,expand.author.name`, `{"id": "1", "expand": {"author": {"name": "Ann"}}}`},
		{`expand.tags.name`, `{"expand": {"tags": [{"name": "go"}, {"name": "sse"}]}}`},
		{`expand.author.*`, `{"expand": {"author": {"id": "u1", "name": "Ann", "email": "a@x"}}}`},
		{`expand.*`, `{"expand": {"author": {"id": "u1", "name": "Ann", "email": "a@x"}, "tags": [{"id": "t1", "name": "go"}, {"id": "t2", "name": "sse"}]}}`},
		{`*,expand.author.id`, `{"id": "1", "title": "T", "n": 1, "tags": ["a", "b"],
			"body": "<p>Hello <b>big</b>\n\n  world</p><script>x()</script><p>Second para</p>",
			"expand": {"author": {"id": "u1"}}}`},
		{`id,id.x`, `{"id": "1"}`},         // the whole key wins over a sub-path
		{`title.x`, `{"title": "T"}`},      // nothing to pick inside a string
		{`tags.x`, `{"tags": ["a", "b"]}`}, // nor inside an array of strings
		{`body:excerpt(100)`, `{"body": "Hello big world Second para"}`},
		{`body:excerpt(12)`, `{"body": "Hello big wo"}`},
		{`body:excerpt(12, true)`, `{"body": "Hello big wo..."}`},
		{`body:excerpt(12,1)`, `{"body": "Hello big wo..."}`},
		{`body:excerpt(12 true)`, `{"body": "Hello big wo..."}`},
		{`body:excerpt(10.0,false)`, `{"body": "Hello big"}`},
		{`id,body:excerpt(5,true),title`, `{"id": "1", "body": "Hello...", "title": "T"}`},
		{`*:excerpt(3)`, `{"id": "1", "title": "T", "n": 1, "tags": ["a", "b"], "body": "Hel",
			"expand": {"author": {"id": "u1", "name": "Ann", "email": "a@x"},
			"tags": [{"id": "t1", "name": "go"}, {"id": "t2", "name": "sse"}]}}`},
		{`n:excerpt(1)`, `{"n": 1}`}, // not a string: untouched
		// An invalid modifier anywhere keeps the whole record (PocketBase v0.40.4).
		{`title:excerpt(0)`, fieldsRecord},
		{`title:excerpt(-1)`, fieldsRecord},
		{`title:excerpt(x)`, fieldsRecord},
		{`title:excerpt(1,2,3)`, fieldsRecord},
		{`title:shout`, fieldsRecord},
		{`expand.author.name:excerpt(2)`, `{"expand": {"author": {"name": "An"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.fields, func(t *testing.T) {
			record := decode(t, fieldsRecord)
			got := PickFields(record, tt.fields)
			want := decode(t, tt.want)
			if !reflect.DeepEqual(got, want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(want)
				t.Errorf("PickFields(%q)\n got %s\nwant %s", tt.fields, g, w)
			}
			if !reflect.DeepEqual(record, decode(t, fieldsRecord)) {
				t.Errorf("PickFields(%q) mutated its input", tt.fields)
			}
		})
	}
}

func TestPickFieldsReturnsNewMap(t *testing.T) {
	record := decode(t, `{"a": 1}`)
	got := PickFields(record, "")
	got["b"] = 2
	if _, ok := record["b"]; ok {
		t.Fatal("the result shares its top-level map with the input")
	}
	if PickFields(nil, "a") != nil {
		t.Fatal("nil record must give nil")
	}
}

func TestExcerpt(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		dots bool
		want string
	}{
		{"plain text", 100, false, "plain text"},
		{"héllo", 2, false, "hé"}, // characters, not bytes
		{"héllo", 3, true, "hél..."},
		{"héllo", 5, true, "héllo"}, // 6 bytes but 5 characters: not cut
		{"<div>a</div><div>b</div>", 10, false, "a b"},
		{"<span>a</span><span>b</span>", 10, false, "ab"},
		{"<p>a &amp; b</p>", 10, false, "a & b"},
		{"<style>p{}</style><p>x</p><img src=y>", 10, false, "x"},
		{"", 5, true, ""},
	}
	for _, tt := range tests {
		e := &excerpt{max: tt.max, ellipsis: tt.dots}
		if got := e.apply(tt.in); got != tt.want {
			t.Errorf("excerpt(%q, %d, %v) = %q, want %q", tt.in, tt.max, tt.dots, got, tt.want)
		}
	}
}

// TestPickFieldsPocketBase holds cases whose answers were observed on
// PocketBase v0.40.4: the first group live (a realtime subscription with
// options.query.fields on a running server), the rest with its tools/picker
// package, which its realtime handler calls (when Pick fails the whole record
// is sent). A differential run of 9000 generated field lists against
// tools/picker found no difference.
func TestPickFieldsPocketBase(t *testing.T) {
	const record = `{
		"id": "1", "title": "T",
		"body": "<p>Hello <b>big</b>\n\n  world</p><script>x()</script><p>Second para</p>",
		"cjk": "<p>日本語のテキスト</p><p>x</p>"
	}`
	const whole = record
	tests := []struct{ fields, want string }{
		// Live on PocketBase v0.40.4.
		{`id`, `{"id": "1"}`},
		{`*`, whole},
		{`id,cjk:excerpt(4,true)`, `{"id": "1", "cjk": "日本語の..."}`}, // characters, not bytes
		{`cjk:excerpt(6)`, `{"cjk": "日本語のテキ"}`},
		{`id,title:excerpt(0)`, whole},          // one invalid modifier: the whole record
		{`id,title:shout`, whole},               // unknown modifier: the whole record
		{`id,title :excerpt(3)`, `{"id": "1"}`}, // the path is "title " (untrimmed): nothing
		{`id,'title`, whole},                    // unbalanced quote: the whole record

		// tools/picker v0.40.4.
		{`cjk:excerpt(8)`, `{"cjk": "日本語のテキスト"}`},
		{`id,(title`, whole},
		{`id,title)`, `{"id": "1"}`},
		{`id,title:EXCERPT(1)`, whole}, // modifier names are case-sensitive
		{`id,title:excerpt`, whole},
		{`id,title:excerpt()`, whole},
		{`body:excerpt(0x5)`, `{"body": "Hello"}`},    // cast.ToInt: base 0
		{`body:excerpt(010)`, `{"body": "Hello bi"}`}, // octal
		{`body:excerpt(1_0)`, `{"body": "Hello big"}`},
		{`body:excerpt(5.9)`, `{"body": "Hello"}`}, // the fraction is dropped
		{`body:excerpt(.5)`, whole},                // 0
		{`body:excerpt("5")`, whole},               // quotes are kept in the argument
		{`id,title:excerpt(2e1)`, whole},
		{`body:excerpt(99999999999999999999)`, whole},
		{`body:excerpt(5 yes)`, `{"body": "Hello"}`}, // ParseBool fails: no ellipsis
		{`body:excerpt(5,T)`, `{"body": "Hello..."}`},
		{`body:excerpt(5):x`, `{"body": "Hello"}`},      // ":x" is a third token: ParseBool fails
		{`a\'b,id`, `{"id": "1"}`},                      // an escaped quote opens nothing
		{`id,"a,b"`, `{"id": "1"}`},                     // a quoted comma does not split
		{"id\u00a0,title", `{"id": "1", "title": "T"}`}, // NBSP is trimmed
	}
	for _, tt := range tests {
		t.Run(tt.fields, func(t *testing.T) {
			got := PickFields(decode(t, record), tt.fields)
			if want := decode(t, tt.want); !reflect.DeepEqual(got, want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(want)
				t.Errorf("PickFields(%q)\n got %s\nwant %s", tt.fields, g, w)
			}
		})
	}
}
