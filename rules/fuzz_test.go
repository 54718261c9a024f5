package rules

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ganigeorgiev/fexpr"
)

var fuzzSeeds = []string{
	``,
	`a = 1`,
	`author = @request.auth.id && status != "draft"`,
	`status = "published" || author = @request.auth.id`,
	`@request.auth.id != "" && (status = "active" || status = "pending")`,
	`allowed_users.id ?= @request.auth.id`,
	`title ~ "Lorem%" && tags:each ~ "pb_%" && tags:length > 1`,
	`meta.owner.id = @request.auth.id && items.price ?> 10`,
	`@request.query.token:isset = true && @request.headers.x_token:lower = "t"`,
	`created >= @todayStart && created <= @todayEnd`,
	`a = "it's \"q\"" // comment` + "\n" + `&& (b != 'x' || c ?!~ -1.5)`,
	`((a = 1) && (b = 2 || (c = null)))`,
	`@collection.users.id ?= author`,
	`a (b = 1)`,
	`geoDistance(a, b, 1, 2) < 3`,
	`(a = "x)"`,
	`a = '\'`,
	"a = \xff",
	`tags.0 = "go" && members ~ @request.auth.id`,
}

// fuzzEnvs are the subscribers and records every compiled rule is tried on.
func fuzzEnvs(t testing.TB) []*Env {
	rec := decode(t, testRecord)
	auth := decode(t, testAuth)
	return []*Env{
		nil,
		{},
		{Record: rec},
		{Record: rec, Auth: auth, Query: map[string]string{"token": "x"}, Headers: map[string]string{"x_token": "T"}, Method: "GET", Context: "realtime", Now: time.Unix(1700000000, 0)},
		{Record: map[string]any{"a": []any{nil, []any{}, map[string]any{}}, "b": map[string]any{"c": []any{map[string]any{"d": json.Number("1e400")}}}}},
	}
}

// FuzzCompile checks that Compile never panics, refuses everything fexpr
// refuses, agrees with fexpr's reading of what both accept, reports
// positions inside the expression, and that the compiled rule evaluates
// without panicking.
func FuzzCompile(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	envs := fuzzEnvs(f)
	f.Fuzz(func(t *testing.T, expr string) {
		r, err := Compile(expr)
		groups, ferr := fexpr.Parse(expr)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error is %T, not *Error: %v", err, err)
			}
			if ce.Pos < 0 || ce.Pos > len(expr) {
				t.Fatalf("position %d outside %q", ce.Pos, expr)
			}
			return
		}
		if expr == "" {
			return
		}
		if ferr != nil {
			t.Fatalf("compiled %q that fexpr refuses: %v", expr, ferr)
		}
		if got, want := dumpNode(r.root), dumpGroups(groups); got != want {
			t.Fatalf("%q: parsed as\n%s\nfexpr reads\n%s", expr, got, want)
		}
		if r.String() != expr {
			t.Fatalf("String() = %q", r.String())
		}
		for _, env := range envs {
			if env == nil {
				env = &emptyEnv
			}
			_, _ = r.root.eval(env, MaxSteps) // no recover: a panic here fails the fuzz run
		}
	})
}

// FuzzEval evaluates rules over arbitrary JSON records and auth records.
func FuzzEval(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, testRecord, testAuth, "x")
	}
	f.Add(`a.b.c ?= 1 && a:each ~ b && a:length = b`, `{"a": [{"b": {"c": [1, "1", null]}}], "b": "%"}`, `{}`, "")
	f.Add(`a = b`, `{"a": [1, [2, {"x": []}]], "b": [1, [2, {"x": []}]]}`, `null`, "q")
	f.Fuzz(func(t *testing.T, expr, record, auth, query string) {
		r, err := Compile(expr)
		if err != nil || r.root == nil {
			return
		}
		env := &Env{
			Record:  decodeLoose(record),
			Auth:    decodeLoose(auth),
			Query:   map[string]string{"token": query, query: query},
			Headers: map[string]string{"x_token": query},
			Method:  query,
			Context: "realtime",
			Now:     time.Unix(int64(len(query))*86400*31, 0),
		}
		first, left := r.root.eval(env, MaxSteps)
		if left <= 0 {
			first = false
		}
		if again, left2 := r.root.eval(env, MaxSteps); again != first && left2 > 0 || left2 != left {
			t.Fatalf("%q: not deterministic", expr)
		}
		if r.Eval(env) != first {
			t.Fatalf("%q: Eval and eval disagree", expr)
		}
		start := time.Now()
		if _, steps := r.evalSteps(env); steps > MaxSteps || steps < 0 {
			t.Fatalf("%q: %d steps", expr, steps)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%q: evaluation took %v", expr, d)
		}
		checkPlainShortcut(t, r.root, env)
	})
}

// TestRandomRulesOnRandomRecords compiles generated rules (the oracle's
// generator) and evaluates each over generated records and auth records:
// no panic, at most MaxSteps, quickly.
func TestRandomRulesOnRandomRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	exprs := randomRules(rng, 500)
	for i, expr := range exprs {
		r := MustCompile(expr)
		for j := 0; j < 5; j++ {
			env := &Env{Record: randomObject(rng, 3), Auth: randomObject(rng, 2), Context: "realtime", Method: "GET"}
			if rng.IntN(4) == 0 {
				env.Auth = nil
			}
			start := time.Now()
			ok, steps := r.evalSteps(env)
			if steps > MaxSteps || steps < 0 {
				t.Fatalf("rule %d %q: %d steps", i, expr, steps)
			}
			if again := r.Eval(env); again != ok {
				t.Fatalf("rule %d %q: not deterministic", i, expr)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("rule %d %q: %v", i, expr, d)
			}
		}
	}
}

// randomObject builds a record with the oracle schema's field names and
// values of any JSON type.
func randomObject(rng *rand.Rand, depth int) map[string]any {
	names := []string{"id", "title", "code", "prio", "note", "views", "score", "flag", "status", "tags", "author",
		"members", "meta", "due", "contact", "created", "plan", "level", "banned", "roles", "prefs", "name", "email",
		"owner", "shares", "user", "list", "level", "empty", "verified"}
	m := map[string]any{}
	for _, n := range names {
		if rng.IntN(5) > 0 {
			m[n] = randomJSON(rng, depth)
		}
	}
	return m
}

func randomJSON(rng *rand.Rand, depth int) any {
	switch k := rng.IntN(9); {
	case k == 0:
		return nil
	case k == 1:
		return rng.IntN(2) == 0
	case k == 2:
		return json.Number(strconv.FormatFloat(rng.NormFloat64()*100, 'g', -1, 64))
	case k == 3:
		return json.Number(strconv.Itoa(rng.IntN(20) - 5))
	case k <= 5 || depth == 0:
		return []string{"", "10", "u00000000000001", "go", "Hello World", "a_b%", "2024-01-01 10:00:00.000Z", "[]", "x\"y"}[rng.IntN(9)]
	case k == 6:
		a := make([]any, rng.IntN(4))
		for i := range a {
			a[i] = []string{"go", "u00000000000001", "", "10"}[rng.IntN(4)]
		}
		return a
	case k == 7:
		a := make([]any, rng.IntN(4))
		for i := range a {
			a[i] = randomJSON(rng, depth-1)
		}
		return a
	}
	return randomObject(rng, depth-1)
}

// checkPlainShortcut checks that every comparison taking the plain-operand
// shortcut answers what the general path answers.
func checkPlainShortcut(t *testing.T, n node, env *Env) {
	switch x := n.(type) {
	case andNode:
		for _, c := range x {
			checkPlainShortcut(t, c, env)
		}
	case orNode:
		for _, c := range x {
			checkPlainShortcut(t, c, env)
		}
	case *cmpNode:
		if !x.plain {
			return
		}
		general := *x
		general.plain = false
		a, _ := x.eval(env, MaxSteps)
		b, _ := general.eval(env, MaxSteps)
		if a != b {
			t.Fatalf("%s: shortcut and general path disagree", dumpNode(x))
		}
	}
}

// decodeLoose decodes a JSON object, or gives nil for anything else.
func decodeLoose(s string) map[string]any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if dec.Decode(&m) != nil {
		return nil
	}
	return m
}

// dumpNode and dumpGroups render a compiled tree and fexpr's AST the same
// way (with && binding tighter than ||), so the fuzzer can compare them.
func dumpNode(n node) string {
	switch x := n.(type) {
	case *cmpNode:
		return dumpToken(x.left.tok.typ, x.left.tok.lit) + " " + opString(x.op, x.anyOf) + " " + dumpToken(x.right.tok.typ, x.right.tok.lit)
	case andNode:
		parts := make([]string, len(x))
		for i, c := range x {
			parts[i] = dumpNode(c)
		}
		return "(" + strings.Join(parts, " && ") + ")"
	case orNode:
		parts := make([]string, len(x))
		for i, c := range x {
			parts[i] = dumpNode(c)
		}
		return "(" + strings.Join(parts, " || ") + ")"
	}
	return "?"
}

func dumpGroups(groups []fexpr.ExprGroup) string {
	var runs [][]string
	for i, g := range groups {
		if i == 0 || g.Join == fexpr.JoinOr {
			runs = append(runs, nil)
		}
		var s string
		switch item := g.Item.(type) {
		case fexpr.Expr:
			s = dumpToken(item.Left.Type, item.Left.Literal) + " " + string(item.Op) + " " + dumpToken(item.Right.Type, item.Right.Literal)
		case []fexpr.ExprGroup:
			s = dumpGroups(item)
		case fexpr.ExprGroup:
			s = dumpGroups([]fexpr.ExprGroup{item})
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], s)
	}
	ors := make([]string, len(runs))
	for i, run := range runs {
		ors[i] = run[0]
		if len(run) > 1 {
			ors[i] = "(" + strings.Join(run, " && ") + ")"
		}
	}
	if len(ors) == 1 {
		return ors[0]
	}
	return "(" + strings.Join(ors, " || ") + ")"
}

func dumpToken(typ fexpr.TokenType, lit string) string { return string(typ) + ":" + lit }

func opString(op cmpOp, anyOp bool) string {
	s := [...]string{opEq: "=", opNeq: "!=", opLt: "<", opLte: "<=", opGt: ">", opGte: ">=", opLike: "~", opNlike: "!~"}[op]
	if anyOp {
		return "?" + s
	}
	return s
}
