package rules

import "strconv"

// node is a compiled predicate.
type node interface {
	eval(env *Env) bool
}

// andNode and orNode join predicates. There is no negation in the filter
// syntax, so SQL's NULL can be folded into false at this level without
// changing any answer.
type (
	andNode []node
	orNode  []node
)

func (n andNode) eval(env *Env) bool {
	for _, c := range n {
		if !c.eval(env) {
			return false
		}
	}
	return true
}

func (n orNode) eval(env *Env) bool {
	for _, c := range n {
		if c.eval(env) {
			return true
		}
	}
	return false
}

// tri is SQL's three-valued logic for one comparison. NULL matters inside
// multi-match (a NULL element neither passes nor fails "every element") and
// for !~, which is not the negation of ~ when an operand is NULL.
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triNull
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// cmpOp is a comparison operator without its `?` any-of prefix.
type cmpOp uint8

const (
	opEq cmpOp = iota
	opNeq
	opLt
	opLte
	opGt
	opGte
	opLike
	opNlike
)

// cmpNode is `left op right`.
type cmpNode struct {
	op    cmpOp
	anyOf bool // the `?` family: one matching element is enough
	left  operand
	right operand

	// likePat is the LIKE pattern of a literal right operand, built once.
	likePat string
	likeLit bool

	// plain marks = and != between plain operands (see operand.isPlain),
	// the shape of most ownership rules, which gets a shortcut.
	plain bool
}

func (c *cmpNode) eval(env *Env) bool {
	if c.plain {
		a, b := c.left.plainValue(env), c.right.plainValue(env)
		if x, ok := a.(string); ok {
			if y, ok := b.(string); ok {
				return (x == y) == (c.op == opEq)
			}
		}
		return c.test(fromAny(a, false), fromAny(b, false)) == triTrue
	}
	l := c.left.resolve(env)
	r := c.right.resolve(env)
	if !l.multi && !r.multi && !(c.anyOf && (l.kind == kindArray || r.kind == kindArray)) {
		return c.test(l.value, r.value) == triTrue
	}
	return c.evalMany(&l, &r)
}

// evalMany compares every pair of elements. The any-of family needs one
// pair to hold. A plain operator follows PocketBase's multi-match SQL: some
// pair holds and none fails (NULL results are neutral).
func (c *cmpNode) evalMany(l, r *resolved) bool {
	ln, rn := l.count(c.anyOf), r.count(c.anyOf)
	sawTrue := false
	for i := 0; i < ln; i++ {
		lv := l.at(i, c.anyOf)
		for j := 0; j < rn; j++ {
			switch c.test(lv, r.at(j, c.anyOf)) {
			case triTrue:
				if c.anyOf {
					return true
				}
				sawTrue = true
			case triFalse:
				if !c.anyOf {
					return false
				}
			}
		}
	}
	return sawTrue && !c.anyOf
}

// test applies the operator to two single values.
func (c *cmpNode) test(a, b value) tri {
	switch c.op {
	case opEq:
		return triOf(equal(a, b))
	case opNeq:
		return triOf(!equal(a, b))
	case opLike, opNlike:
		t := c.like(a, b)
		if c.op == opNlike && t != triNull {
			t = triOf(t == triFalse)
		}
		return t
	}
	n, ok := compare(a, b)
	if !ok {
		return triNull
	}
	switch c.op {
	case opLt:
		return triOf(n < 0)
	case opLte:
		return triOf(n <= 0)
	case opGt:
		return triOf(n > 0)
	case opGte:
		return triOf(n >= 0)
	}
	return triNull
}

// like is `a LIKE pattern(b)`.
func (c *cmpNode) like(a, b value) tri {
	var pat string
	var wrap bool
	switch {
	case c.likeLit:
		pat = c.likePat
	default:
		s, ok := b.text()
		if !ok {
			return triNull
		}
		if c.right.param {
			pat = paramPattern(s)
		} else {
			pat, wrap = s, true
		}
	}
	return likeValue(a, pat, wrap)
}

// likeValue matches a against a LIKE pattern. PocketBase keeps arrays and
// objects as JSON text, so LIKE sees their elements, keys and values: here
// one matching element, key or value is a match.
func likeValue(a value, pat string, wrap bool) tri {
	switch a.kind {
	case kindNull:
		return triNull
	case kindArray:
		for _, e := range a.arr() {
			if likeValue(fromAny(e, false), pat, wrap) == triTrue {
				return triTrue
			}
		}
		return triFalse
	case kindObject:
		for k, e := range a.obj() {
			if likeMatch(k, pat, wrap) || likeValue(fromAny(e, false), pat, wrap) == triTrue {
				return triTrue
			}
		}
		return triFalse
	}
	s, _ := a.text()
	return triOf(likeMatch(s, pat, wrap))
}

// source says where an operand's value comes from.
type source uint8

const (
	srcLiteral source = iota
	srcMacro
	srcRecord
	srcAuth
	srcQuery
	srcHeaders
	srcContext
	srcMethod
)

// modifier is a field modifier such as `:length`.
type modifier uint8

const (
	modNone modifier = iota
	modIsset
	modLength
	modLower
	modEach
)

// operand is one side of a comparison, resolved as far as possible at
// compile time: paths are split once, literals converted once.
type operand struct {
	src    source
	mod    modifier
	path   []string
	lit    value
	litRaw any // lit as a JSON value, for the plain-operand shortcut
	macro  macro
	// param marks operands PocketBase binds as SQL parameters (literals,
	// macros, @request.* values) rather than columns; it changes how a
	// right-hand LIKE operand is turned into a pattern.
	param bool
	tok   token
}

// isPlain reports whether the operand is a literal or a top-level record or
// auth field without modifier: its value is one map lookup away.
func (o *operand) isPlain() bool {
	switch o.src {
	case srcLiteral:
		return true
	case srcRecord, srcAuth:
		return len(o.path) == 1 && o.mod == modNone
	}
	return false
}

// plainValue returns the raw JSON value of a plain operand.
func (o *operand) plainValue(env *Env) any {
	switch o.src {
	case srcRecord:
		return env.Record[o.path[0]]
	case srcAuth:
		return env.Auth[o.path[0]]
	}
	return o.litRaw
}

// resolved is an operand's value for one evaluation. When multi is set it
// is a multi-match list (from :each, or a path across an array of objects):
// raw holds the elements and lower applies to them.
type resolved struct {
	value
	multi bool
}

func multiOf(elems []any, lower bool) resolved {
	return resolved{value: value{kind: kindArray, raw: elems, lower: lower}, multi: true}
}

// count is how many values the comparison loops over for this side: the
// elements of a multi-match list, or of an array under a `?` operator.
func (r *resolved) count(anyOp bool) int {
	if r.multi || anyOp && r.kind == kindArray {
		return max(1, len(r.arr()))
	}
	return 1
}

// at returns the i-th value of count. An empty list yields one NULL, as the
// LEFT JOIN on json_each in PocketBase's SQL does.
func (r *resolved) at(i int, anyOp bool) value {
	if r.multi || anyOp && r.kind == kindArray {
		if a := r.arr(); i < len(a) {
			return fromAny(a[i], r.lower)
		}
		return nullValue
	}
	return r.value
}

func (o *operand) resolve(env *Env) resolved {
	switch o.src {
	case srcLiteral:
		return resolved{value: o.lit}
	case srcMacro:
		return resolved{value: macroValue(o.macro, env.Now)}
	case srcContext:
		return o.fromString(env.Context, true)
	case srcMethod:
		return o.fromString(env.Method, true)
	case srcQuery:
		s, ok := lookupString(env.Query, o.path)
		return o.fromString(s, ok)
	case srcHeaders:
		s, ok := lookupString(env.Headers, o.path)
		return o.fromString(s, ok)
	case srcRecord:
		return o.fromMap(env.Record)
	case srcAuth:
		return o.fromMap(env.Auth)
	}
	return resolved{}
}

// fromMap resolves a path in a JSON object. A plain top-level field, by far
// the most common operand, skips the general walk.
func (o *operand) fromMap(m map[string]any) resolved {
	if len(o.path) == 1 && o.mod == modNone {
		return resolved{value: fromAny(m[o.path[0]], false)}
	}
	return o.fromJSON(lookup(m, o.path))
}

// lookupString reads a one-segment path from a string map; longer paths
// cannot exist in it.
func lookupString(m map[string]string, path []string) (string, bool) {
	if len(path) != 1 {
		return "", false
	}
	s, ok := m[path[0]]
	return s, ok
}

func (o *operand) fromString(s string, found bool) resolved {
	switch {
	case o.mod == modIsset:
		return resolved{value: boolValue(found)}
	case !found:
		return resolved{}
	case o.mod == modLower:
		return resolved{value: textValue(asciiLower(s))}
	}
	return resolved{value: textValue(s)}
}

// fromJSON applies the operand's modifier to what a path lookup found: v,
// whether it exists, and whether v is a multi-match []any.
func (o *operand) fromJSON(v any, ok, multi bool) resolved {
	switch o.mod {
	case modNone:
		if multi {
			return multiOf(v.([]any), false)
		}
		return resolved{value: fromAny(v, false)}
	case modLower:
		if multi {
			return multiOf(v.([]any), true)
		}
		return resolved{value: fromAny(v, true)}
	case modIsset:
		return resolved{value: boolValue(ok)}
	case modLength:
		if !multi {
			return resolved{value: numberValue(lengthOf(v))}
		}
		elems := v.([]any)
		out := make([]any, len(elems))
		for i, e := range elems {
			out[i] = lengthOf(e)
		}
		return multiOf(out, false)
	case modEach:
		if !multi {
			if arr, isArr := v.([]any); isArr {
				return multiOf(arr, false)
			}
			return resolved{value: fromAny(v, false)}
		}
		var out []any
		for _, e := range v.([]any) {
			if arr, isArr := e.([]any); isArr {
				out = append(out, arr...)
			} else {
				out = append(out, e)
			}
		}
		return multiOf(out, false)
	}
	return resolved{}
}

// lengthOf is :length. PocketBase applies it to multi-valued fields and
// counts a single non-empty value as one item, an empty one as none.
func lengthOf(v any) float64 {
	switch x := v.(type) {
	case []any:
		return float64(len(x))
	case nil, map[string]any:
		return 0
	case string:
		if x == "" {
			return 0
		}
	}
	return 1
}

// lookup follows path from root; see lookupAny.
func lookup(root map[string]any, path []string) (v any, ok, multi bool) {
	return lookupAny(root, path)
}

// lookupAny follows path through maps. A numeric segment indexes an array;
// any other segment crossing an array continues into every element (PocketBase
// joins multi-valued relations the same way) and the result is a multi-match
// []any, with nil for elements where the path is missing. A string met
// before the last segment is a relation id: only `.id` continues, to the
// string itself, as PocketBase's `rel.id` shortcut. A missing key gives
// ok == false.
func lookupAny(cur any, path []string) (v any, ok, multi bool) {
	for i, seg := range path {
		switch c := cur.(type) {
		case map[string]any:
			next, found := c[seg]
			if !found {
				return nil, false, false
			}
			cur = next
		case []any:
			if idx, isIdx := arrayIndex(seg); isIdx {
				if idx >= len(c) {
					return nil, false, false
				}
				cur = c[idx]
				continue
			}
			out := make([]any, 0, len(c))
			for _, e := range c {
				ev, eok, emulti := lookupAny(e, path[i:])
				switch {
				case emulti:
					out = append(out, ev.([]any)...)
				case eok:
					out = append(out, ev)
				default:
					out = append(out, nil)
				}
			}
			return out, true, true
		case string:
			if seg == "id" && i == len(path)-1 {
				return c, true, false
			}
			return nil, false, false
		default:
			return nil, false, false
		}
	}
	return cur, true, false
}

// arrayIndex parses a path segment made only of digits.
func arrayIndex(seg string) (int, bool) {
	if seg == "" || len(seg) > 9 {
		return 0, false
	}
	for i := 0; i < len(seg); i++ {
		if seg[i] < '0' || seg[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(seg)
	return n, err == nil
}
