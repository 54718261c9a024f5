// Package rules compiles PocketBase API rules and filters (the filter syntax
// parsed by github.com/ganigeorgiev/fexpr, PocketBase's own parser) and
// evaluates them in memory against a JSON record, the subscriber's auth record
// and its subscription options.
//
// PocketBase turns a rule into SQL and asks SQLite. A realtime hub has no
// database and no schema, so this package reproduces what that SQL answers
// for one record as PocketBase exports it, reading each field's type from its
// JSON. The answers are held against a real PocketBase v0.40.4 (oracle_test.go;
// testdata/oracle.json replays them). Where the answer cannot be known the
// comparison does not match: the filter syntax has no negation, so a
// comparison answered false can only make a rule deny more, never allow what
// PocketBase denies.
//
//   - Field types from JSON. A string is a text-like column (text, email,
//     date, single select/relation/file), a number a number column, a bool a
//     bool column (1/0), an array of strings a multi-valued column (select,
//     relation, file: JSON text such as `["a","b"]`), null, an object or any
//     other array a json field. A json field can also hold a bare string,
//     number or bool; where the two readings would answer differently (text
//     against a number, "" against NULL) the comparison does not match.
//   - Comparisons follow SQLite: column affinity (a text column turns a number
//     literal into its text, "10.0", and compares text; a number column turns
//     numeric text into a number; two parameters are never converted, so
//     `1 = "1"` is false), numbers sort before text, text compares byte by
//     byte. `=`/`!=` follow PocketBase's null handling: NULL and "" are equal
//     for columns and parameters (COALESCE), but json-field values compare
//     with IS (a missing key is not ""). `<`, `~` and the rest are false
//     against NULL; `!~` is not the negation of `~` there.
//   - Multi-valued columns are their JSON text: `tags = ""` is false for `[]`,
//     `tags ~ "go"` searches the text, and `?=` on a column is plain `=`.
//     `:each` and a multiple relation's `.id` give one value per element:
//     a plain operator must hold for every element, a `?` operator for one.
//     An empty list under them does not match.
//   - `:length` counts a multi-valued field's items; `:each`/`:length` on a
//     string (a text field ignores them, a single select counts 0 or 1) do
//     not match. `:lower` is SQLite's ASCII LOWER().
//   - json-field paths are JSON_EXTRACT: digits index arrays, a path does not
//     walk into an array of objects (`meta.shares.user` is NULL), and a
//     modifier after a sub-path is part of the key (`meta.owner:lower` reads
//     "ownerlower").
//   - Relations: `x.id` is the relation's id, `members.id` every id of a
//     multiple relation. Any other path through a string or an array of
//     strings (`author.name`) needs a join, and a path through a number or
//     bool, or a record field the record lacks, is an error in PocketBase: the
//     whole rule denies. Reading `x.id` (and `:each`/`:length` on an array of
//     strings) assumes x is a relation (multi-valued) field: a json field
//     holding a string or an array of strings is read the same way, which is
//     the one place where the JSON alone cannot tell us what PocketBase does.
//   - @request.auth: id, collectionId, collectionName, email, emailVisibility
//     and verified are parameters; other fields are columns of the user's row
//     (missing ones are NULL). For a guest everything is NULL. `:isset` on
//     @request.auth.* is ignored, as PocketBase ignores it (the field's value
//     is compared); on @request.query/headers/context/method it is true or
//     false. `~` with a parameter on the right (literal, @request.*) means
//     "contains" with `_`, `%` and `\` escaped, unless it has an unescaped
//     `%`; with a field on the right, the field's wildcards are live.
//   - Dates are text: PocketBase's "2006-01-02 15:04:05.000Z" format, as the
//     @now-style macros produce; RFC 3339 text compares as text.
//   - Cost: one evaluation may take MaxSteps steps (comparisons, elements,
//     LIKE characters); past that the rule denies.
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

	// NoJoins makes a relation path (`rel.id`) deny the whole expression.
	// PocketBase joins the related records of a client's filter under the
	// client's view of their collection, which needs a database: set it for
	// subscription filters of non-superusers.
	NoJoins bool

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
	ok, _ = r.evalSteps(env)
	return ok
}

// evalSteps evaluates the rule and reports how many steps of MaxSteps it
// used (all of them when it ran out or was aborted).
func (r *Rule) evalSteps(env *Env) (ok bool, steps int) {
	defer func() {
		if recover() != nil {
			ok, steps = false, MaxSteps
		}
	}()
	ok, left := r.root.eval(env, MaxSteps)
	if left <= 0 {
		return false, MaxSteps
	}
	return ok, MaxSteps - left
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
