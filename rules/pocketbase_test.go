package rules

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPocketBaseAnswers pins the answers observed on PocketBase v0.40.4 (with
// TestOracle: the rule set as a collection's listRule, the collection listed
// as a guest and as users) for the semantics that used to differ. pb is what
// PocketBase answered; want is ours, which equals pb except where noted, and
// is never true where pb is false.
func TestPocketBaseAnswers(t *testing.T) {
	// r1, r2, r3 and u1, u2 are the oracle's records and users, trimmed.
	r1 := decode(t, `{"id": "r1", "title": "Hello World", "code": "10", "prio": "10", "note": "", "views": 42, "flag": true,
		"status": "published", "tags": ["go", "Caddy"], "author": "u1", "members": ["u1", "u2"],
		"meta": {"owner": "u1", "shares": [{"user": "u1"}, {"user": "u2"}], "level": 3, "empty": ""},
		"due": "2024-01-01 10:00:00.000Z", "created": "2026-12-01 15:33:10.123Z"}`)
	r2 := decode(t, `{"id": "r2", "title": "", "code": "", "prio": "", "note": "", "views": 0, "flag": false, "status": "",
		"tags": [], "author": "", "members": [], "meta": null, "due": "", "created": "2026-12-01 15:33:10.124Z"}`)
	r3 := decode(t, `{"id": "r3", "title": "abc", "code": "10.0", "prio": "9", "note": "x", "views": -3, "flag": false,
		"status": "10", "tags": ["10"], "author": "u2", "members": ["u3"], "meta": {"owner": "U1", "level": "3"},
		"due": "2099-12-31 23:59:59.000Z", "created": "2026-12-01 15:33:10.125Z"}`)
	u1 := decode(t, `{"id": "u1", "collectionName": "users", "email": "u1@example.com", "verified": true, "name": "Ann",
		"plan": "pro", "banned": false, "level": 5, "roles": ["admin", "editor"], "code": "10"}`)
	u2 := decode(t, `{"id": "u2", "collectionName": "users", "email": "u2@example.com", "verified": false, "name": "Bo_b%",
		"plan": "", "banned": true, "level": 0, "roles": [], "code": ""}`)
	now := time.Date(2026, 12, 1, 15, 40, 0, 0, time.UTC)
	env := func(rec, auth map[string]any) *Env {
		return &Env{Record: rec, Auth: auth, Method: "GET", Context: "default", Now: now}
	}

	tests := []struct {
		expr    string
		env     *Env
		pb      bool // PocketBase v0.40.4
		want    bool // ours
		because string
	}{
		// [] and "": multi-valued fields are stored as JSON text.
		{`tags = ""`, env(r2, nil), false, false, `'[]' is not ''`},
		{`tags != ""`, env(r2, nil), true, true, ""},
		{`tags = null`, env(r2, nil), false, false, ""},
		{`tags = "[]"`, env(r2, nil), true, true, ""},
		{`tags = '["go","Caddy"]'`, env(r1, nil), true, true, ""},
		{`tags ~ ""`, env(r2, nil), true, true, `'[]' LIKE '%%'`},
		{`tags !~ ""`, env(r2, nil), false, false, ""},
		{`tags ~ '"go"'`, env(r1, nil), true, true, "LIKE sees the quotes"},
		{`tags ?= "go"`, env(r1, nil), false, false, "?= on a column is = on its JSON text"},
		{`tags:each ?= "go"`, env(r1, nil), true, true, ""},
		{`tags:length = 0`, env(r2, nil), true, true, ""},
		{`members ?= @request.auth.id`, env(r1, u1), false, false, ""},
		{`members.id ?= @request.auth.id`, env(r1, u1), true, true, ""},
		{`members.id = @request.auth.id`, env(r1, u1), false, false, "every member must be u1"},

		// Numeric-looking text: a text column converts the number literal
		// (a REAL) to text, "10.0", and compares text.
		{`code = 10`, env(r1, nil), false, false, `"10" vs "10.0"`},
		{`code = 10`, env(r3, nil), true, false, `"10.0" vs "10.0"; a json field holding "10.0" would say false, so we deny`},
		{`code != 10`, env(r1, nil), true, true, ""},
		{`prio > 5`, env(r1, nil), false, false, `"10" > "5.0" is false as text`},
		{`prio < 50`, env(r1, nil), true, false, `"10" < "50.0" as text; a json field holding "10" would say false, so we deny`},
		{`views = "42"`, env(r1, nil), true, false, "a number column converts the text; a json field would not: we deny"},
		{`views < "abc"`, env(r1, nil), true, true, "numbers sort before text"},
		{`1 = "1"`, env(r1, nil), false, false, "two parameters: REAL vs TEXT, no conversion"},
		{`@request.auth.level > 4`, env(r1, u1), true, true, ""},
		{`@request.auth.code = 10`, env(r1, u1), false, false, ""},
		{`flag = true`, env(r1, nil), true, true, ""},
		{`flag = "true"`, env(r1, nil), false, false, ""},

		// :isset on @request.auth.* is ignored for users (the field's value
		// is compared with 1 or 0); guests get NULL.
		{`@request.auth.id:isset = true`, env(r1, u1), false, false, `id = 1`},
		{`@request.auth.id:isset = true`, env(r1, nil), false, false, ""},
		{`@request.auth.id:isset = false`, env(r1, nil), false, false, `NULL is neither`},
		{`@request.auth.banned:isset = true`, env(r1, u2), true, true, "banned = 1"},
		{`@request.auth.banned:isset = false`, env(r1, u1), true, true, "banned = 0"},
		{`@request.auth.nope:isset = false`, env(r1, u1), false, false, ""},

		// Guests and empty fields.
		{`@request.auth.id = author`, env(r2, nil), true, false, "a guest and an empty text column; a json field holding \"\" would say false"},
		{`@request.auth.id != ""`, env(r1, nil), false, false, ""},
		{`@request.auth.nope = ""`, env(r1, u1), true, true, "missing @request.auth fields are NULL"},

		// Dates are text in PocketBase's format; RFC 3339 literals compare
		// as text too ('T' sorts after ' ').
		{`due < @now`, env(r1, nil), true, true, ""},
		{`due > @now`, env(r3, nil), true, true, ""},
		{`due > "2024-01-01"`, env(r1, nil), true, true, ""},
		{`due = "2024-01-01 10:00:00.000Z"`, env(r1, nil), true, true, ""},
		{`due = "2024-01-01T10:00:00Z"`, env(r1, nil), false, false, "no date parsing"},
		{`due < "2024-01-01T10:00:00Z"`, env(r1, nil), true, true, `' ' < 'T'`},
		{`due >= @todayStart`, env(r2, nil), false, false, "an empty date is '' and sorts first"},

		// json fields: JSON_EXTRACT, compared with IS; no walking into
		// arrays; a modifier after a sub-path becomes part of the key.
		{`meta.owner = @request.auth.id`, env(r1, u1), true, true, ""},
		{`meta.missing = ""`, env(r1, nil), false, false, "NULL IS ''"},
		{`meta.missing != ""`, env(r1, nil), true, true, ""},
		{`meta.missing = null`, env(r1, nil), true, true, ""},
		{`meta.empty = null`, env(r1, nil), false, false, ""},
		{`meta = ""`, env(r2, nil), false, false, "a null json field IS NOT ''"},
		{`meta.level = 3`, env(r1, nil), true, true, ""},
		{`meta.level = "3"`, env(r1, nil), false, false, "JSON 3 vs text"},
		{`meta.level = 3`, env(r3, nil), false, false, `JSON "3" vs 3`},
		{`meta.shares.user ?= @request.auth.id`, env(r1, u1), false, false, "'$.shares.user' on an array is NULL"},
		{`meta.shares.0.user = @request.auth.id`, env(r1, u1), true, true, ""},
		{`meta.owner:lower = "u1"`, env(r1, nil), false, false, "the path is '$.ownerlower'"},
		{`meta.owner:lower = null`, env(r3, nil), true, true, ""},

		// :length on a text field is ignored by PocketBase (it compares the
		// text); a single select counts 0 or 1. The JSON cannot tell them
		// apart: no match.
		{`title:length > 0`, env(r1, nil), true, false, `"Hello World" > "0.0"`},
		{`status:length = 1`, env(r1, nil), true, false, "1 for a single select"},

		// LIKE with wildcards from @request.auth.*: a parameter, escaped.
		{`title ~ @request.auth.name`, env(r1, u2), false, false, `contains "Bo_b%" literally`},
		{`@request.auth.name ~ "b_"`, env(r1, u2), false, false, `contains "b_" literally`},
		{`@request.auth.name ~ "B%"`, env(r1, u2), true, true, "a % makes it a pattern"},

		// Relation paths other than .id need a join: the rule denies.
		{`author.name = "Ann"`, env(r1, u1), true, false, "needs a join"},
		{`author.name != "x" || status = "published"`, env(r1, nil), true, false, "the whole rule denies"},
		{`author.id = @request.auth.id`, env(r1, u1), true, true, ""},
		{`title.x = ""`, env(r1, nil), false, false, "PocketBase refuses the rule"},
		{`nosuch = "" || status = "published"`, env(r1, nil), false, false, "PocketBase refuses the rule: unknown field"},
	}
	for _, tt := range tests {
		if tt.want && !tt.pb {
			t.Fatalf("%s: the table allows what PocketBase denies", tt.expr)
		}
		r, err := Compile(tt.expr)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.expr, err)
			continue
		}
		if got := r.Eval(tt.env); got != tt.want {
			t.Errorf("%s (record %v): got %v, want %v (PocketBase: %v) %s", tt.expr, tt.env.Record["id"], got, tt.want, tt.pb, tt.because)
		}
	}
}

// TestStepBudget checks that an evaluation stops and denies once it has
// used MaxSteps.
func TestStepBudget(t *testing.T) {
	big := make([]any, 2000)
	for i := range big {
		big[i] = strings.Repeat("a", 50)
	}
	other := slices.Clone(big)
	for i := range other {
		other[i] = strings.Repeat("b", 50)
	}
	rec := map[string]any{"id": "r", "a": big, "b": other, "s": strings.Repeat("a", 100_000)}
	tests := []struct {
		expr string
		want bool
	}{
		{`a:each ?= "x"`, false},             // 2000 steps
		{`a:each != "x"`, true},              // within budget
		{`a:each != b:each`, false},          // 4M pairs: over budget
		{`a:each ?!= b:each`, true},          // the first pair answers
		{`s ~ "%a%a%a%a%a%a%b"`, false},      // backtracking LIKE: over budget
		{`s ~ "a" || a:each = b:each`, true}, // answered before the expensive part
	}
	for _, tt := range tests {
		r := MustCompile(tt.expr)
		start := time.Now()
		got, steps := r.evalSteps(&Env{Record: rec})
		if got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.expr, got, tt.want)
		}
		if steps > MaxSteps {
			t.Errorf("%s: %d steps", tt.expr, steps)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("%s: took %v", tt.expr, d)
		}
	}
}
