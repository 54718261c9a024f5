package broker

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeOptions reads a topic's options JSON the way PocketBase v0.40.4 does:
// encoding/json/v2 unmarshalling into struct{Query, Headers map[string]any},
// then spf13/cast's ToString on every value. Observed on PocketBase v0.40.4
// (tools/subscriptions run on hundreds of inputs; see topics_test.go):
//
//   - member names are case-sensitive ("Query" is an unknown field) and
//     unknown members are skipped;
//   - decoding stops at the first error (bad syntax, a duplicate name,
//     invalid UTF-8, a lone surrogate, nesting deeper than 10000, a number
//     out of range, "query" or "headers" not an object), and what was decoded
//     before it is kept: `{"query":{"filter":"a=1"}` (no closing brace) still
//     filters. A query/headers entry whose value failed is kept as "" (as "0"
//     for a number out of range);
//   - trailing data after the object is ignored;
//   - strings stay strings, numbers are formatted without exponent
//     (strconv 'f', -1), booleans are "true"/"false", and null, arrays and
//     objects become "".
//
// The results are nil when nothing was decoded into them.
func decodeOptions(data []byte) (query, headers map[string]string) {
	d := &optDecoder{b: data}
	d.ws()
	if d.eof() || d.b[d.i] != '{' {
		return nil, nil // null, another type or invalid: nothing
	}
	d.i++
	d.depth = 1
	seen := map[string]bool{}
	for first := true; ; first = false {
		d.ws()
		if d.eof() {
			return
		}
		if !first {
			if d.b[d.i] != ',' {
				return // '}' ends the object; anything else is an error
			}
			d.i++
			d.ws()
		} else if d.b[d.i] == '}' {
			return
		}
		name, ok := d.str()
		if !ok || seen[name] {
			return
		}
		seen[name] = true
		if !d.colon() {
			return
		}
		switch name {
		case "query", "headers":
			if d.literal("null") {
				continue // a nil map
			}
			if d.eof() || d.b[d.i] != '{' {
				return
			}
			m := map[string]string{}
			if name == "query" {
				query = m
			} else {
				headers = m
			}
			if !d.object(m) {
				return
			}
		default:
			if _, ok := d.value(); !ok {
				return
			}
		}
	}
}

// maxOptionsDepth is json/v2's nesting limit.
const maxOptionsDepth = 10000

type optDecoder struct {
	b     []byte
	i     int
	depth int
}

func (d *optDecoder) eof() bool { return d.i >= len(d.b) }

// ws skips JSON whitespace (space, tab, LF, CR only).
func (d *optDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *optDecoder) colon() bool {
	d.ws()
	if d.eof() || d.b[d.i] != ':' {
		return false
	}
	d.i++
	d.ws()
	return true
}

// object decodes the members of an object into m (m == nil: validate only).
// d.i is at '{'.
func (d *optDecoder) object(m map[string]string) bool {
	d.i++
	if d.depth++; d.depth > maxOptionsDepth {
		return false
	}
	defer func() { d.depth-- }()
	seen := map[string]bool{}
	for first := true; ; first = false {
		if done, ok := d.element('}', first); done || !ok {
			return ok
		}
		name, ok := d.str()
		if !ok || seen[name] {
			return false
		}
		seen[name] = true
		if !d.colon() {
			if m != nil {
				m[name] = ""
			}
			return false
		}
		v, ok := d.value()
		if m != nil {
			m[name] = v
		}
		if !ok {
			return false
		}
	}
}

func (d *optDecoder) array() bool {
	d.i++
	if d.depth++; d.depth > maxOptionsDepth {
		return false
	}
	defer func() { d.depth-- }()
	for first := true; ; first = false {
		if done, ok := d.element(']', first); done || !ok {
			return ok
		}
		if _, ok := d.value(); !ok {
			return false
		}
	}
}

// element moves to the next member of an object or array closed by end,
// past the ',' that separates members after the first: done once end is
// read, ok false on malformed input.
func (d *optDecoder) element(end byte, first bool) (done, ok bool) {
	d.ws()
	if d.eof() {
		return false, false
	}
	switch c := d.b[d.i]; {
	case c == end:
		d.i++
		return true, true
	case first:
		return false, true
	case c == ',':
		d.i++
		d.ws()
		return false, true
	}
	return false, false
}

// value reads any JSON value and returns it as cast.ToString would.
func (d *optDecoder) value() (string, bool) {
	if d.eof() {
		return "", false
	}
	switch c := d.b[d.i]; {
	case c == '"':
		return d.str()
	case c == '{':
		return "", d.object(nil)
	case c == '[':
		return "", d.array()
	case c == 't':
		return lit(d.literal("true"), "true")
	case c == 'f':
		return lit(d.literal("false"), "false")
	case c == 'n':
		return "", d.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	}
	return "", false
}

func lit(ok bool, s string) (string, bool) {
	if !ok {
		return "", false
	}
	return s, true
}

func (d *optDecoder) literal(lit string) bool {
	if len(d.b)-d.i < len(lit) || string(d.b[d.i:d.i+len(lit)]) != lit {
		return false
	}
	d.i += len(lit)
	return true
}

// number reads the longest JSON number at d.i. A malformed number is "",
// one out of float64's range "0" (json/v2 leaves the zero value), and both
// stop decoding.
func (d *optDecoder) number() (string, bool) {
	start := d.i
	digits := func() int {
		n := 0
		for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.eof():
		return "", false
	case d.b[d.i] == '0':
		d.i++
	case '1' <= d.b[d.i] && d.b[d.i] <= '9':
		digits()
	default:
		return "", false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return "", false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return "", false
		}
	}
	f, err := strconv.ParseFloat(string(d.b[start:d.i]), 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && (f > 1 || f < -1) {
			return "0", false
		}
	}
	return strconv.FormatFloat(f, 'f', -1, 64), true
}

// str reads a JSON string at d.i as json/v2 does by default: valid UTF-8, no
// raw control characters, valid escapes and paired surrogates only.
func (d *optDecoder) str() (string, bool) {
	if d.eof() || d.b[d.i] != '"' {
		return "", false
	}
	d.i++
	var out []byte
	for {
		if d.eof() {
			return "", false
		}
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out), true
		case c < 0x20:
			return "", false
		case c == '\\':
			r, ok := d.escape()
			if !ok {
				return "", false
			}
			out = utf8.AppendRune(out, r)
		case c < utf8.RuneSelf:
			out = append(out, c)
			d.i++
		default:
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size <= 1 {
				return "", false
			}
			out = append(out, d.b[d.i:d.i+size]...)
			d.i += size
		}
	}
}

// escape reads one escape sequence at d.i ('\\').
func (d *optDecoder) escape() (rune, bool) {
	if d.i+1 >= len(d.b) {
		return 0, false
	}
	c := d.b[d.i+1]
	d.i += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	case 'u':
		r, ok := d.hex4()
		if !ok {
			return 0, false
		}
		if !utf16.IsSurrogate(r) {
			return r, true
		}
		if r >= 0xDC00 || d.i+1 >= len(d.b) || d.b[d.i] != '\\' || d.b[d.i+1] != 'u' {
			return 0, false // a lone surrogate
		}
		d.i += 2
		r2, ok := d.hex4()
		if !ok {
			return 0, false
		}
		if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
			return dec, true
		}
		return 0, false
	}
	return 0, false
}

func (d *optDecoder) hex4() (rune, bool) {
	if len(d.b)-d.i < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(n), true
}
