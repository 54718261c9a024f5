package pbimport

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/caddy-realtime/realtime/rules"
)

// Options shape the generated block.
type Options struct {
	// PocketBaseURL is where Caddy reaches PocketBase's auth-refresh endpoint.
	PocketBaseURL string
	// AuthCollection is the auth collection whose tokens sign clients in.
	// Default: "users" if there is one, else the first auth collection.
	AuthCollection string
	// Matcher is the realtime directive's matcher. Default: /api/realtime.
	Matcher string
	// Source is named in the header comment, e.g. the PocketBase URL.
	Source string
}

// Skipped is a rule that was written commented out: its collection's rule
// stays unset, which means superusers only.
type Skipped struct {
	Collection string
	Rule       string // list_rule or view_rule
	Reason     string
}

func (s Skipped) String() string { return fmt.Sprintf("%s %s: %s", s.Collection, s.Rule, s.Reason) }

// Result is the generated Caddyfile block and what it could not translate.
type Result struct {
	Caddyfile string
	Skipped   []Skipped
	// AuthCollection is the auth collection the auth url signs in; "" = none.
	AuthCollection string
}

// Caddyfile writes the realtime block for the collections.
func Caddyfile(cols []Collection, opt Options) (*Result, error) {
	if opt.Matcher == "" {
		opt.Matcher = "/api/realtime"
	}
	res := &Result{}
	var authCol *Collection
	var authNames []string
	for i := range cols {
		if cols[i].Type == "auth" && cols[i].Name != "_superusers" {
			authNames = append(authNames, cols[i].Name)
		}
	}
	switch {
	case opt.AuthCollection != "":
		if !slices.Contains(authNames, opt.AuthCollection) {
			return nil, fmt.Errorf("auth collection %q not found; PocketBase's auth collections: %s", opt.AuthCollection, orNone(authNames))
		}
		res.AuthCollection = opt.AuthCollection
	case slices.Contains(authNames, "users"):
		res.AuthCollection = "users"
	case len(authNames) > 0:
		res.AuthCollection = authNames[0]
	}
	for i := range cols {
		if cols[i].Name == res.AuthCollection {
			authCol = &cols[i]
		}
	}

	var b strings.Builder
	w := func(indent int, format string, args ...any) {
		b.WriteString(strings.Repeat("\t", indent))
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	src := opt.Source
	if src == "" {
		src = opt.PocketBaseURL
	}
	w(0, "# Access rules of the PocketBase at %s (%d collections),", src, len(cols))
	w(0, "# written by `caddy realtime import-pocketbase`. Paste it into your site block.")
	w(0, "realtime %s {", caddyToken(opt.Matcher))
	if authCol != nil {
		others := slices.DeleteFunc(slices.Clone(authNames), func(n string) bool { return n == authCol.Name })
		w(1, "# Clients sign in with tokens of the %s collection, checked by PocketBase's auth-refresh.", authCol.Name)
		if len(others) > 0 {
			w(1, "# One auth url per endpoint: tokens of %s are guests here (--auth-collection picks another).", strings.Join(others, ", "))
		}
		w(1, "auth {")
		w(2, "url %s", caddyToken(strings.TrimSuffix(opt.PocketBaseURL, "/")+"/api/collections/"+authCol.Name+"/auth-refresh"))
		w(2, "method POST")
		w(2, "record_path record")
		w(1, "}")
	} else {
		w(1, "# PocketBase has no auth collection besides _superusers: every client is a guest.")
	}
	w(1, "# PocketBase's superusers bypass collection rules. Their tokens authenticate only where the")
	w(1, "# auth url accepts them (a superuser's token gets 403 from another collection's auth-refresh).")
	w(1, "superusers %s", caddyToken("@request.auth.collectionName = '_superusers'"))
	for i := range cols {
		c := &cols[i]
		b.WriteByte('\n')
		if c.Type == "view" {
			w(1, "# %s is a view collection: PocketBase publishes no record events for it.", c.Name)
		}
		w(1, "collection %s {", caddyToken(c.Name))
		for _, r := range []struct {
			label string
			expr  *string
		}{{"list_rule", c.ListRule}, {"view_rule", c.ViewRule}} {
			if r.expr == nil {
				w(2, "# %s: null in PocketBase (superusers only)", r.label)
				continue
			}
			reason := untranslatable(*r.expr, c, authCol)
			if reason == "" {
				w(2, "%s %s", r.label, caddyToken(*r.expr))
				continue
			}
			res.Skipped = append(res.Skipped, Skipped{Collection: c.Name, Rule: r.label, Reason: reason})
			w(2, "# %s left out, so superusers only: %s", r.label, reason)
			for _, line := range strings.Split(r.label+" "+caddyToken(*r.expr), "\n") {
				w(2, "# %s", line)
			}
		}
		var hidden []string
		for _, f := range c.Fields {
			if f.Hidden {
				hidden = append(hidden, caddyToken(f.Name))
			}
		}
		if len(hidden) > 0 {
			w(2, "hidden_fields %s", strings.Join(hidden, " "))
		}
		w(1, "}")
	}
	w(0, "}")
	res.Caddyfile = b.String()
	return res, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// untranslatable says why a rule cannot be enforced without PocketBase's
// database, or returns "" when it can. A rule with a reason is left unset
// (superusers only): failing closed, never open.
func untranslatable(expr string, c, authCol *Collection) string {
	if strings.Contains(expr, "{$") {
		return "it contains {$, which the Caddyfile would replace with an environment variable"
	}
	if strings.Contains(expr, "`") && strings.Contains(expr, `\`) {
		return "it holds both a backtick and a backslash, which one Caddyfile token cannot carry"
	}
	r, err := rules.Compile(expr)
	if err != nil {
		var re *rules.Error
		if errors.As(err, &re) {
			return fmt.Sprintf("%s (at position %d)", re.Msg, re.Pos)
		}
		return err.Error()
	}
	for _, f := range r.RecordRefs() {
		if why := needsDatabase(f, c, c.Name); why != "" {
			return why
		}
	}
	if authCol != nil {
		for _, f := range r.AuthRefs() {
			if why := needsDatabase(f, authCol, "@request.auth"); why != "" {
				return "@request.auth." + why
			}
		}
	}
	return ""
}

// needsDatabase checks one field reference against the collection's schema.
func needsDatabase(f rules.Ref, c *Collection, owner string) string {
	name := f.Path[0]
	fd := c.field(name)
	if fd == nil {
		if owner == "@request.auth" {
			return "" // a field the auth record lacks is null, as in PocketBase
		}
		if strings.Contains(name, "_via_") {
			return fmt.Sprintf("%s reads the back-relation %s, which needs a database", f, name)
		}
		return fmt.Sprintf("%s reads %s, which collection %s does not have", f, name, c.Name)
	}
	switch fd.Type {
	case "relation":
		if len(f.Path) > 2 || len(f.Path) == 2 && f.Path[1] != "id" {
			return fmt.Sprintf("%s expands the relation %s, which needs a database (only %s.id is the record's own value)", f, name, name)
		}
	case "json":
		if f.Modifier == "each" || f.Modifier == "length" || len(f.Path) == 2 && f.Path[1] == "id" {
			return fmt.Sprintf("%s: PocketBase ignores :each, :length and .id on the json field %s, which realtime rules would read as a list of ids", f, name)
		}
	}
	return ""
}

var bareToken = regexp.MustCompile(`^[A-Za-z0-9_./:*@-]+$`)

// caddyToken quotes s as one Caddyfile token: bare when it is a plain word,
// in backticks (no escapes) otherwise, in double quotes when it holds a
// backtick. A double-quoted token keeps backslashes except before a quote,
// so untranslatable refuses rules holding both.
func caddyToken(s string) string {
	switch {
	case s == "":
		return `""`
	case bareToken.MatchString(s) && !strings.HasPrefix(s, "#"):
		return s
	case !strings.Contains(s, "`"):
		return "`" + s + "`"
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
