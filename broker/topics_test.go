package broker

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-realtime/realtime/rules"
)

// TestParseOptionsPocketBase holds topics whose options were observed on
// PocketBase v0.40.4: its tools/subscriptions client (the code its realtime
// handler runs) on each topic, and the first group also live, through a
// subscription on a running server (which of the events arrived). A
// differential run of 20000 mutated topics against tools/subscriptions found
// no difference.
func TestParseOptionsPocketBase(t *testing.T) {
	t.Parallel()
	opt := func(raw string) string { return "posts/*?options=" + urlEnc(raw) }
	q := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		topic   string
		query   map[string]string // nil: no options at all
		headers map[string]string
	}{
		// Live on PocketBase v0.40.4.
		{"Query key is case-sensitive", opt(`{"Query":{"filter":"a=1"}}`), nil, nil},
		{"filter key is case-sensitive", opt(`{"query":{"Filter":"a=1"}}`), q("Filter", "a=1"), nil},
		{"array value is empty", opt(`{"query":{"filter":["a=1","b"]}}`), q("filter", ""), nil},
		{"unknown top-level member skipped", opt(`{"query":{"filter":"a=1"},"other":1}`), q("filter", "a=1"), nil},
		{"fragment is not query", opt(`{"query":{"filter":"a=1"}}`) + "#frag", q("filter", "a=1"), nil},
		{"raw JSON", `posts/*?options={"query":{"filter":"a=1"}}`, q("filter", "a=1"), nil},
		{"raw # starts a fragment", `posts/*?options={"query":{"filter":"a=1 #x"}}`, q("filter", ""), nil},

		// tools/subscriptions v0.40.4.
		{"QUERY", opt(`{"QUERY":{"filter":"a=1"}}`), nil, nil},
		{"object value is empty", opt(`{"query":{"filter":{"x":1}}}`), q("filter", ""), nil},
		{"scalars", opt(`{"query":{"n":1e21,"b":true,"z":null,"f":1.5,"i":10,"m":-0,"e":1E+2,"c":0.1,"d":1e-7}}`),
			q("n", "1000000000000000000000", "b", "true", "z", "", "f", "1.5", "i", "10", "m", "-0", "e", "100", "c", "0.1", "d", "0.0000001"), nil},
		{"plus is a space", strings.ReplaceAll(opt(`{"query":{"filter":"a = 1"}}`), "%20", "+"), q("filter", "a = 1"), nil},
		{"lower-case escapes", strings.ToLower(opt(`{"query":{"filter":"a = 1"}}`)), q("filter", "a = 1"), nil},
		{"other params", "posts/*?x=1&" + opt(`{"query":{"filter":"a=1"}}`)[len("posts/*?"):], q("filter", "a=1"), nil},
		{"first options wins", opt(`{"query":{"filter":"a=1"}}`) + "&options=" + urlEnc(`{"query":{"filter":"b=2"}}`), q("filter", "a=1"), nil},
		{"semicolon drops the pair", opt(`{"query":{"filter":"a=1"}}`) + ";x=1", nil, nil},
		{"semicolon elsewhere", "posts/*?x=1;y=2&" + opt(`{"query":{"filter":"a=1"}}`)[len("posts/*?"):], q("filter", "a=1"), nil},
		{"bad escape in another options value", "posts/*?options=%zz&" + opt(`{"query":{"filter":"b=2"}}`)[len("posts/*?"):], q("filter", "b=2"), nil},
		{"bad escape in the path", "posts/%zz?" + opt(`{"query":{"filter":"a=1"}}`)[len("posts/*?"):], nil, nil},
		{"colon in first segment", "1a:b?" + opt(`{"query":{"filter":"a=1"}}`)[len("posts/*?"):], nil, nil},
		{"scheme-like topic", "po:sts/*?" + opt(`{"query":{"filter":"a=1"}}`)[len("posts/*?"):], q("filter", "a=1"), nil},
		{"OPTIONS", "posts/*?OPTIONS=" + urlEnc(`{"query":{"filter":"a=1"}}`), nil, nil},
		{"double question mark", "posts/*??options=" + urlEnc(`{"query":{"filter":"a=1"}}`), nil, nil},
		{"truncated: what was decoded stays", opt(`{"query":{"filter":"a=1"}`), q("filter", "a=1"), nil},
		{"trailing garbage", opt(`{"query":{"filter":"a=1"}} x`), q("filter", "a=1"), nil},
		{"duplicate key: first wins, decoding stops", opt(`{"query":{"filter":"a=1","filter":"b=2","c":"d"}}`), q("filter", "a=1"), nil},
		{"duplicate query", opt(`{"query":{"filter":"a=1"},"query":{"fields":"id"}}`), q("filter", "a=1"), nil},
		{"headers wrong type after query", opt(`{"query":{"filter":"a=1"},"headers":5}`), q("filter", "a=1"), nil},
		{"query wrong type after headers", opt(`{"headers":{"X-Token":"t"},"query":5}`), nil, q("x_token", "t")},
		{"value cut short", opt(`{"query":{"a":"x","b":[1,2`), q("a", "x", "b", ""), nil},
		{"missing colon", opt(`{"query":{"a" "x"}}`), q("a", ""), nil},
		{"number then garbage", opt(`{"query":{"a":"x","b":01}}`), q("a", "x", "b", "0"), nil},
		{"bad number", opt(`{"query":{"a":"x","b":1.}}`), q("a", "x", "b", ""), nil},
		{"number out of range", opt(`{"query":{"a":-1e400,"b":"z"}}`), q("a", "0"), nil},
		{"literal then garbage", opt(`{"query":{"a":truex}}`), q("a", "true"), nil},
		{"invalid UTF-8", "posts/*?options=" + url.QueryEscape("{\"query\":{\"a\":\"\xff\",\"b\":\"y\"}}"), q("a", ""), nil},
		{"invalid UTF-8 name", "posts/*?options=" + url.QueryEscape("{\"query\":{\"a\":\"x\",\"\xff\":\"y\"}}"), q("a", "x"), nil},
		{"lone surrogate", opt(`{"query":{"a":"x\ud800y","b":"z"}}`), q("a", ""), nil},
		{"surrogate pair", opt(`{"query":{"a":"\ud83d\ude00"}}`), q("a", "😀"), nil},
		{"raw tab in string", opt("{\"query\":{\"a\":\"x\",\"b\":\"tab\there\"}}"), q("a", "x", "b", ""), nil},
		{"DEL is fine", opt("{\"query\":{\"a\":\"\x7f\",\"b\":\"z\"}}"), q("a", "\x7f", "b", "z"), nil},
		{"escaped name", opt(`{"\u0071uery":{"a":"x"},"query":{"b":"y"}}`), q("a", "x"), nil},
		{"bad unknown member stops", opt(`{"headers":{"X":"1"},"x":{bad},"query":{"a":"x"}}`), nil, q("x", "1")},
		{"duplicate unknown member stops", opt(`{"x":1,"x":2,"query":{"a":"x"}}`), nil, nil},
		{"form feed is not whitespace", opt("\f{\"query\":{\"a\":\"x\"}}"), nil, nil},
		{"null options", opt(`null`), nil, nil},
		{"array options", opt(`[1]`), nil, nil},
		{"header names", opt(`{"headers":{"Content-Type":"t","HTTPServer":"h","A1B":"c","_x_":"d","x--y":"e","\u00e9":"f","a\u00c4b":"g"}}`),
			nil, q("content_type", "t", "httpserver", "h", "a1_b", "c", "x", "d", "x_y", "e", "", "f", "a_b", "g")},
		{"nesting 10000 deep", opt(`{"query":{"a":` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `,"b":"z"}}`), q("a", "", "b", "z"), nil},
		{"nesting 10001 deep", opt(`{"query":{"a":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `,"b":"z"}}`), q("a", ""), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ParseOptions(tt.topic)
			if tt.query == nil && tt.headers == nil {
				if got != nil {
					t.Fatalf("ParseOptions = %q %q, want nil", got.Query, got.Headers)
				}
				return
			}
			if got == nil {
				t.Fatal("ParseOptions = nil")
			}
			if !maps.Equal(got.Query, tt.query) || !maps.Equal(got.Headers, tt.headers) {
				t.Fatalf("ParseOptions = %q %q, want %q %q", got.Query, got.Headers, tt.query, tt.headers)
			}
		})
	}
}

// TestParseOptionsCompilesFilter: the filter is compiled when the topic is
// parsed (on the subscription path), never later on the publish path.
func TestParseOptionsCompilesFilter(t *testing.T) {
	t.Parallel()
	o := ParseOptions("posts/*?options=" + urlEnc(`{"query":{"filter":"title = 'x'"}}`))
	if o.filter == nil || o.filterErr != nil {
		t.Fatalf("filter not compiled by ParseOptions: %v %v", o.filter, o.filterErr)
	}
	bad := ParseOptions("posts/*?options=" + urlEnc(`{"query":{"filter":"title ="}}`))
	if bad.filterErr == nil || bad.FilterError() == nil {
		t.Fatal("bad filter not refused by ParseOptions")
	}
	// Options built by hand still compile on first use.
	manual := &Options{Query: map[string]string{"filter": "n > 1"}}
	if f, err := manual.compiledFilter(); f == nil || err != nil {
		t.Fatalf("compiledFilter = %v, %v", f, err)
	}
	var none *Options
	if none.FilterError() != nil {
		t.Fatal("nil options have no filter error")
	}
}

// TestCompileFilter: what a subscription filter may be. Observed on
// PocketBase v0.40.4 (live subscriptions; each refused filter got no events
// there): 200 expressions filter, 201 do not; a syntax error, whitespace or
// a comment only, an empty group, @REQUEST in capitals, and filters on
// collectionName, collectionId or expand.* deliver nothing. We refuse them
// when the topic is subscribed. Deliberate difference: parentheses nested
// deeper than 64 levels are refused (PocketBase evaluated 300 levels).
func TestCompileFilter(t *testing.T) {
	t.Parallel()
	exprs := func(n int) string { return strings.Repeat("n>0||", n-1) + "n>0" }
	nest := func(n int) string { return strings.Repeat("(", n) + "n>0" + strings.Repeat(")", n) }
	var rulesErr *rules.Error
	tests := []struct {
		filter string
		ok     bool
		is     error // expected sentinel, or nil for a *rules.Error
	}{
		{"title != ''", true, nil},
		{"id != ''", true, nil},
		{exprs(200), true, nil},
		{exprs(201), false, ErrTooManyExpressions},
		{nest(64), true, nil},
		{nest(65), false, nil},
		{"title ==", false, nil},
		{"   ", false, nil},
		{"// hi", false, nil},
		{"title != '' && ()", false, nil},
		{"@REQUEST.auth.id = ''", false, nil},
		{"@collection.posts.id != ''", false, nil},
		{"collectionName = 'posts'", false, ErrUnknownFilterField},
		{"collectionId != ''", false, ErrUnknownFilterField},
		{"expand.tag.name = 'x'", false, ErrUnknownFilterField},
	}
	for _, tt := range tests {
		r, err := CompileFilter(tt.filter)
		switch {
		case tt.ok && (err != nil || r == nil):
			t.Errorf("CompileFilter(%.40q) = %v", tt.filter, err)
		case tt.ok:
		case err == nil:
			t.Errorf("CompileFilter(%.40q) compiled, want an error", tt.filter)
		case tt.is != nil && !errors.Is(err, tt.is):
			t.Errorf("CompileFilter(%.40q) = %v, want %v", tt.filter, err, tt.is)
		case tt.is == nil && !errors.As(err, &rulesErr):
			t.Errorf("CompileFilter(%.40q) = %T %v, want a *rules.Error", tt.filter, err, err)
		}
	}
}

// TestFilterCache: one compiled rule per filter text, errors cached too,
// and the cache stays bounded.
func TestFilterCache(t *testing.T) {
	t.Parallel()
	a, _ := CompileFilter("title = 'cache-test'")
	b, _ := CompileFilter("title = 'cache-test'")
	if a == nil || a != b {
		t.Fatal("the same filter text compiled twice")
	}
	c := newFilterCache(3)
	for i := range 10 {
		if _, err := c.get(fmt.Sprintf("n > %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
	_, err1 := c.get("n >")
	_, err2 := c.get("n >")
	if err1 == nil || err1 != err2 {
		t.Fatalf("errors not cached: %v %v", err1, err2)
	}
	r1, _ := c.get("n > 9") // most recent survivors
	r2, _ := c.get("n > 9")
	if r1 == nil || r1 != r2 {
		t.Fatal("recent entry evicted")
	}
	long := "title != '" + strings.Repeat("x", maxCachedFilter) + "'"
	if _, err := CompileFilter(long); err != nil {
		t.Fatal(err)
	}
}

// TestSuperuserOnly: PocketBase v0.40.4 looks for "@collection." and
// "@request." anywhere in a non-superuser's filter and sort options when a
// filter is set, and then sends nothing. Observed live: a guest's and a
// user's subscription with `@request.auth.id = ”`, `title != '@request.x'`,
// `title != '@collection.x'` or a sort on @request.auth.id (with a filter)
// got no events; a sort alone did not matter; a superuser got the events.
func TestSuperuserOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		query map[string]string
		want  string
	}{
		{nil, ""},
		{map[string]string{"filter": "title != ''"}, ""},
		{map[string]string{"filter": "@request.auth.id = ''"}, "@request."},
		{map[string]string{"filter": "title != '@request.x'"}, "@request."},
		{map[string]string{"filter": "title != '@collection.x'"}, "@collection."},
		{map[string]string{"filter": "@request.a = @collection.b"}, "@collection."},
		{map[string]string{"filter": "title != ''", "sort": "@request.auth.id"}, "@request."},
		{map[string]string{"sort": "@request.auth.id"}, ""},
		{map[string]string{"filter": "@REQUEST.auth.id = ''"}, ""}, // invalid instead
		{map[string]string{"fields": "@request.x"}, ""},
	}
	for _, tt := range tests {
		o := &Options{Query: tt.query}
		if got := o.SuperuserOnly(); got != tt.want {
			t.Errorf("SuperuserOnly(%q) = %q, want %q", tt.query, got, tt.want)
		}
	}
	var none *Options
	if none.SuperuserOnly() != "" {
		t.Fatal("nil options")
	}
}

// TestMissingFilterField: observed on PocketBase v0.40.4, a subscription
// filtering on a field the collection lacks (`nosuch = ”`) or hides (even
// for a superuser) gets no event; MissingFilterField names such a field so
// that the event is not delivered.
func TestMissingFilterField(t *testing.T) {
	t.Parallel()
	record := map[string]any{"id": "r1", "title": "hello", "n": nil}
	for filter, want := range map[string]string{
		"":                           "",
		"title = 'hello'":            "",
		"n = null && id != ''":       "",
		"nosuch = ''":                "nosuch",
		"title != '' || secret = ''": "secret",
		"@request.auth.id = ''":      "",
		"title ==":                   "", // refused anyway
	} {
		o := &Options{Query: map[string]string{"filter": filter}}
		if got := o.MissingFilterField(record); got != want {
			t.Errorf("MissingFilterField(%q) = %q, want %q", filter, got, want)
		}
	}
	var none *Options
	if none.MissingFilterField(record) != "" {
		t.Fatal("nil options")
	}
}
