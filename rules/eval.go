package rules

import "strconv"

// MaxSteps is the work one evaluation may do: comparisons, elements
// compared, characters matched by LIKE, JSON text rendered. A rule that
// needs more denies, so that a hostile subscription filter over a large
// record cannot stall a fan-out.
const MaxSteps = 100_000

// aborted is the step count an evaluation returns when it must deny the
// whole rule: PocketBase would refuse the expression (a field the record
// does not have, a path through a text field), or the budget ran out.
const aborted = -1

// node is a compiled predicate. eval gets the steps left and returns the
// steps left after it; at 0 or below the whole rule denies.
type node interface {
	eval(env *Env, left int) (bool, int)
}

// andNode and orNode join predicates. There is no negation in the filter
// syntax, so SQL's NULL can be folded into false at this level without
// changing any answer, and a comparison we cannot decide can be answered
// false: the rule as a whole then allows no more than PocketBase would.
type (
	andNode []node
	orNode  []node
)

func (n andNode) eval(env *Env, left int) (bool, int) {
	for _, c := range n {
		ok, l := c.eval(env, left)
		if left = l; left <= 0 || !ok {
			return false, left
		}
	}
	return true, left
}

func (n orNode) eval(env *Env, left int) (bool, int) {
	for _, c := range n {
		ok, l := c.eval(env, left)
		if left = l; left <= 0 {
			return false, left
		}
		if ok {
			return true, left
		}
	}
	return false, left
}

// tri is the result of one SQL comparison: SQL's three values, plus
// "unknown" for what we cannot tell without the database (counted as no
// match).
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triNull
	triUnknown
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

func triFrom(b bool, st status) tri {
	switch st {
	case stNull:
		return triNull
	case stUnknown:
		return triUnknown
	}
	return triOf(b)
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

// budget counts the steps of one comparison.
type budget struct{ left int }

func (b *budget) spend(n int) bool {
	b.left -= n
	return b.left > 0
}

func (c *cmpNode) eval(env *Env, left int) (bool, int) {
	left--
	if c.plain {
		// Two non-empty strings compare as bytes under every reading
		// (column, json field, parameter).
		if x, ok := c.left.plainValue(env).(string); ok && x != "" {
			if y, ok := c.right.plainValue(env).(string); ok && y != "" {
				return (x == y) == (c.op == opEq), left
			}
		}
	}
	l := c.left.resolve(env)
	r := c.right.resolve(env)
	if l.abort || r.abort {
		return false, aborted
	}
	if l.unknown || r.unknown {
		return false, left
	}
	b := budget{left: left}
	var res tri
	if l.multi || r.multi {
		res = c.evalMany(&l, &r, &b)
	} else {
		res = c.test(l.value, r.value, &b)
	}
	if b.left <= 0 {
		return false, aborted
	}
	return res == triTrue, b.left
}

// evalMany compares the elements of multi-match operands (:each, multiple
// relations) as PocketBase's SQL does. The main query joins each list once,
// so two operands over the same list see the same element row by row, and
// different lists every pair; one true row is enough for the any-of family.
// A plain operator also needs the multi-match subquery to find no failing
// pair (NULL results are neutral); it compares every pair, and the operand
// that is not a list loses its json-field strictness there, as PocketBase
// rebuilds it without its null-fallback preference. An empty list (one
// NULL row from the LEFT JOIN) gives answers we could not reproduce
// reliably: no match.
func (c *cmpNode) evalMany(l, r *resolved, b *budget) tri {
	if l.multi && len(l.arr()) == 0 || r.multi && len(r.arr()) == 0 {
		return triUnknown
	}
	ln, rn := l.count(), r.count()
	zip := l.multi && r.multi && l.sameList(r)
	sawTrue := false
	for i := 0; i < ln && !sawTrue; i++ {
		lv := l.at(i)
		for j := 0; j < rn; j++ {
			if zip && i != j {
				continue
			}
			if !b.spend(1) {
				return triFalse
			}
			if c.test(lv, r.at(j), b) == triTrue {
				sawTrue = true
				break
			}
		}
	}
	if c.anyOf || !sawTrue {
		return triOf(sawTrue)
	}
	for i := 0; i < ln; i++ {
		lv := l.at(i)
		if !l.multi {
			lv.fl &^= flStrict
		}
		for j := 0; j < rn; j++ {
			if !b.spend(1) {
				return triFalse
			}
			rv := r.at(j)
			if !r.multi {
				rv.fl &^= flStrict
			}
			switch c.test(lv, rv, b) {
			case triFalse:
				return triFalse
			case triUnknown:
				return triUnknown
			}
		}
	}
	return triTrue
}

// test applies the operator to two single values. An ambiguous top-level
// field (see fromColumn) must match under both of its readings.
func (c *cmpNode) test(a, b value, bd *budget) tri {
	t := c.test1(a, b, bd)
	if t != triTrue {
		return t
	}
	aAmb, bAmb := a.has(flAmbiguous), b.has(flAmbiguous)
	if aAmb && c.test1(a.asJSONScalar(), b, bd) != triTrue ||
		bAmb && c.test1(a, b.asJSONScalar(), bd) != triTrue ||
		aAmb && bAmb && c.test1(a.asJSONScalar(), b.asJSONScalar(), bd) != triTrue {
		return triUnknown
	}
	return t
}

func (c *cmpNode) test1(a, b value, bd *budget) tri {
	switch c.op {
	case opEq, opNeq:
		eq, st := equalSQL(a, b)
		if st == stUnknown {
			return triUnknown
		}
		return triOf(eq == (c.op == opEq))
	case opLike, opNlike:
		t := c.like(a, b, bd)
		if c.op == opNlike && (t == triTrue || t == triFalse) {
			t = triOf(t == triFalse)
		}
		return t
	}
	n, st := compareSQL(a, b)
	if st != stOK {
		return triFrom(false, st)
	}
	switch c.op {
	case opLt:
		return triOf(n < 0)
	case opLte:
		return triOf(n <= 0)
	case opGt:
		return triOf(n > 0)
	}
	return triOf(n >= 0)
}

// like is `a LIKE pattern ESCAPE '\'`, the pattern built as PocketBase
// builds it: from a bound parameter, "contains" unless it holds an
// unescaped '%'; from anything else (a field, null, true), '%' || b || '%'
// with b's wildcards live.
func (c *cmpNode) like(a, b value, bd *budget) tri {
	var pat string
	var wrap bool
	switch {
	case c.likeLit:
		pat = c.likePat
	case b.has(flStatic) && b.kind != kindNull && (b.kind != kindBool || b.has(flBoolParam)):
		s, _ := b.paramText()
		pat = paramPattern(s)
	default:
		s, ok, unknown := b.textOf()
		if unknown {
			return triUnknown
		}
		if !ok {
			return triNull
		}
		pat, wrap = s, true
	}
	return likeValue(a, pat, wrap, bd)
}

// likeValue matches a's text against a LIKE pattern.
func likeValue(a value, pat string, wrap bool, bd *budget) tri {
	switch a.kind {
	case kindNull:
		return triNull
	case kindArray, kindObject:
		return likeJSON(a, pat, wrap, bd)
	}
	s, ok, unknown := a.textOf()
	if unknown {
		return triUnknown
	}
	if !ok {
		return triNull
	}
	m, steps := likeMatch(s, pat, wrap, bd.left)
	if !bd.spend(steps) {
		return triFalse
	}
	return triOf(m)
}

// likeJSON matches the JSON text of an array or object. A "contains"
// pattern free of wildcards and of JSON punctuation matches inside one key
// or value, whatever the order of an object's keys, so it is tested on them
// one by one without rendering; any other pattern needs the whole text,
// which an object's lost key order makes unknowable.
func likeJSON(a value, pat string, wrap bool, bd *budget) tri {
	if needle, ok := containsNeedle(pat, wrap); ok {
		return triOf(needle == "" || jsonContains(a.raw, needle, bd))
	}
	if a.kind == kindObject {
		return triUnknown
	}
	s, ok, _ := a.textOf()
	if !ok {
		return triUnknown
	}
	if !bd.spend(len(s)) {
		return triFalse
	}
	m, steps := likeMatch(s, pat, wrap, bd.left)
	if !bd.spend(steps) {
		return triFalse
	}
	return triOf(m)
}

// containsNeedle reports whether the pattern means "contains needle" with a
// needle that cannot match across JSON punctuation: '%' + needle + '%' (or
// needle alone when wrapped) with no wildcard, escape, quote, comma, colon,
// bracket or brace.
func containsNeedle(pat string, wrap bool) (string, bool) {
	if !wrap {
		if len(pat) < 2 || pat[0] != '%' || pat[len(pat)-1] != '%' {
			return "", false
		}
		pat = pat[1 : len(pat)-1]
	}
	for i := 0; i < len(pat); i++ {
		switch pat[i] {
		case '%', '_', '\\', '"', ',', ':', '[', ']', '{', '}':
			return "", false
		}
		if pat[i] < 0x20 {
			return "", false
		}
	}
	return pat, true
}

// jsonContains reports whether needle occurs (ASCII case-insensitively) in
// the JSON text of v, as LIKE '%needle%' would find it there.
func jsonContains(v any, needle string, bd *budget) bool {
	if !bd.spend(1) {
		return false
	}
	match := func(s string) bool {
		m, steps := likeMatch(s, needle, true, bd.left)
		bd.spend(steps)
		return m && bd.left > 0
	}
	switch x := v.(type) {
	case string:
		if plainJSONString(x) {
			return match(x)
		}
		s, _ := jsonText([]any{x}, false) // escaped; the needle has no quote or bracket
		return match(s)
	case []any:
		for _, e := range x {
			if jsonContains(e, needle, bd) {
				return true
			}
		}
		return false
	case map[string]any:
		for k, e := range x {
			if jsonContains(k, needle, bd) || jsonContains(e, needle, bd) {
				return true
			}
		}
		return false
	}
	s, ok := jsonText([]any{v}, false)
	return ok && match(s)
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

// modifierNames are the modifiers' source text, which PocketBase keeps
// (without the colon) in a JSON path's last key.
var modifierNames = [...]string{modIsset: "isset", modLength: "length", modLower: "lower", modEach: "each"}

// plainAuthFields are read from the auth record PocketBase holds in memory
// and bound as parameters; other @request.auth fields are columns of the
// user's row, joined.
var plainAuthFields = map[string]bool{
	"id": true, "collectionId": true, "collectionName": true, "email": true, "emailVisibility": true, "verified": true,
}

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
	// macros, @request.* values) rather than columns.
	param bool
	// plainAuth marks @request.auth.<one of plainAuthFields>.
	plainAuth bool
	// jsonKey is the last path segment as PocketBase looks it up inside a
	// json field: with the modifier's name glued on, since it strips the
	// colon and keeps the rest.
	jsonKey string
	tok     token
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
// is a multi-match list (from :each or a multiple relation's ids): raw holds
// the elements, which take elemAff and, with flLower, are lowercased.
type resolved struct {
	value
	multi   bool
	join    uint8 // which join made the list: 1 relation ids, 2 :each
	elemAff affinity
	abort   bool // PocketBase refuses this operand: the whole rule denies
	unknown bool // no telling: the comparison does not match
}

// multiOf makes a multi-match list of elems, a []any held in an interface
// (passing the record's own interface value keeps this from allocating).
func multiOf(elems any, aff affinity, lower bool) resolved {
	r := resolved{value: value{kind: kindArray, raw: elems}, multi: true, elemAff: aff, join: 2}
	if aff == affText {
		r.join = 1
	}
	if lower {
		r.fl |= flLower
	}
	return r
}

// sameList reports whether two multi-match operands read the same list of
// the same record (one join in PocketBase's query).
func (r *resolved) sameList(o *resolved) bool {
	a, b := r.arr(), o.arr()
	return r.join == o.join && len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// count is how many values the comparison loops over for this side.
func (r *resolved) count() int {
	if r.multi {
		return max(1, len(r.arr()))
	}
	return 1
}

// at returns the i-th value of count. An empty list yields one NULL.
func (r *resolved) at(i int) value {
	if !r.multi {
		return r.value
	}
	a := r.arr()
	if i >= len(a) {
		return nullValue
	}
	v := fromJSON(a[i]) // a string: multi-match lists hold strings only
	if r.has(flLower) {
		v.str = asciiLower(v.str)
	}
	v.aff = r.elemAff
	return v
}

func (o *operand) resolve(env *Env) resolved {
	switch o.src {
	case srcLiteral:
		return resolved{value: o.lit}
	case srcMacro:
		v := macroValue(o.macro, env.Now)
		v.fl |= flStatic
		return resolved{value: v}
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
		return o.fromRecord(env.Record, true, env.NoJoins)
	case srcAuth:
		if env.Auth == nil {
			return resolved{value: value{fl: flStatic}} // a guest: NULL, whatever the modifier
		}
		if o.plainAuth {
			return staticOf(env.Auth[o.path[0]])
		}
		return o.fromRecord(env.Auth, false, false)
	}
	return resolved{}
}

// staticOf converts a value PocketBase binds as a parameter.
func staticOf(v any) resolved {
	var out value
	switch x := v.(type) {
	case bool:
		out = boolValue(x)
		out.fl |= flBoolParam
	case []any, map[string]any:
		// PocketBase binds these as JSON text; none of the plain auth
		// fields holds one.
		return resolved{unknown: true}
	default:
		out = fromJSON(v)
		if out.kind == kindNumber {
			out.fl |= flReal // bound as a Go float64
		}
	}
	out.fl |= flStatic
	return resolved{value: out}
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

// fromString is a @request.* string parameter: NULL when missing, TRUE or
// FALSE for :isset.
func (o *operand) fromString(s string, found bool) resolved {
	switch {
	case o.mod == modIsset:
		v := boolValue(found)
		v.fl |= flStatic
		return resolved{value: v}
	case !found:
		return resolved{value: value{fl: flStatic}}
	case o.mod == modLower:
		s = asciiLower(s)
	}
	v := textValue(s)
	v.fl |= flStatic
	return resolved{value: v}
}

// fromRecord resolves a field path of a record or of the auth record, as
// PocketBase's resolver would for the field type the JSON value shows. A
// field missing from a record is PocketBase's "unknown field" error (the
// whole rule denies); from the auth record it is NULL, as PocketBase
// nullifies missing @request.* fields.
func (o *operand) fromRecord(m map[string]any, isRecord, noJoins bool) resolved {
	top, found := m[o.path[0]]
	if !found {
		if isRecord {
			return resolved{abort: true}
		}
		return resolved{value: value{fl: flStatic}}
	}
	if len(o.path) == 1 {
		return o.topModifier(top)
	}
	switch t := top.(type) {
	case string:
		// A single relation: PocketBase's `rel.id` is the column itself.
		// Anything else needs a join (or is an error on a text field).
		if len(o.path) != 2 || o.path[1] != "id" || noJoins {
			return resolved{abort: true}
		}
		col := fromColumn(t)
		col.fl &^= flAmbiguous
		if o.mod == modNone {
			return resolved{value: col}
		}
		// With a modifier PocketBase joins the related record and reads its
		// id field (:length and :each do not apply to a text field): NULL
		// when the relation is empty.
		if t == "" {
			return resolved{value: nullValue}
		}
		if o.mod == modLower {
			return lowerOf(col)
		}
		return resolved{value: col}
	case []any:
		if stringsOnly(t) {
			// A multiple relation: `rel.id` joins every related record;
			// the ids compare as the text column they are. :each and
			// :length on the id field are ignored, as PocketBase does.
			if len(o.path) != 2 || o.path[1] != "id" || noJoins {
				return resolved{abort: true}
			}
			return multiOf(top, affText, o.mod == modLower)
		}
		return o.jsonPath(t)
	case nil, map[string]any:
		return o.jsonPath(t)
	}
	return resolved{abort: true} // a number or bool field has no sub-fields
}

// topModifier applies a modifier to a top-level field.
func (o *operand) topModifier(top any) resolved {
	col := fromColumn(top)
	switch o.mod {
	case modLower:
		return lowerOf(col)
	case modLength, modEach:
		switch t := top.(type) {
		case string:
			// A single select/relation/file counts 0 or 1 and :each is its
			// value; on a text field PocketBase ignores the modifier. The
			// JSON cannot tell which.
			return resolved{unknown: true}
		case []any:
			if !stringsOnly(t) {
				return resolved{value: col} // a json field: ignored
			}
			if o.mod == modLength {
				return resolved{value: intValue(len(t))}
			}
			return multiOf(top, affNone, false)
		}
		// numbers, bools and json fields: PocketBase ignores the modifier.
	}
	return resolved{value: col}
}

// jsonPath follows the rest of the path inside a json field as SQLite's
// JSON_EXTRACT does: digit segments index arrays, other segments name object
// keys, anything else is NULL. The result is compared with IS.
func (o *operand) jsonPath(cur any) resolved {
	rest := o.path[1:]
	for i, seg := range rest {
		if i == len(rest)-1 {
			seg = o.jsonKey
		}
		if idx, isIdx := arrayIndex(seg); isIdx {
			a, ok := cur.([]any)
			if !ok || idx >= len(a) {
				cur = nil
				break
			}
			cur = a[idx]
			continue
		}
		obj, ok := cur.(map[string]any)
		if !ok {
			cur = nil
			break
		}
		cur = obj[seg] // missing: nil
	}
	v := fromJSON(cur)
	v.fl |= flStrict
	return resolved{value: v}
}

// lowerOf is LOWER(v): text (numbers become their text), lowercased in ASCII,
// without affinity; NULL stays NULL.
func lowerOf(v value) resolved {
	switch v.kind {
	case kindNull:
	case kindText:
		v.str = asciiLower(v.str)
	case kindArray, kindObject:
		v.fl |= flLower
	default:
		s, ok, _ := v.textOf()
		if !ok {
			return resolved{unknown: true}
		}
		v.kind, v.str = kindText, s
	}
	v.aff = affNone
	v.fl &^= flReal
	return resolved{value: v}
}

// arrayIndex parses a path segment made only of digits.
func arrayIndex(seg string) (int, bool) {
	if seg == "" || len(seg) > 18 {
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
