// Package rules compiles PocketBase API rules and filters (the filter syntax
// parsed by github.com/ganigeorgiev/fexpr, PocketBase's own parser) and
// evaluates them in memory against a JSON record, the subscriber's auth record
// and its subscription options.
//
// PocketBase turns a rule into SQL and asks SQLite. A realtime hub has no
// database, so this package reproduces what that SQL would answer for one
// record held in memory. Where SQL semantics cannot be reproduced exactly the
// choice made is written down next to the code and summarised here:
//
//   - `=` and `!=` follow PocketBase's null handling: NULL, a missing key, ""
//     and an empty array are all "empty" and equal to each other, so
//     `@request.auth.id = ""` holds for a guest and `@request.auth.id != ""`
//     does not. As in PocketBase, a guest therefore passes
//     `@request.auth.id = author` on a record whose author is empty; guard
//     such rules with `@request.auth.id != ""`. PocketBase compares
//     JSON-field paths with IS (where a missing key differs from ""); here
//     every path uses the coalescing rule.
//   - `<`, `<=`, `>`, `>=`, `~` and `!~` with a NULL or missing operand are
//     false (SQL NULL). `!~` is therefore not the negation of `~` for NULL.
//   - Numbers compare numerically. A number compared with text compares
//     numerically when the text is a well-formed decimal number (SQLite's
//     column affinity would coerce it), and otherwise: `=` false, `!=` true,
//     ordering false. Two texts compare as text, byte by byte (BINARY
//     collation), even when both look numeric. JSON booleans are 1 and 0, as
//     SQLite stores them, so `verified = true` and `verified = 1` agree.
//   - `~` is SQLite LIKE with ESCAPE '\': case-insensitive for ASCII letters
//     only. A literal or @request.* right operand without an unescaped `%`
//     means "contains" (its `%`, `_` and `\` are escaped the way PocketBase
//     escapes bound parameters); with a `%` it is used as the pattern. A
//     record-field right operand is wrapped in `%` with its own wildcards
//     live, as in PocketBase's SQL.
//   - Arrays. PocketBase keeps multi-valued fields as JSON text, so a plain
//     operator compares that text. Here `tags ~ "x"` is true when any element
//     contains "x" (an approximation of LIKE over the JSON text), `tags = v`
//     is true only for an equal array (or an empty array against an empty
//     value), and ordering an array is false. The any-of family (`?=`, `?~`,
//     ...) tests every element and succeeds when one matches — what the
//     PocketBase docs promise for multi-valued fields. `:each` and paths that
//     cross an array of objects (`items.price`) use PocketBase's multi-match
//     rule: a plain operator must hold for every element, a `?` operator for
//     at least one. An empty array behaves as a single NULL element, as the
//     LEFT JOIN json_each in PocketBase's SQL does.
//   - Relation traversal needs a database. A path continuing into a string
//     resolves only for `.id` (`author.id` is `author`, `members.id ?= x`
//     works on an array of ids, as PocketBase's "id" shortcut); anything else
//     is NULL. Unknown record fields are NULL instead of an error.
//   - `null`, `true` and `false` are always literals (PocketBase first tries a
//     field of that name).
//   - `:isset` reports whether the key is present, also for guests'
//     @request.auth.* (false); PocketBase answers NULL there, so neither
//     `:isset = true` nor `:isset = false` holds for a guest in PocketBase.
package rules

import "time"

// Rule is a compiled filter expression. It is immutable and safe for
// concurrent use. A nil *Rule is PocketBase's locked (null) rule: it denies
// everyone, and callers let superusers through before asking it.
type Rule struct {
	src  string
	root node // nil: the empty rule, which allows everyone

	usesRequest bool
	usesOptions bool
}

// Env is what a rule is evaluated against: one event record and one
// subscriber. Values are JSON values as decoded with json.Decoder.UseNumber
// (json.Number, string, bool, nil, []any, map[string]any); other Go number
// types are accepted too, anything else counts as NULL.
type Env struct {
	Record  map[string]any    // the event's record
	Auth    map[string]any    // the subscriber's auth record; nil = guest
	Query   map[string]string // subscription options query (values cast to strings)
	Headers map[string]string // subscription options headers, names snake_cased and lowercased
	Method  string            // @request.method, "GET" for realtime
	Context string            // @request.context, "realtime"

	// Now is the clock for the @now-style macros; zero means time.Now().
	// It exists so that tests and replays can pin the time.
	Now time.Time
}

// emptyEnv stands in for a nil *Env; evaluation never writes to an Env.
var emptyEnv Env

// Eval reports whether env satisfies the rule. It never panics: should a bug
// slip through, the rule denies rather than take the server down.
func (r *Rule) Eval(env *Env) (ok bool) {
	if r == nil {
		return false
	}
	if r.root == nil {
		return true
	}
	if env == nil {
		env = &emptyEnv
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return r.root.eval(env)
}

// String returns the source expression.
func (r *Rule) String() string {
	if r == nil {
		return ""
	}
	return r.src
}

// AllowsAll reports whether the rule is the empty expression, which lets
// everyone through without looking at the record.
func (r *Rule) AllowsAll() bool { return r != nil && r.root == nil }

// UsesRequest reports whether the rule references any @request.* identifier.
// PocketBase refuses such expressions as a subscription `filter` option from
// non-superusers, because a client could probe other requests' data.
func (r *Rule) UsesRequest() bool { return r != nil && r.usesRequest }

// UsesOptions reports whether the rule references @request.query.* or
// @request.headers.*, so that its result depends on the subscription's
// options and not only on the subscriber's identity; a cache of results keyed
// by identity alone would then be wrong.
func (r *Rule) UsesOptions() bool { return r != nil && r.usesOptions }

// UsesCollection is always false: Compile refuses @collection.* references,
// which need a database. It mirrors PocketBase's check on `filter` options.
func (r *Rule) UsesCollection() bool { return false }
