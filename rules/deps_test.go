package rules

import (
	"slices"
	"testing"
)

func TestRuleDependencies(t *testing.T) {
	for _, tt := range []struct {
		expr         string
		record, auth []string
		n            int
	}{
		{"", nil, nil, 0},
		{"status = 'published' || author = @request.auth.id", []string{"author", "status"}, []string{"id"}, 2},
		{"(meta.owner:lower = @request.auth.email && hidden != true) || @request.auth.plan.tier = 'pro'", []string{"hidden", "meta"}, []string{"email", "plan"}, 3},
		{"@request.query.x = 1 && @now > created", []string{"created"}, nil, 2},
	} {
		r := MustCompile(tt.expr)
		if got := r.RecordFields(); !slices.Equal(got, tt.record) {
			t.Errorf("%q: RecordFields = %v, want %v", tt.expr, got, tt.record)
		}
		if got := r.AuthFields(); !slices.Equal(got, tt.auth) {
			t.Errorf("%q: AuthFields = %v, want %v", tt.expr, got, tt.auth)
		}
		if got := r.Expressions(); got != tt.n {
			t.Errorf("%q: Expressions = %d, want %d", tt.expr, got, tt.n)
		}
	}
	refs := MustCompile("author.name = @request.auth.id && tags:each ?= 'x' && author.name != '' && @request.auth.team.owner = id").RecordRefs()
	var got []string
	for _, f := range refs {
		got = append(got, f.String())
	}
	if want := []string{"author.name", "tags:each", "id"}; !slices.Equal(got, want) {
		t.Errorf("RecordRefs = %v, want %v", got, want)
	}
	if a := MustCompile("@request.auth.team.owner = id").AuthRefs(); len(a) != 1 || a[0].String() != "team.owner" {
		t.Errorf("AuthRefs = %v, want [team.owner]", a)
	}
	var locked *Rule
	if locked.RecordFields() != nil || locked.Expressions() != 0 {
		t.Error("a nil rule reads nothing")
	}
}
