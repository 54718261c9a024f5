package rules

import "slices"

// RecordFields lists the top-level record fields the rule reads, sorted. An
// event missing one of them cannot be judged the way PocketBase judges the
// stored row, so callers refuse it (fail closed).
func (r *Rule) RecordFields() []string { return r.fields(srcRecord) }

// AuthFields lists the top-level @request.auth fields the rule reads, sorted.
func (r *Rule) AuthFields() []string { return r.fields(srcAuth) }

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
