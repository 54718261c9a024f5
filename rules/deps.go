package rules

import (
	"slices"
	"strings"
)

// RecordFields lists the top-level record fields the rule reads, sorted. An
// event missing one of them cannot be judged the way PocketBase judges the
// stored row, so callers refuse it (fail closed).
func (r *Rule) RecordFields() []string { return r.fields(srcRecord) }

// AuthFields lists the top-level @request.auth fields the rule reads, sorted.
func (r *Rule) AuthFields() []string { return r.fields(srcAuth) }

// Ref is one field a rule reads: its dot path (without the @request.auth.
// prefix for auth fields) and its modifier ("", "isset", "length", "lower"
// or "each"). Tools that know a collection's schema use it to tell what the
// rule needs beyond the record, such as a relation to expand.
type Ref struct {
	Path     []string
	Modifier string
}

// String is the reference as written, e.g. author.name or tags:each.
func (f Ref) String() string {
	s := strings.Join(f.Path, ".")
	if f.Modifier != "" {
		s += ":" + f.Modifier
	}
	return s
}

// RecordRefs lists the record fields the rule reads, paths and modifiers
// included, in order of appearance, without repeats.
func (r *Rule) RecordRefs() []Ref { return r.refs(srcRecord) }

// AuthRefs lists the @request.auth fields the rule reads, as RecordRefs.
func (r *Rule) AuthRefs() []Ref { return r.refs(srcAuth) }

func (r *Rule) refs(src source) []Ref {
	var out []Ref
	r.walk(func(c *cmpNode) {
		for _, o := range [2]*operand{&c.left, &c.right} {
			if o.src != src || len(o.path) == 0 {
				continue
			}
			f := Ref{Path: slices.Clone(o.path), Modifier: modifierNames[o.mod]}
			if !slices.ContainsFunc(out, func(g Ref) bool { return g.String() == f.String() }) {
				out = append(out, f)
			}
		}
	})
	return out
}

// Expressions is the number of comparisons in the rule (PocketBase refuses
// filters with more than 200).
func (r *Rule) Expressions() int {
	n := 0
	r.walk(func(*cmpNode) { n++ })
	return n
}

func (r *Rule) fields(src source) []string {
	var out []string
	r.walk(func(c *cmpNode) {
		for _, o := range [2]*operand{&c.left, &c.right} {
			if o.src == src && len(o.path) > 0 && !slices.Contains(out, o.path[0]) {
				out = append(out, o.path[0])
			}
		}
	})
	slices.Sort(out)
	return out
}

// walk calls f for every comparison of the rule.
func (r *Rule) walk(f func(*cmpNode)) {
	if r == nil || r.root == nil {
		return
	}
	var visit func(n node)
	visit = func(n node) {
		switch x := n.(type) {
		case andNode:
			for _, c := range x {
				visit(c)
			}
		case orNode:
			for _, c := range x {
				visit(c)
			}
		case *cmpNode:
			f(x)
		}
	}
	visit(r.root)
}
