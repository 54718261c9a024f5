package rules

import (
	"encoding/json"
	"strconv"
	"strings"
)

// kind is the type of a value as SQLite would see it.
type kind uint8

const (
	kindNull kind = iota
	kindText
	kindNumber
	kindBool // compares as the number 1 or 0, as SQLite stores booleans
	kindArray
	kindObject
)

// value is an operand's value during evaluation. It is a plain struct so
// that evaluation does not allocate: record values are read in place.
//
// It is kept small (it is copied on every comparison): arrays and objects
// stay in raw as the []any or map[string]any the record holds.
type value struct {
	kind  kind
	lower bool    // :lower applies to text found inside raw as it is read
	num   float64 // numbers; 1 or 0 for booleans
	str   string  // text; for numbers the source text when known (used by LIKE)
	raw   any     // []any for kindArray, map[string]any for kindObject
}

func (v value) arr() []any {
	a, _ := v.raw.([]any)
	return a
}

func (v value) obj() map[string]any {
	m, _ := v.raw.(map[string]any)
	return m
}

// boolValue returns the value of a JSON boolean.
func boolValue(b bool) value {
	if b {
		return trueValue
	}
	return falseValue
}

var (
	nullValue  = value{}
	trueValue  = value{kind: kindBool, num: 1}
	falseValue = value{kind: kindBool}
)

func textValue(s string) value     { return value{kind: kindText, str: s} }
func numberValue(n float64) value  { return value{kind: kindNumber, num: n} }
func (v value) isNull() bool       { return v.kind == kindNull }
func (v value) isStructured() bool { return v.kind == kindArray || v.kind == kindObject }

// fromAny converts a decoded JSON value. Types JSON cannot produce, other
// than Go numbers, are NULL: a rule must not depend on how a caller built its
// map.
func fromAny(v any, lower bool) value {
	switch x := v.(type) {
	case nil:
		return nullValue
	case string:
		if lower {
			x = asciiLower(x)
		}
		return textValue(x)
	case json.Number:
		if n, ok := numericText(string(x)); ok {
			return value{kind: kindNumber, num: n, str: string(x)}
		}
		return textValue(string(x))
	case bool:
		return boolValue(x)
	case []any:
		return value{kind: kindArray, raw: x, lower: lower}
	case map[string]any:
		return value{kind: kindObject, raw: x, lower: lower}
	case float64:
		return numberValue(x)
	case float32:
		return numberValue(float64(x))
	case int:
		return numberValue(float64(x))
	case int64:
		return numberValue(float64(x))
	case int32:
		return numberValue(float64(x))
	case uint:
		return numberValue(float64(x))
	case uint64:
		return numberValue(float64(x))
	case uint32:
		return numberValue(float64(x))
	}
	return nullValue
}

// isEmpty is PocketBase's notion of an empty operand for = and !=: it
// compares COALESCE(x, ”) so NULL, missing and "" are one value. An empty
// array joins them because PocketBase's multi-valued fields are empty when
// they hold no item.
func (v value) isEmpty() bool {
	switch v.kind {
	case kindNull:
		return true
	case kindText:
		return v.str == ""
	case kindArray:
		return len(v.arr()) == 0
	}
	return false
}

// number returns v as a number: numbers and booleans directly, text when it
// is a well-formed decimal number (SQLite's numeric affinity would convert
// it when compared with a numeric column).
func (v value) number() (float64, bool) {
	switch v.kind {
	case kindNumber, kindBool:
		return v.num, true
	case kindText:
		return numericText(v.str)
	}
	return 0, false
}

// text returns v as SQLite would render it for LIKE: numbers by their JSON
// text, booleans as 1 and 0. NULL, arrays and objects have no text here.
func (v value) text() (string, bool) {
	switch v.kind {
	case kindText:
		return v.str, true
	case kindNumber:
		if v.str != "" {
			return v.str, true
		}
		return strconv.FormatFloat(v.num, 'f', -1, 64), true
	case kindBool:
		if v.num != 0 {
			return "1", true
		}
		return "0", true
	}
	return "", false
}

// equal implements = with PocketBase's semantics: empty operands are equal
// to each other and to nothing else; numbers (and numeric text against a
// number) compare numerically, text as exact bytes, arrays and objects
// element by element. It never reports NULL: PocketBase builds = and != with
// COALESCE and IS / IS NOT, so they are always true or false.
func equal(a, b value) bool {
	ae, be := a.isEmpty(), b.isEmpty()
	if ae || be {
		return ae && be
	}
	switch {
	case a.kind == kindArray || b.kind == kindArray:
		return a.kind == b.kind && equalArrays(a, b)
	case a.kind == kindObject || b.kind == kindObject:
		return a.kind == b.kind && equalObjects(a, b)
	case a.kind == kindText && b.kind == kindText:
		return a.str == b.str
	}
	x, okA := a.number()
	y, okB := b.number()
	return okA && okB && x == y
}

func equalArrays(a, b value) bool {
	x, y := a.arr(), b.arr()
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !equal(fromAny(x[i], a.lower), fromAny(y[i], b.lower)) {
			return false
		}
	}
	return true
}

func equalObjects(a, b value) bool {
	m, n := a.obj(), b.obj()
	if len(m) != len(n) {
		return false
	}
	for k, x := range m {
		y, ok := n[k]
		if !ok || !equal(fromAny(x, a.lower), fromAny(y, b.lower)) {
			return false
		}
	}
	return true
}

// compare orders a and b for < <= > >=. ok is false when SQL would answer
// NULL or when the types cannot be ordered in a way SQLite users expect
// (text against a number, arrays, objects): the comparison is then false.
func compare(a, b value) (c int, ok bool) {
	if a.isNull() || b.isNull() || a.isStructured() || b.isStructured() {
		return 0, false
	}
	if a.kind == kindText && b.kind == kindText {
		return strings.Compare(a.str, b.str), true
	}
	x, okA := a.number()
	y, okB := b.number()
	if !okA || !okB {
		return 0, false
	}
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}

// numericText parses s when it is a plain decimal number: an optional sign,
// digits with an optional fraction, an optional exponent. Hex, Inf, NaN,
// underscores and surrounding spaces are refused, so that "1_000" or "0x10"
// stay text. Validating first also keeps strconv from allocating an error.
func numericText(s string) (float64, bool) {
	i, n := 0, len(s)
	if i < n && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < n && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < n && s[i] == '.' {
		i++
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < n && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return 0, false
		}
	}
	if i != n {
		return 0, false
	}
	f, _ := strconv.ParseFloat(s, 64) // out of range gives ±Inf, which orders correctly
	return f, true
}

// asciiLower lowercases ASCII letters only, as SQLite's LOWER() does without
// ICU. It allocates only when s has an upper-case ASCII letter.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}
