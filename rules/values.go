package rules

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// kind is the type of a value as SQLite would see it.
type kind uint8

const (
	kindNull kind = iota
	kindText
	kindNumber
	kindBool   // an integer 1 or 0, as SQLite stores booleans
	kindArray  // JSON text (PocketBase stores multi-valued fields as JSON)
	kindObject // JSON text
)

// affinity is SQLite's column affinity, which decides the conversions made
// before a comparison (https://sqlite.org/datatype3.html#comparisons).
type affinity uint8

const (
	affNone    affinity = iota // bound parameters, function results, JSON_EXTRACT
	affText                    // text, select, relation, date, email... columns
	affNumeric                 // number and bool columns, and the JSON-typed multi-valued columns
)

// value flags.
const (
	// flStrict: compared with IS / IS NOT, not through COALESCE (PocketBase's
	// NullFallbackDisabled, used for json fields): NULL differs from "".
	flStrict uint8 = 1 << iota
	// flStatic: a bound parameter or a constant (literal, macro, @request.*
	// value), whose emptiness PocketBase knows when it builds the SQL.
	flStatic
	// flAmbiguous: a top-level field whose JSON type says string, number or
	// bool; it is a text/number/bool column, unless it is a json field
	// holding a bare scalar. Both readings must agree for a match.
	flAmbiguous
	// flReal: a number stored as REAL, which SQLite renders as text with a
	// decimal point ("10.0").
	flReal
	// flLower: LOWER() applies to the JSON text of raw.
	flLower
	// flBoolParam: a Go bool bound as a parameter; PocketBase renders it as
	// "true"/"false" when it builds a LIKE pattern from it.
	flBoolParam
)

// value is an operand's value during evaluation. It is a plain struct so
// that evaluation does not allocate: record values are read in place, arrays
// and objects stay in raw as the []any or map[string]any the record holds.
type value struct {
	kind kind
	aff  affinity
	fl   uint8
	num  float64 // numbers; 1 or 0 for booleans
	str  string  // text; for numbers the source text when known
	raw  any     // []any for kindArray, map[string]any for kindObject
}

func (v value) has(f uint8) bool { return v.fl&f != 0 }

func (v value) arr() []any {
	a, _ := v.raw.([]any)
	return a
}

func (v value) obj() map[string]any {
	m, _ := v.raw.(map[string]any)
	return m
}

var (
	nullValue  = value{}
	trueValue  = value{kind: kindBool, num: 1}
	falseValue = value{kind: kindBool}
)

func boolValue(b bool) value {
	if b {
		return trueValue
	}
	return falseValue
}

func textValue(s string) value { return value{kind: kindText, str: s} }

// intValue is an INTEGER (JSON_ARRAY_LENGTH, the @second-style macros).
func intValue(n int) value { return value{kind: kindNumber, num: float64(n)} }

func (v value) isNull() bool { return v.kind == kindNull }

// isEmptyParam is PocketBase's check for an empty bound parameter: NULL or
// the empty string (not 0 or false).
func (v value) isEmptyParam() bool {
	return v.kind == kindNull || v.kind == kindText && v.str == ""
}

// numberOf converts a decoded JSON number or a Go number.
func numberOf(x any) (f float64, text string, real bool, ok bool) {
	switch n := x.(type) {
	case json.Number:
		s := string(n)
		f, ok := numericText(s)
		if !ok {
			return 0, "", false, false
		}
		return f, s, strings.ContainsAny(s, ".eE"), true
	case float64:
		return n, "", n != math.Trunc(n), true
	case float32:
		return float64(n), "", float64(n) != math.Trunc(float64(n)), true
	case int:
		return float64(n), "", false, true
	case int64:
		return float64(n), "", false, true
	case int32:
		return float64(n), "", false, true
	case uint:
		return float64(n), "", false, true
	case uint64:
		return float64(n), "", false, true
	case uint32:
		return float64(n), "", false, true
	}
	return 0, "", false, false
}

// fromJSON converts a decoded JSON value as JSON_EXTRACT returns it: strings
// are text, numbers INTEGER or REAL as written, booleans 1 or 0, null NULL,
// arrays and objects their JSON text. No affinity. Types JSON cannot
// produce, other than Go numbers, are NULL: a rule must not depend on how a
// caller built its map.
func fromJSON(v any) value {
	switch x := v.(type) {
	case nil:
		return nullValue
	case string:
		return textValue(x)
	case bool:
		return boolValue(x)
	case []any:
		return value{kind: kindArray, raw: x}
	case map[string]any:
		return value{kind: kindObject, raw: x}
	}
	if f, s, real, ok := numberOf(v); ok {
		val := value{kind: kindNumber, num: f, str: s}
		if real {
			val.fl |= flReal
		}
		return val
	}
	if n, ok := v.(json.Number); ok { // not a number after all: keep the text
		return textValue(string(n))
	}
	return nullValue
}

// stringsOnly reports whether every element of a is a string: how
// PocketBase exports select, relation and file fields with several values.
func stringsOnly(a []any) bool {
	for _, e := range a {
		if _, ok := e.(string); !ok {
			return false
		}
	}
	return true
}

// fromColumn converts a top-level field of a record (or of the auth record)
// as PocketBase exports it, into the value its column holds:
//
//   - a string is a text-like column (text, email, url, editor, date,
//     single select/relation/file), or a json field holding a string;
//   - a number a number column, a bool a bool column, or again a json field;
//   - an array of strings a multi-valued column (JSON text, NUMERIC affinity);
//   - null, an object or an array holding anything else a json field, which
//     PocketBase compares with IS (flStrict).
func fromColumn(v any) value {
	switch x := v.(type) {
	case string:
		return value{kind: kindText, aff: affText, fl: flAmbiguous, str: x}
	case bool:
		val := boolValue(x)
		val.aff, val.fl = affNumeric, flAmbiguous
		return val
	case []any:
		if stringsOnly(x) {
			return value{kind: kindArray, aff: affNumeric, raw: x}
		}
		return value{kind: kindArray, fl: flStrict, raw: x}
	case nil, map[string]any:
		val := fromJSON(v)
		val.fl |= flStrict
		return val
	}
	if f, s, _, ok := numberOf(v); ok {
		// A NUMERIC column stores an integral value as an INTEGER.
		val := value{kind: kindNumber, aff: affNumeric, fl: flAmbiguous, num: f, str: s}
		if f != math.Trunc(f) || math.IsInf(f, 0) {
			val.fl |= flReal
		}
		return val
	}
	val := fromJSON(v) // json.Number that is not a number, or a foreign type
	val.fl |= flStrict
	return val
}

// asJSONScalar is the other reading of an ambiguous column: a json field
// holding that scalar, read with JSON_EXTRACT (no affinity, compared with IS).
func (v value) asJSONScalar() value {
	v.aff = affNone
	v.fl = v.fl&^flAmbiguous | flStrict
	if v.kind == kindNumber && v.str != "" && !strings.ContainsAny(v.str, ".eE") {
		v.fl &^= flReal
	} else if v.kind == kindNumber && v.str != "" {
		v.fl |= flReal
	}
	return v
}

// status is the outcome of comparing two values.
type status uint8

const (
	stOK      status = iota
	stNull           // SQL NULL
	stUnknown        // we cannot tell what SQLite would answer: no match
)

// textOf renders v the way SQLite converts it to text: numbers as SQLite
// prints them, booleans 1 and 0, arrays and objects as their JSON text. ok
// is false for NULL; unknown when the text cannot be known (an object's key
// order, which a decoded map has lost).
func (v value) textOf() (s string, ok, unknown bool) {
	switch v.kind {
	case kindNull:
		return "", false, false
	case kindText:
		return v.str, true, false
	case kindNumber:
		if s, ok := sqliteNumberText(v); ok {
			return s, true, false
		}
		return "", false, true
	case kindBool:
		if v.num != 0 {
			return "1", true, false
		}
		return "0", true, false
	case kindArray, kindObject:
		s, ok := jsonText(v.raw, v.has(flLower))
		if !ok {
			return "", false, true
		}
		return s, true, false
	}
	return "", false, true
}

// sqliteNumberText renders a number as SQLite does: an INTEGER in decimal,
// a REAL with "%!.15g" (always a decimal point: 10.0, 1.0e+20). ok is false
// when 15 significant digits do not hold the value exactly, where SQLite
// versions differ in what they print.
func sqliteNumberText(v value) (string, bool) {
	f := v.num
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return "", false
	}
	if !v.has(flReal) {
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return strconv.FormatInt(int64(f), 10), true
		}
		return "", false
	}
	s := strconv.FormatFloat(f, 'g', 15, 64)
	if g, _ := strconv.ParseFloat(s, 64); g != f {
		return "", false
	}
	mant, exp, hasExp := strings.Cut(s, "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	if hasExp {
		return mant + "e" + exp, true
	}
	return mant, true
}

// paramText is how PocketBase turns a bound parameter into the text of a
// LIKE pattern (cast.ToString): numbers without a needless ".0", Go booleans
// as true/false.
func (v value) paramText() (string, bool) {
	switch v.kind {
	case kindNumber:
		return strconv.FormatFloat(v.num, 'f', -1, 64), true
	case kindBool:
		if v.has(flBoolParam) {
			if v.num != 0 {
				return "true", true
			}
			return "false", true
		}
	}
	s, ok, _ := v.textOf()
	return s, ok
}

// applyAffinity converts operands as SQLite does before comparing them: a
// NUMERIC operand makes numeric-looking text of the other a number; a TEXT
// operand makes a number of the other (without affinity) text. ok is false
// when the text of a number cannot be known.
func applyAffinity(a, b value) (value, value, bool) {
	ok := true
	switch {
	case a.aff == affNumeric && b.aff != affNumeric:
		b = toNumeric(b)
	case b.aff == affNumeric && a.aff != affNumeric:
		a = toNumeric(a)
	case a.aff == affText && b.aff == affNone:
		b, ok = toText(b)
	case b.aff == affText && a.aff == affNone:
		a, ok = toText(a)
	}
	return a, b, ok
}

// toNumeric applies NUMERIC affinity: text that is a well-formed number
// (surrounding spaces allowed) becomes that number.
func toNumeric(v value) value {
	if v.kind != kindText {
		return v
	}
	s := strings.Trim(v.str, " \t\n\r\f\v")
	f, ok := numericText(s)
	if !ok {
		return v
	}
	out := value{kind: kindNumber, num: f, str: s, fl: v.fl &^ flReal}
	if f != math.Trunc(f) {
		out.fl |= flReal
	}
	return out
}

// toText applies TEXT affinity to a number.
func toText(v value) (value, bool) {
	switch v.kind {
	case kindNumber, kindBool:
		s, ok, _ := v.textOf()
		return value{kind: kindText, fl: v.fl, str: s}, ok
	}
	return v, true
}

// class is SQLite's storage class order: NULL < numbers < text.
func class(v value) int {
	switch v.kind {
	case kindNull:
		return 0
	case kindNumber, kindBool:
		return 1
	}
	return 2
}

// compareSQL orders a and b as SQLite's < = > do, after affinity.
func compareSQL(a, b value) (int, status) {
	if a.isNull() || b.isNull() {
		return 0, stNull
	}
	a, b, ok := applyAffinity(a, b)
	if !ok {
		return 0, stUnknown
	}
	ca, cb := class(a), class(b)
	if ca != cb {
		if ca < cb {
			return -1, stOK
		}
		return 1, stOK
	}
	if ca == 1 {
		switch {
		case a.num < b.num:
			return -1, stOK
		case a.num > b.num:
			return 1, stOK
		}
		return 0, stOK
	}
	return compareText(a, b)
}

// compareText compares two text values byte by byte (BINARY collation).
// Arrays and objects are their JSON text; an object's text is only known up
// to its first byte, '{'.
func compareText(a, b value) (int, status) {
	if a.kind == kindObject || b.kind == kindObject {
		x, y := firstByte(a), firstByte(b)
		if x != y {
			if x < y {
				return -1, stOK
			}
			return 1, stOK
		}
		return 0, stUnknown
	}
	if a.kind == kindArray || b.kind == kindArray {
		x, y := firstByte(a), firstByte(b)
		if x != y {
			if x < y {
				return -1, stOK
			}
			return 1, stOK
		}
	}
	s, _, unk := a.textOf()
	t, _, unk2 := b.textOf()
	if unk || unk2 {
		return 0, stUnknown
	}
	return strings.Compare(s, t), stOK
}

// firstByte is the first byte of a text value (-1 when empty).
func firstByte(v value) int {
	switch v.kind {
	case kindArray:
		return '['
	case kindObject:
		return '{'
	}
	if v.str == "" {
		return -1
	}
	return int(v.str[0])
}

// equalSQL is = as PocketBase builds it (resolveEqualExpr): with IS when an
// operand is a json field; directly when an operand is a parameter known not
// to be empty; as "x = ” OR x IS NULL" against an empty parameter;
// otherwise COALESCE(a, ”) = COALESCE(b, ”). != is its negation in every
// case (PocketBase uses IS NOT).
func equalSQL(a, b value) (bool, status) {
	if a.has(flStrict) || b.has(flStrict) {
		if a.isNull() || b.isNull() {
			return a.isNull() && b.isNull(), stOK
		}
		c, st := compareSQL(a, b)
		return c == 0 && st == stOK, st
	}
	aEmpty := a.has(flStatic) && a.isEmptyParam()
	bEmpty := b.has(flStatic) && b.isEmptyParam()
	switch {
	case aEmpty && bEmpty:
		return true, stOK
	case a.has(flStatic) && !aEmpty || b.has(flStatic) && !bEmpty:
		if aEmpty {
			a = textValue("")
		}
		if bEmpty {
			b = textValue("")
		}
		c, st := compareSQL(a, b)
		if st == stNull {
			return false, stOK
		}
		return c == 0 && st == stOK, st
	case aEmpty:
		return isEmptyColumn(b)
	case bEmpty:
		return isEmptyColumn(a)
	}
	// COALESCE(a, '') = COALESCE(b, ''): the function drops the affinity.
	if a.isNull() {
		a = textValue("")
	}
	if b.isNull() {
		b = textValue("")
	}
	a.aff, b.aff = affNone, affNone
	c, st := compareSQL(a, b)
	return c == 0 && st == stOK, st
}

// isEmptyColumn is "x = ” OR x IS NULL".
func isEmptyColumn(v value) (bool, status) {
	if v.isNull() {
		return true, stOK
	}
	c, st := compareSQL(v, textValue(""))
	return c == 0 && st == stOK, st
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

// jsonText renders an array or object as compact JSON text, as PocketBase
// stores multi-valued fields and SQLite's JSON_EXTRACT returns nested
// values. Objects are refused (ok false): a decoded map has lost the key
// order the stored text has.
func jsonText(v any, lower bool) (string, bool) {
	var b strings.Builder
	if !appendJSON(&b, v) {
		return "", false
	}
	if lower {
		return asciiLower(b.String()), true
	}
	return b.String(), true
}

func appendJSON(b *strings.Builder, v any) bool {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		appendJSONString(b, x)
	case json.Number:
		b.WriteString(string(x))
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if !appendJSON(b, e) {
				return false
			}
		}
		b.WriteByte(']')
	default:
		if f, _, _, ok := numberOf(v); ok && !math.IsInf(f, 0) && !math.IsNaN(f) {
			b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
			return true
		}
		return false
	}
	return true
}

// appendJSONString writes s as a JSON string the way Go's encoder does
// without HTML escaping; ok is implied (every string can be written).
func appendJSONString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// plainJSONString reports whether s is written as itself between quotes in
// JSON: no quote, backslash or control character.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return true
}
