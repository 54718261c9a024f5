package rules

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ganigeorgiev/fexpr"
)

// Error is a refused expression: what was wrong and where, so that a bad
// rule fails configuration loading with a message a person can act on.
type Error struct {
	Expr string // the whole expression
	Pos  int    // byte offset of the problem in Expr, from 0
	Msg  string
}

// Error quotes the expression in full when it is short, as rules are; a
// long one (a hostile filter option) is cut so that logs stay readable.
func (e *Error) Error() string {
	expr := e.Expr
	if len(expr) > maxQuoted {
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(expr[cut]) {
			cut--
		}
		expr = expr[:cut] + "…"
	}
	return fmt.Sprintf("rule %q: %s at position %d", expr, e.Msg, e.Pos)
}

const maxQuoted = 200

// maxDepth bounds parenthesis nesting. Real rules nest a few levels; the
// limit keeps hostile input from recursing deep (filters can come from
// subscription options).
const maxDepth = 64

// Compile parses a PocketBase filter/rule expression. The empty string
// compiles to a rule that allows everyone (PocketBase's "" rule). Anything
// else must parse with fexpr, PocketBase's parser, and use only identifiers
// that can be answered without a database: record fields, @request.auth.*,
// @request.query.*, @request.headers.*, @request.context, @request.method
// and the @now-style datetime macros. An expression of only spaces or
// comments is refused: only "" means everyone. Errors are of type *Error,
// with the byte offset of the problem.
//
// The parser is stricter than fexpr where fexpr silently drops input: a
// parenthesised group directly after an operand or an operator (as in
// `a (b = 1)`, which fexpr reads as `(b = 1)`) is refused.
func Compile(expr string) (*Rule, error) {
	r := &Rule{src: expr}
	if expr == "" {
		return r, nil
	}
	// fexpr's scanner stops at a NUL byte, which would silently drop the rest
	// of a rule; no control character belongs in one.
	for i := 0; i < len(expr); i++ {
		if c := expr[i]; (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f {
			return nil, &Error{Expr: expr, Pos: i, Msg: fmt.Sprintf("control character %q", c)}
		}
	}
	p := &parser{lexer: lexer{src: expr, data: []byte(expr)}, rule: r}
	root, err := p.parse(0, len(expr), 0)
	if err != nil {
		return nil, err
	}
	// fexpr stays the authority on the grammar: what it refuses, we refuse.
	if _, ferr := fexpr.Parse(expr); ferr != nil {
		return nil, &Error{Expr: expr, Pos: 0, Msg: ferr.Error()}
	}
	r.root = root
	return r, nil
}

// MustCompile is Compile for expressions known to be valid; it panics on
// error.
func MustCompile(expr string) *Rule {
	r, err := Compile(expr)
	if err != nil {
		panic(err)
	}
	return r
}

type parser struct {
	lexer
	rule *Rule
}

// parse states, as in fexpr.Parse.
const (
	wantLeft = iota
	wantOp
	wantRight
	wantJoin
)

// parse compiles src[from:to]; depth > 0 means it is the inside of a
// parenthesised group. && binds tighter than ||, as in the SQL that
// PocketBase generates.
func (p *parser) parse(from, to, depth int) (node, error) {
	if depth > maxDepth {
		return nil, p.errorf(from-1, "parentheses nested deeper than %d levels", maxDepth)
	}
	toks, lerr := p.lex(from, to)
	if lerr != nil {
		return nil, lerr
	}
	var ors orNode
	var ands andNode
	var left, op token
	state := wantLeft
	for _, t := range toks {
		switch state {
		case wantLeft:
			switch t.typ {
			case fexpr.TokenGroup:
				n, err := p.parse(t.pos+1, t.end-1, depth+1)
				if err != nil {
					return nil, err
				}
				ands = append(ands, n)
				state = wantJoin
			case fexpr.TokenIdentifier, fexpr.TokenText, fexpr.TokenNumber:
				left = t
				state = wantOp
			case fexpr.TokenFunction:
				return nil, p.functionError(t)
			default:
				return nil, p.errorf(t.pos, "expected a field, text or number but found %s", p.show(t))
			}
		case wantOp:
			if t.typ != fexpr.TokenSign {
				return nil, p.errorf(t.pos, "expected an operator (=, !=, >, >=, <, <=, ~, !~ or their ? forms) but found %s", p.show(t))
			}
			op = t
			state = wantRight
		case wantRight:
			switch t.typ {
			case fexpr.TokenIdentifier, fexpr.TokenText, fexpr.TokenNumber:
				n, err := p.comparison(left, op, t)
				if err != nil {
					return nil, err
				}
				ands = append(ands, n)
				state = wantJoin
			case fexpr.TokenFunction:
				return nil, p.functionError(t)
			default:
				return nil, p.errorf(t.pos, "expected a field, text or number after %s but found %s", op.lit, p.show(t))
			}
		case wantJoin:
			if t.typ != fexpr.TokenJoin {
				return nil, p.errorf(t.pos, "expected && or || but found %s", p.show(t))
			}
			if t.lit == string(fexpr.JoinOr) {
				ors = append(ors, single(ands))
				ands = nil
			}
			state = wantLeft
		}
	}
	if state != wantJoin {
		switch {
		case len(toks) > 0 && depth > 0:
			return nil, p.errorf(to, "unexpected \")\"")
		case len(toks) > 0:
			return nil, p.errorf(to, "unexpected end")
		case depth > 0:
			return nil, p.errorf(from-1, "empty parentheses")
		default:
			return nil, p.errorf(from, "empty expression (use \"\" to allow everyone)")
		}
	}
	ors = append(ors, single(ands))
	if len(ors) == 1 {
		return ors[0], nil
	}
	return ors, nil
}

// single unwraps a one-element conjunction.
func single(ands andNode) node {
	if len(ands) == 1 {
		return ands[0]
	}
	return ands
}

// show renders a token for an error message.
func (p *parser) show(t token) string {
	if t.typ == fexpr.TokenGroup {
		return `"("`
	}
	return strconv.Quote(p.excerpt(t.pos, t.end))
}

func (p *parser) functionError(t token) error {
	return p.errorf(t.pos, "function %s() is not supported in realtime rules", t.lit)
}

// comparison compiles `left op right`.
func (p *parser) comparison(lt, opt, rt token) (node, error) {
	op, anyOp, ok := parseOp(opt.lit)
	if !ok {
		return nil, p.errorf(opt.pos, "invalid operator %q", opt.lit)
	}
	left, err := p.operand(lt)
	if err != nil {
		return nil, err
	}
	right, err := p.operand(rt)
	if err != nil {
		return nil, err
	}
	c := &cmpNode{op: op, anyOf: anyOp, left: left, right: right}
	c.plain = (op == opEq || op == opNeq) && !anyOp && left.isPlain() && right.isPlain()
	// PocketBase binds text and number literals as parameters and builds
	// their LIKE pattern up front; do it once here as well.
	if (op == opLike || op == opNlike) && right.src == srcLiteral && (right.lit.kind == kindText || right.lit.kind == kindNumber) {
		s, _ := right.lit.paramText()
		c.likePat, c.likeLit = paramPattern(s), true
	}
	return c, nil
}

func parseOp(s string) (op cmpOp, anyOp bool, ok bool) {
	if strings.HasPrefix(s, "?") {
		anyOp, s = true, s[1:]
	}
	switch s {
	case "=":
		return opEq, anyOp, true
	case "!=":
		return opNeq, anyOp, true
	case "<":
		return opLt, anyOp, true
	case "<=":
		return opLte, anyOp, true
	case ">":
		return opGt, anyOp, true
	case ">=":
		return opGte, anyOp, true
	case "~":
		return opLike, anyOp, true
	case "!~":
		return opNlike, anyOp, true
	}
	return 0, false, false
}

// operand compiles a literal or an identifier.
func (p *parser) operand(t token) (operand, error) {
	switch t.typ {
	case fexpr.TokenText:
		v := textValue(t.lit)
		v.fl |= flStatic
		return operand{src: srcLiteral, lit: v, litRaw: t.lit, param: true, tok: t}, nil
	case fexpr.TokenNumber:
		// PocketBase binds numbers as float64 (cast.ToFloat64): a REAL.
		f, _ := strconv.ParseFloat(t.lit, 64)
		v := value{kind: kindNumber, fl: flStatic | flReal, num: f}
		return operand{src: srcLiteral, lit: v, litRaw: f, param: true, tok: t}, nil
	}
	return p.identifier(t)
}

// identifier compiles a field path, an @request.* reference, a macro or one
// of the null/true/false literals.
func (p *parser) identifier(t token) (operand, error) {
	name := t.lit
	switch strings.ToLower(name) {
	case "null": // PocketBase's NULL identifier
		return operand{src: srcLiteral, lit: value{fl: flStatic}, tok: t}, nil
	case "true": // the identifier 1
		v := trueValue
		v.fl |= flStatic
		return operand{src: srcLiteral, lit: v, litRaw: true, tok: t}, nil
	case "false": // the identifier 0
		v := falseValue
		v.fl |= flStatic
		return operand{src: srcLiteral, lit: v, litRaw: false, tok: t}, nil
	}
	if m, ok := macros[name]; ok {
		return operand{src: srcMacro, macro: m, param: true, tok: t}, nil
	}

	base, mod, err := p.splitModifier(t)
	if err != nil {
		return operand{}, err
	}
	segs := strings.Split(base, ".")
	o := operand{mod: mod, tok: t}
	o.jsonKey = segs[len(segs)-1]
	if mod != modNone {
		o.jsonKey += modifierNames[mod]
	}

	if !strings.HasPrefix(name, "@") {
		if err := p.checkPath(t, segs); err != nil {
			return operand{}, err
		}
		if mod == modIsset {
			return operand{}, p.errorf(t.pos, "%s: the :isset modifier is only available for @request.* fields", name)
		}
		o.src, o.path = srcRecord, segs
		return o, nil
	}

	switch {
	case segs[0] == "@collection":
		return operand{}, p.errorf(t.pos, "%s: @collection references need a database and are not supported in realtime rules", name)
	case segs[0] != "@request":
		if _, ok := macros[base]; ok {
			return operand{}, p.errorf(t.pos, "%s: modifiers cannot be applied to a macro", name)
		}
		return operand{}, p.errorf(t.pos, "unknown identifier %s: realtime rules support record fields, @request.auth.*, @request.query.*, @request.headers.*, @request.context, @request.method and the datetime macros (@now, @todayStart, ...)", name)
	}

	p.rule.usesRequest = true
	o.param = true
	what := ""
	if len(segs) > 1 {
		what = segs[1]
	}
	switch what {
	case "context", "method":
		if len(segs) != 2 {
			return operand{}, p.errorf(t.pos, "%s: @request.%s has no fields", name, what)
		}
		if mod != modNone && mod != modIsset && mod != modLower {
			return operand{}, p.errorf(t.pos, "%s: only :isset and :lower apply to @request.%s", name, what)
		}
		o.src = srcContext
		if what == "method" {
			o.src = srcMethod
		}
		return o, nil
	case "auth", "query", "headers":
		if len(segs) < 3 {
			return operand{}, p.errorf(t.pos, "%s: name a field, e.g. @request.%s.id", name, what)
		}
		if err := p.checkPath(t, segs[2:]); err != nil {
			return operand{}, err
		}
		o.path = segs[2:]
		if what == "auth" {
			o.src = srcAuth
			o.plainAuth = len(o.path) == 1 && mod == modNone && plainAuthFields[o.path[0]]
			return o, nil
		}
		if mod != modNone && mod != modIsset && mod != modLower {
			return operand{}, p.errorf(t.pos, "%s: only :isset and :lower apply to @request.%s values, which are strings", name, what)
		}
		p.rule.usesOptions = true
		o.src = srcQuery
		if what == "headers" {
			o.src = srcHeaders
		}
		return o, nil
	case "body", "data":
		return operand{}, p.errorf(t.pos, "%s: a realtime subscription has no request body, so @request.%s is not available", name, what)
	}
	return operand{}, p.errorf(t.pos, "unknown identifier %s: the @request fields available in realtime rules are auth.*, query.*, headers.*, context and method", name)
}

// splitModifier separates a trailing `:modifier` from an identifier.
func (p *parser) splitModifier(t token) (string, modifier, error) {
	base, mod, found := strings.Cut(t.lit, ":")
	if !found {
		return base, modNone, nil
	}
	if strings.Contains(mod, ":") || strings.Contains(mod, ".") {
		return "", 0, p.errorf(t.pos, "%s: a modifier can only end an identifier, once", t.lit)
	}
	switch mod {
	case "isset":
		return base, modIsset, nil
	case "length":
		return base, modLength, nil
	case "lower":
		return base, modLower, nil
	case "each":
		return base, modEach, nil
	}
	return "", 0, p.errorf(t.pos, "%s: unknown modifier :%s (supported: :isset, :length, :lower, :each)", t.lit, mod)
}

// checkPath accepts the field names PocketBase accepts: letters, digits and
// underscores, separated by single dots.
func (p *parser) checkPath(t token, segs []string) error {
	for _, s := range segs {
		if s == "" {
			return p.errorf(t.pos, "invalid field path %s: empty segment", t.lit)
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return p.errorf(t.pos, "invalid field name %q in %s", s, t.lit)
			}
		}
	}
	return nil
}
