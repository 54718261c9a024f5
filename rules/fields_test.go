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
		{`n:excerpt(1)`, `{"n": 1}`},               // not a string: untouched
		{`title:excerpt(0)`, `{"title": "T"}`},     // invalid modifier: ignored
		{`title:excerpt(-1)`, `{"title": "T"}`},    // invalid modifier: ignored
		{`title:excerpt(x)`, `{"title": "T"}`},     // invalid modifier: ignored
		{`title:excerpt(1,2,3)`, `{"title": "T"}`}, // invalid modifier: ignored
		{`title:shout`, `{"title": "T"}`},          // unknown modifier: ignored
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
		{"héllo", 2, false, "h"}, // never cut inside a character
		{"héllo", 3, true, "hé..."},
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
