package rules

import (
	"maps"
	"strings"
)

// PickFields implements PocketBase's `fields` query option over a record:
// a comma separated list of keys, dot paths into nested objects and arrays of
// objects ("id,title,expand.author.name"), "*" for every key of a level
// ("*,expand.author.name") and the `:excerpt(maxLength, withEllipsis?)`
// modifier, which turns an HTML string into a plain-text excerpt.
//
// It returns a new map and never mutates record; values that are kept whole
// are shared with record, so treat the result as read-only. An empty list
// keeps every key.
//
// As in PocketBase v0.40.4 (tools/picker, and apis/realtime.go, which sends
// the whole record when picking fails; observed on a live server), a list
// PocketBase cannot parse keeps the whole record: an unbalanced quote or
// parenthesis, or any invalid modifier (unknown name, "excerpt" without a
// maximum, a maximum that is not a positive integer, too many arguments),
// even when the other fields are fine. A path is what precedes the first
// ":", untrimmed, so "title :excerpt(5)" names the key "title " (nothing).
// Where PocketBase's choice depends on map order (a key named both whole and
// by a sub-path, "a,a.b") the whole value wins.
func PickFields(record map[string]any, fields string) map[string]any {
	if record == nil {
		return nil
	}
	parsed, ok := parseFields(fields)
	if !ok || len(parsed) == 0 {
		return maps.Clone(record)
	}
	return pickMap(record, parsed)
}

// fieldSet maps a field path to its modifier (nil for none).
type fieldSet map[string]*excerpt

// parseFields parses the list as PocketBase's picker.parseFields: tokens
// split on commas outside parentheses and quotes, each cut at its first ":"
// into a path and a modifier. ok is false when PocketBase would refuse it.
func parseFields(raw string) (fieldSet, bool) {
	tokens, ok := tokenize(raw, ",", false)
	if !ok {
		return nil, false
	}
	out := make(fieldSet, len(tokens))
	for _, f := range tokens {
		path, mod, hasMod := strings.Cut(strings.TrimSpace(f), ":")
		if !hasMod {
			out[path] = nil
			continue
		}
		m, ok := parseModifier(mod)
		if !ok {
			return nil, false
		}
		out[path] = m
	}
	return out, true
}

// tokenWhitespace is the tokenizer's whitespace (trimmed from each token
// unless it is a separator).
const tokenWhitespace = "\t\n\v\f\r \u0085\u00A0"

// tokenize is PocketBase's tools/tokenizer: tokens separated by any rune of
// seps outside quotes ('"`) and, unless ignoreParens, outside parentheses; a
// backslash makes the next rune count as plain text for quotes and
// parentheses; tokens are trimmed of whitespace that is not a separator and
// empty ones dropped. ok is false for an unbalanced quote or parenthesis.
func tokenize(s, seps string, ignoreParens bool) ([]string, bool) {
	cutset := strings.Map(func(r rune) rune {
		if strings.ContainsRune(seps, r) {
			return -1
		}
		return r
	}, tokenWhitespace)
	var tokens []string
	var buf strings.Builder
	var quote, prev rune
	parens := 0
	flush := func() {
		if t := strings.Trim(buf.String(), cutset); t != "" {
			tokens = append(tokens, t)
		}
		buf.Reset()
	}
	for _, r := range s {
		// tools/tokenizer reads runes with bufio.Reader.ReadRune, which
		// turns invalid UTF-8 into U+FFFD; ranging over a string does too.
		if prev != '\\' {
			switch {
			case !ignoreParens && r == '(' && quote == 0:
				parens++
			case !ignoreParens && r == ')' && parens > 0 && quote == 0:
				parens--
			case r == '\'' || r == '"' || r == '`':
				switch quote {
				case r:
					quote = 0
				case 0:
					quote = r
				}
			}
		}
		if strings.ContainsRune(seps, r) && parens == 0 && quote == 0 {
			flush()
			prev = 0
			continue
		}
		prev = r
		buf.WriteRune(r)
	}
	if parens > 0 || quote != 0 {
		return nil, false
	}
	flush()
	return tokens, true
}

// pickMap keeps the keys of data named by fields.
func pickMap(data map[string]any, fields fieldSet) map[string]any {
	if m, ok := fields["*"]; ok {
		// "*" stands for every key of this level that no other field names.
		all := make(fieldSet, len(fields)+len(data))
		maps.Copy(all, fields)
		for k := range data {
			if !namesKey(fields, k) {
				all[k] = m
			}
		}
		fields = all
	}
	out := make(map[string]any, min(len(data), len(fields)))
	for k, v := range data {
		var sub fieldSet
		whole, wholeMod := false, (*excerpt)(nil)
		for f, m := range fields {
			rest, ok := fieldRest(f, k)
			switch {
			case !ok:
			case rest == "":
				whole, wholeMod = true, m
			default:
				if sub == nil {
					sub = fieldSet{}
				}
				sub[rest] = m
			}
		}
		switch {
		case whole:
			out[k] = wholeMod.apply(v)
		case sub != nil:
			out[k] = pickValue(v, sub)
		}
	}
	return out
}

// fieldRest reports whether field f names key k or something inside it, and
// what remains of f below k ("" when f is k itself).
func fieldRest(f, k string) (string, bool) {
	if !strings.HasPrefix(f+".", k+".") {
		return "", false
	}
	return strings.TrimSuffix(strings.TrimPrefix(f+".", k+"."), "."), true
}

func namesKey(fields fieldSet, k string) bool {
	for f := range fields {
		if _, ok := fieldRest(f, k); ok {
			return true
		}
	}
	return false
}

// pickValue continues a path below a key: into an object, or into every
// object of an array whose first element is an object. Other values have
// nothing to pick from and are kept whole, as PocketBase does.
func pickValue(v any, fields fieldSet) any {
	switch x := v.(type) {
	case map[string]any:
		return pickMap(x, fields)
	case []any:
		if len(x) == 0 {
			return x
		}
		if _, ok := x[0].(map[string]any); !ok {
			return x
		}
		out := make([]any, len(x))
		for i, e := range x {
			if m, ok := e.(map[string]any); ok {
				out[i] = pickMap(m, fields)
			} else {
				out[i] = e
			}
		}
		return out
	}
	return v
}
