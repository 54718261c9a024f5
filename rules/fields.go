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
// keeps every key. A modifier that PocketBase would reject (unknown name,
// bad arguments) is ignored and the field kept as it is, because a realtime
// message has no way to report the error. Where PocketBase's choice depends
// on map order (a key named both whole and by a sub-path, "a,a.b") the whole
// value wins.
func PickFields(record map[string]any, fields string) map[string]any {
	if record == nil {
		return nil
	}
	parsed := parseFields(fields)
	if len(parsed) == 0 {
		return maps.Clone(record)
	}
	return pickMap(record, parsed)
}

// fieldSet maps a field path to its modifier (nil for none).
type fieldSet map[string]*excerpt

// parseFields splits the list on commas outside parentheses and quotes, as
// PocketBase's tokenizer does.
func parseFields(raw string) fieldSet {
	out := fieldSet{}
	for _, f := range splitTopLevel(raw) {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		path, mod, hasMod := strings.Cut(f, ":")
		path = strings.TrimSpace(path)
		if hasMod {
			out[path] = parseModifier(mod) // nil when invalid: ignored
		} else {
			out[path] = nil
		}
	}
	return out
}

// splitTopLevel splits s on commas that are not inside parentheses or
// quotes.
func splitTopLevel(s string) []string {
	var parts []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			if depth > 0 {
				depth--
			}
		case c == ',' && depth == 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
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
