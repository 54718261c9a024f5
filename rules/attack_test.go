package rules

// Security review: the 100,000-step cap is what keeps a hostile subscription
// filter from stalling a fan-out (the broker evaluates filters with its
// publish lock held, once per distinct auth record and options string).

import (
	"strings"
	"testing"
	"time"
)

// hostileLike is a filter any subscriber may send: a '%' keeps the '_'
// wildcards live (paramPattern), and ~2000 of them force the greedy matcher
// to walk 2000 characters from every starting position of the field before
// failing on '§'. It fits a 2500-byte topic once URL-encoded.
func hostileLike(field string) string {
	return field + " ~ '%" + strings.Repeat("_", 2000) + "§'"
}

// likeMatch used to run to completion before its steps were charged to the
// budget, so one comparison over an ordinary 10 KB text field did ~20 million
// steps (about 0.3 s here), 200 times the cap, and then denied. A subscriber with 16 such variants on each of posts/*, posts,
// pbc_posts/*, pbc_posts and * (max_topic_variants) holds the publish lock
// for ~20 s per event, for everyone.
func TestAttackLikeStepCapBypass(t *testing.T) {
	r := MustCompile(hostileLike("body"))
	env := &Env{Record: map[string]any{"body": strings.Repeat("lorem ipsum dolor sit amet ", 400)}}
	// Calibrate: a capped evaluation (MaxSteps steps of a plain comparison loop).
	start := time.Now()
	ok := r.Eval(env)
	took := time.Since(start)
	if ok {
		t.Fatal("the hostile pattern matched")
	}
	_, steps := r.evalSteps(env)
	if steps > 2*MaxSteps {
		t.Errorf("one LIKE comparison did %d steps (cap %d) in %v before the budget was consulted", steps, MaxSteps, took)
	}
}

// The same shapes on short fields, on JSON arrays and through contains-needle
// matching stay within the cap: the budget is checked per element there.
func TestLikeBudgetPerElement(t *testing.T) {
	long := make([]any, 200)
	for i := range long {
		long[i] = strings.Repeat("ab", 50)
	}
	env := &Env{Record: map[string]any{"tags": long, "title": "short"}}
	for _, expr := range []string{
		"tags ~ '" + strings.Repeat("ab", 40) + "x'",
		"tags:each ~ '" + strings.Repeat("ab", 40) + "x'",
		hostileLike("title"),
	} {
		r := MustCompile(expr)
		ok, steps := r.evalSteps(env)
		if ok || steps > MaxSteps {
			t.Errorf("%.40q: ok=%v steps=%d", expr, ok, steps)
		}
	}
}
