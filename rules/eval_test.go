package rules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// decode reads JSON the way the hub does: numbers stay json.Number.
func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

const testRecord = `{
	"id": "r1", "author": "u1", "status": "published", "title": "Hello World",
	"views": 42, "price": 9.5, "verified": true, "draft": false,
	"tags": ["go", "Caddy", "sse"], "prefixed": ["pb_a", "pb_b"], "emptyTags": [],
	"empty": "", "nothing": null,
	"meta": {"owner": {"id": "u1"}, "level": 3},
	"items": [{"price": 5}, {"price": 15}],
	"members": ["u1", "u2"],
	"countText": "10", "code": "007", "pct": "100%", "under": "a_b", "axb": "axb",
	"word": "wor%", "wild": "lo_W",
	"created": "2024-01-01 00:00:00.000Z"
}`

const testAuth = `{"id": "u1", "collectionName": "users", "email": "a@x.io", "verified": true,
	"role": "admin", "age": 30, "team": "t1", "tags": ["go"]}`

func TestEval(t *testing.T) {
	record := decode(t, testRecord)
	draft := decode(t, `{"id": "r2", "author": "u1", "status": "draft"}`)
	orphan := decode(t, `{"id": "r3", "author": "", "status": "draft"}`)
	authed := decode(t, testAuth)
	other := decode(t, `{"id": "u9"}`)
	now := time.Date(2024, 5, 6, 7, 8, 9, 10_000_000, time.UTC) // a Monday

	env := func(rec, auth map[string]any) *Env {
		return &Env{
			Record:  rec,
			Auth:    auth,
			Query:   map[string]string{"token": "abc", "n": "5", "q": "lo_W"},
			Headers: map[string]string{"x_token": "Secret"},
			Method:  "GET",
			Context: "realtime",
			Now:     now,
		}
	}
	user := env(record, authed)
	guest := env(record, nil)

	tests := []struct {
		expr string
		env  *Env
		want bool
	}{
		// = and != on text
		{`status = "published"`, guest, true},
		{`status = "draft"`, guest, false},
		{`status != "draft"`, guest, true},
		{`status != "published"`, guest, false},
		{`status = 'published'`, guest, true},
		{`"published" = status`, guest, true},
		{`title = "hello world"`, guest, false}, // = is case-sensitive (BINARY)

		// ordering on numbers
		{`views > 40`, guest, true},
		{`views > 42`, guest, false},
		{`views >= 42`, guest, true},
		{`views < 42`, guest, false},
		{`views <= 42`, guest, true},
		{`price > 9`, guest, true},
		{`price < 9.6`, guest, true},
		{`views = 42.0`, guest, true},
		{`views > -1`, guest, true},

		// LIKE
		{`title ~ "world"`, guest, true},
		{`title ~ "WORLD"`, guest, true},
		{`title ~ "planet"`, guest, false},
		{`title !~ "world"`, guest, false},
		{`title !~ "planet"`, guest, true},
		{`title ~ "Hell%"`, guest, true},
		{`title ~ "World%"`, guest, false},
		{`title ~ "%World"`, guest, true},
		{`title ~ "H_llo%"`, guest, true},
		{`pct ~ "100%"`, guest, true},
		{`pct ~ "0\%"`, guest, true},   // escaped %, so "contains 0%"
		{`under ~ "a_b"`, guest, true}, // _ is literal without an unescaped %
		{`axb ~ "a_b"`, guest, false},
		{`title ~ word`, guest, true},              // a field operand keeps its wildcards: %wor%%
		{`title ~ wild`, guest, true},              // ... so _ matches the space
		{`title ~ @request.query.q`, guest, false}, // a parameter is escaped: contains "lo_W"
		{`title ~ empty`, guest, true},             // '%' || '' || '%'
		{`views ~ 4`, guest, true},
		{`verified ~ 1`, guest, true},

		// NULL, missing and empty
		{`nothing = null`, guest, true},
		{`missing = null`, guest, false}, // a field the record lacks: PocketBase refuses the rule
		{`empty = null`, guest, false},   // "" vs NULL: true for a text column, false for a json field holding ""; we cannot tell
		{`empty = ""`, guest, true},
		{`nothing = ""`, guest, false}, // JSON null is a json field: NULL IS '' is false
		{`missing != ""`, guest, false},
		{`status = null`, guest, false},
		{`status != null`, guest, true},
		{`null = ""`, guest, true},
		{`views = null`, guest, false},
		{`missing > 1`, guest, false},
		{`missing < 1`, guest, false},
		{`missing ~ "x"`, guest, false},
		{`missing !~ "x"`, guest, false}, // NULL NOT LIKE is NULL
		{`empty !~ "x"`, guest, true},
		{`title ~ null`, guest, false},
		{`title !~ null`, guest, false},

		// numbers against text
		{`views = "42"`, guest, false}, // number column: true; json field holding 42: false
		{`views = "42.0"`, guest, false},
		{`views = "abc"`, guest, false},
		{`views != "abc"`, guest, true},
		{`views > "abc"`, guest, false},
		{`views < "abc"`, guest, true},    // SQLite: every number sorts before every text
		{`countText = 10`, guest, false},  // a text column compares "10" with the REAL's text "10.0"
		{`countText > 9`, guest, false},   // "10" > "9.0" as text
		{`countText > "9"`, guest, false}, // text against text: text order
		{`code = 7`, guest, false},        // "007" vs "7.0"
		{`code = "7"`, guest, false},
		{`views > @request.query.n`, guest, false}, // true for a number column, false for a json field
		{`@request.query.n = 5`, guest, false},     // text parameter vs REAL parameter: no conversion

		// booleans
		{`verified = true`, guest, true},
		{`verified = false`, guest, false},
		{`verified != true`, guest, false},
		{`draft = false`, guest, true},
		{`draft = true`, guest, false},
		{`verified = 1`, guest, true},
		{`verified = "true"`, guest, false},
		{`verified > 0`, guest, true},
		{`missing = false`, guest, false},

		// arrays: plain operators compare the whole value
		{`tags ~ "cad"`, guest, true},
		{`tags ~ "rust"`, guest, false},
		{`tags !~ "rust"`, guest, true},
		{`tags !~ "go"`, guest, false},
		{`tags = "go"`, guest, false},
		{`tags != "go"`, guest, true},
		{`tags > "a"`, guest, false},
		{`emptyTags = ""`, guest, false}, // multi-valued fields are JSON text: "[]"
		{`emptyTags = null`, guest, false},
		{`emptyTags != ""`, guest, true},
		{`emptyTags ~ "x"`, guest, false},
		{`emptyTags !~ "x"`, guest, true},
		{`tags = tags`, guest, true},
		{`tags = prefixed`, guest, false},

		// the any-of family
		{`tags ?= "go"`, guest, false}, // ?= without :each or a relation is = on the JSON text
		{`tags ?= "rust"`, guest, false},
		{`tags ?= "caddy"`, guest, false},
		{`tags ?!= "go"`, guest, true},
		{`prefixed ?!= "pb_a"`, guest, true},
		{`tags ?~ "ADD"`, guest, true},
		{`tags ?!~ "s"`, guest, false},
		{`prefixed ?!~ "pb"`, guest, false},
		{`tags ?> "r"`, guest, false}, // "[" sorts before "r"
		{`tags ?>= "sse"`, guest, false},
		{`tags ?< "D"`, guest, false},
		{`tags ?<= "A"`, guest, false},
		{`emptyTags ?= "x"`, guest, false},
		{`emptyTags ?= ""`, guest, false},
		{`"go" ?= tags`, guest, false},
		{`items.price ?> 10`, guest, false}, // JSON_EXTRACT(items, '$.price') on an array is NULL
		{`items.price ?= 5`, guest, false},
		{`items.price ?< 1`, guest, false},
		{`status ?= "published"`, guest, true}, // scalars: same as =

		// modifiers
		{`tags:length = 3`, guest, true},
		{`tags:length > 3`, guest, false},
		{`emptyTags:length = 0`, guest, true},
		{`missing:length = 0`, guest, false},
		{`status:length = 1`, guest, false},     // 1 for a single select, "published" for a text field: unknown
		{`tags:lower ?= "caddy"`, guest, false}, // LOWER of the JSON text
		{`title:lower = "hello world"`, guest, true},
		{`title:lower = "Hello World"`, guest, false},
		{`tags:each != "rust"`, guest, true},
		{`tags:each != "go"`, guest, false},
		{`tags:each ?= "sse"`, guest, true},
		{`prefixed:each ~ "pb_%"`, guest, true},
		{`tags:each ~ "pb_%"`, guest, false},
		{`emptyTags:each = ""`, guest, false}, // an empty list under :each: no match (PocketBase's answer varies with the other operand)
		{`emptyTags:each ~ "x"`, guest, false},
		{`status:each = "published"`, guest, false}, // unknown, as :length

		// nested paths and multi-match across arrays of objects
		{`meta.owner.id = "u1"`, guest, true},
		{`meta.level >= 3`, guest, true},
		{`meta.missing.x = null`, guest, true},
		{`meta.owner = null`, guest, false},
		{`meta ~ "owner"`, guest, true},
		{`meta ~ "u1"`, guest, true},
		{`meta ~ "nope"`, guest, false},
		{`items.price > 1`, guest, false},
		{`items.price > 10`, guest, false}, // every element must hold
		{`tags.0 = "go"`, guest, false},    // PocketBase refuses paths into a multi-valued field
		{`tags.5 = null`, guest, false},
		{`status.x = null`, guest, false}, // PocketBase: "status" is not a relation

		// relation ids: rel.id is rel
		{`author.id = "u1"`, guest, true},
		{`author.name = null`, guest, false}, // needs a join: the rule denies
		{`members.id ?= @request.auth.id`, user, true},
		{`members.id ?= @request.auth.id`, guest, false},
		{`members ~ @request.auth.id`, user, true},
		{`members ~ @request.auth.id`, guest, false},
		{`@request.auth.id ?= members`, user, false}, // "u1" vs the JSON text
		{`@request.auth.id ?= members`, env(record, other), false},

		// guests and authenticated subscribers
		{`@request.auth.id = author`, user, true},
		{`@request.auth.id = author`, guest, false},
		{`@request.auth.id = author`, env(record, other), false},
		{`@request.auth.id = author`, env(orphan, nil), false}, // PocketBase: true for a text column, false for a json field; we deny
		{`@request.auth.id != ""`, user, true},
		{`@request.auth.id != ""`, guest, false},
		{`@request.auth.id = ""`, guest, true},
		{`@request.auth.id = ""`, user, false},
		{`@request.auth.id = null`, guest, true},
		{`status = "published" || author = @request.auth.id`, guest, true},
		{`status = "published" || author = @request.auth.id`, env(draft, nil), false},
		{`status = "published" || author = @request.auth.id`, env(draft, authed), true},
		{`status = "published" || author = @request.auth.id`, env(draft, other), false},
		{`@request.auth.id != "" && author = @request.auth.id`, env(orphan, nil), false},
		{`@request.auth.role = "admin"`, user, true},
		{`@request.auth.age > 18`, user, true},
		{`@request.auth.age > 18`, guest, false},
		{`@request.auth.verified = true`, user, true},
		{`@request.auth.verified = true`, guest, false},
		{`@request.auth.id:isset = true`, user, false}, // PocketBase ignores :isset on auth fields: id = 1
		{`@request.auth.id:isset = true`, guest, false},
		{`@request.auth.nope:isset = false`, user, false},
		{`@request.auth.team.id = "t1"`, user, true},
		{`@request.auth.tags:length = 1`, user, true},
		{`@request.auth.collectionName = "users"`, user, true},
		{`@request.auth.email:lower ~ "@X.IO"`, user, true},

		// subscription options
		{`@request.query.token = "abc"`, guest, true},
		{`@request.query.token = "ABC"`, guest, false},
		{`@request.query.missing = ""`, guest, true},
		{`@request.query.missing = null`, guest, true},
		{`@request.query.token:isset = true`, guest, true},
		{`@request.query.missing:isset = false`, guest, true},
		{`@request.query.token.x = null`, guest, true},
		{`@request.headers.x_token = "Secret"`, guest, true},
		{`@request.headers.x_token:lower = "secret"`, guest, true},
		{`@request.headers.x_token:isset = true`, guest, true},
		{`@request.headers.X_Token:isset = true`, guest, false},
		{`@request.query.token = "abc"`, &Env{}, false},

		// request context
		{`@request.context = "realtime"`, guest, true},
		{`@request.context != "oauth2"`, guest, true},
		{`@request.method = "GET"`, guest, true},
		{`@request.method:lower = "get"`, guest, true},
		{`@request.method:isset = true`, guest, true},

		// precedence and grouping: && binds tighter than ||
		{`status = "published" || status = "x" && views > 100`, guest, true},
		{`(status = "published" || status = "x") && views > 100`, guest, false},
		{`status = "draft" && views > 1 || verified = true`, guest, true},
		{`status = "draft" && (views > 1 || verified = true)`, guest, false},
		{`((status = "published")) && ((views = 42) && (price > 1))`, guest, true},
		{`status = "x" || status = "y" || views = 42`, guest, true},
		{`status = "published" && views = 1 && price > 1`, guest, false},

		// literals on both sides
		{`1 = 1`, guest, true},
		{`1 = 2`, guest, false},
		{`"a" = "a"`, guest, true},
		{`1 < 2`, guest, true},
		{`true = 1`, guest, true},
		{`null = null`, guest, true},
		{`null != null`, guest, false},
		{`NULL = ""`, guest, true},

		// macros at 2024-05-06 07:08:09.010 UTC
		{`@year = 2024`, guest, true},
		{`@month = 5`, guest, true},
		{`@day = 6`, guest, true},
		{`@hour = 7`, guest, true},
		{`@minute = 8`, guest, true},
		{`@second = 9`, guest, true},
		{`@weekday = 1`, guest, true},
		{`@now = "2024-05-06 07:08:09.010Z"`, guest, true},
		{`@yesterday = "2024-05-05 07:08:09.010Z"`, guest, true},
		{`@tomorrow = "2024-05-07 07:08:09.010Z"`, guest, true},
		{`@todayStart = "2024-05-06 00:00:00.000Z"`, guest, true},
		{`@todayEnd = "2024-05-06 23:59:59.999Z"`, guest, true},
		{`@monthStart = "2024-05-01 00:00:00.000Z"`, guest, true},
		{`@monthEnd = "2024-05-31 23:59:59.999Z"`, guest, true},
		{`@yearStart = "2024-01-01 00:00:00.000Z"`, guest, true},
		{`@yearEnd = "2024-12-31 23:59:59.999Z"`, guest, true},
		{`created < @now`, guest, true},
		{`created > @yearStart`, guest, false},

		// nothing to look at
		{`status = "published"`, &Env{}, false},
		{`status = ""`, &Env{}, false}, // no record, no field: denied
		{`status = ""`, nil, false},
	}
	for _, tt := range tests {
		r, err := Compile(tt.expr)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.expr, err)
			continue
		}
		if got := r.Eval(tt.env); got != tt.want {
			who := "guest"
			if tt.env != nil && tt.env.Auth != nil {
				who = "auth " + tt.env.Auth["id"].(string)
			}
			t.Errorf("%s (%s, record %v): got %v, want %v", tt.expr, who, idOf(tt.env), got, tt.want)
		}
	}
}

func idOf(env *Env) any {
	if env == nil {
		return nil
	}
	return env.Record["id"]
}

// TestMacrosUseTheClock checks that an unset Env.Now means the real clock.
func TestMacrosUseTheClock(t *testing.T) {
	r := MustCompile(`@year >= 2024 && @now > "2024"`)
	if !r.Eval(&Env{}) {
		t.Fatal("@year and @now must follow time.Now when Env.Now is zero")
	}
}

// TestEvalUnusualValues feeds values a JSON decoder without UseNumber, or a
// careless caller, could produce.
func TestEvalUnusualValues(t *testing.T) {
	rec := map[string]any{
		"f": 42.0, "i": 42, "i64": int64(42), "u": uint(42), "f32": float32(1.5),
		"strs": []string{"a"}, "ch": make(chan int), "nested": map[string]any{"deep": []any{map[string]any{"x": nil}}},
		"bad": json.Number("not a number"),
	}
	tests := []struct {
		expr string
		want bool
	}{
		{`f = 42`, true},
		{`i = 42`, true},
		{`i64 >= 42`, true},
		{`u < 43`, true},
		{`f32 = 1.5`, true},
		{`strs = null`, true}, // not a JSON type: NULL
		{`ch = null`, true},
		{`nested.deep.x = null`, true},
		{`nested.deep.x ?= ""`, false}, // JSON_EXTRACT does not cross arrays: NULL, compared with IS
		{`bad = "not a number"`, true},
	}
	for _, tt := range tests {
		if got := MustCompile(tt.expr).Eval(&Env{Record: rec}); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.expr, got, tt.want)
		}
	}
}

func TestLikeMatch(t *testing.T) {
	tests := []struct {
		s, p string
		wrap bool
		want bool
	}{
		{"hello", "hello", false, true},
		{"hello", "HELLO", false, true},
		{"hello", "hell", false, false},
		{"hello", "hell", true, true},
		{"hello", "%", false, true},
		{"", "%", false, true},
		{"", "", false, true},
		{"", "", true, true},
		{"a", "", false, false},
		{"abc", "a%c", false, true},
		{"abc", "a%%c", false, true},
		{"abc", "a_c", false, true},
		{"ac", "a_c", false, false},
		{"a%c", `a\%c`, false, true},
		{"abc", `a\%c`, false, false},
		{"a_c", `a\_c`, false, true},
		{"abc", `a\_c`, false, false},
		{`a\c`, `a\\c`, false, true},
		{`a\`, `a\`, false, true},
		{"ÉCOLE", "école", false, false}, // non-ASCII is exact, as in SQLite
		{"école", "_cole", false, true},  // _ is one character, not one byte
		{"mississippi", "%iss%ppi", false, true},
		{"mississippi", "m%s_s%i", false, true},
		{"mississippi", "m%x%", false, false},
		{"aaa", "%a%a%a%a%", false, false},
	}
	for _, tt := range tests {
		if got, _ := likeMatch(tt.s, tt.p, tt.wrap, MaxSteps); got != tt.want {
			t.Errorf("likeMatch(%q, %q, %v) = %v, want %v", tt.s, tt.p, tt.wrap, got, tt.want)
		}
	}
}

func TestParamPattern(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "%abc%"},
		{"a_b", `%a\_b%`},
		{`a\b`, `%a\\b%`},
		{"50%", "50%"},
		{`50\%`, `%50\%%`},
		{"_", `%\_%`},
		{"", "%%"},
	}
	for _, tt := range tests {
		if got := paramPattern(tt.in); got != tt.want {
			t.Errorf("paramPattern(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNumericText(t *testing.T) {
	for s, want := range map[string]bool{
		"1": true, "-1": true, "+1.5": true, ".5": true, "5.": true, "1e3": true, "1E-3": true,
		"": false, "-": false, ".": false, "1e": false, "abc": false, "0x10": false, "Inf": false,
		"NaN": false, " 1": false, "1 ": false, "1_000": false, "1.2.3": false,
	} {
		if _, got := numericText(s); got != want {
			t.Errorf("numericText(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestMultiMatchNullIsNeutral follows PocketBase's multi-match SQL: an
// element whose comparison is NULL neither satisfies nor breaks "every".
func TestMultiMatchNullIsNeutral(t *testing.T) {
	rec := decode(t, `{"tags": ["a", "b"], "empty": [], "members": ["u1", "u2"]}`)
	tests := []struct {
		expr string
		want bool
	}{
		{`tags:each != "c"`, true},
		{`tags:each != "a"`, false}, // every element must hold
		{`tags:each ?= "a"`, true},
		{`empty:each = ""`, false}, // an empty list: no match (see evalMany)
		{`empty:each ?= "x"`, false},
		{`members.id = "u1"`, false},
		{`members.id ?= "u1"`, true},
		{`members.id != "u3"`, true},
		{`members.id:each ?= "u2"`, true}, // :each does not apply to the id field
	}
	for _, tt := range tests {
		if got := MustCompile(tt.expr).Eval(&Env{Record: rec}); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.expr, got, tt.want)
		}
	}
}

type panicNode struct{}

func (panicNode) eval(*Env, int) (bool, int) { panic("boom") }

// TestEvalDeniesOnPanic checks the safety net: a bug must deny, not crash.
func TestEvalDeniesOnPanic(t *testing.T) {
	r := &Rule{src: "x", root: panicNode{}}
	if r.Eval(&Env{}) {
		t.Fatal("a panicking rule must deny")
	}
}
