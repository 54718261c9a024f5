package rules

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// excerpt is the `:excerpt(max, withEllipsis?)` fields modifier: the plain
// text of an HTML string, cut to about max bytes.
type excerpt struct {
	max      int
	ellipsis bool
}

// parseModifier parses "excerpt(200, true)". PocketBase splits modifiers on
// parentheses, commas and spaces alike, so "excerpt(200 true)" is accepted
// too. It returns nil for anything PocketBase would refuse.
func parseModifier(raw string) *excerpt {
	parts := strings.FieldsFunc(raw, func(r rune) bool {
		return r == '(' || r == ')' || r == ',' || r == ' '
	})
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "excerpt" {
		return nil
	}
	max, ok := parseMaxArg(parts[1])
	if !ok {
		return nil
	}
	e := &excerpt{max: max}
	if len(parts) == 3 {
		e.ellipsis, _ = strconv.ParseBool(parts[2])
	}
	return e
}

// parseMaxArg reads a positive integer; like PocketBase's cast it accepts a
// zero fraction ("200.0").
func parseMaxArg(s string) (int, bool) {
	if i := strings.IndexByte(s, '.'); i >= 0 && strings.Trim(s[i+1:], "0") == "" {
		s = s[:i]
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// excludedTags hold no readable text; inlineTags do not separate words.
var (
	excludedTags = setOf("head", "style", "script", "iframe", "embed", "applet", "object",
		"svg", "img", "picture", "dialog", "template", "button", "form",
		"textarea", "input", "select", "option")
	inlineTags = setOf("a", "abbr", "acronym", "b", "bdo", "big", "br", "button",
		"cite", "code", "em", "i", "label", "q", "small", "span",
		"strong", "strike", "sub", "sup", "time")
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// apply returns the excerpt of v when it is a string; other values (and a
// nil modifier) leave v as it is, as PocketBase does for missing expands.
func (e *excerpt) apply(v any) any {
	s, ok := v.(string)
	if e == nil || !ok {
		return v
	}
	doc, err := html.Parse(strings.NewReader(s))
	if err != nil {
		return ""
	}
	var b strings.Builder
	prevSpace := false
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			txt := collapseSpace(n.Data)
			if prevSpace {
				txt = strings.TrimLeft(txt, " ")
			}
			if txt != "" {
				prevSpace = strings.HasSuffix(txt, " ")
				b.WriteString(txt)
			}
		}
		if b.Len() > e.max+2 { // enough text; +2 for spaces trimmed below
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == html.ElementNode && excludedTags[c.Data] {
				continue
			}
			block := c.Type == html.ElementNode && !inlineTags[c.Data]
			if block && !prevSpace {
				b.WriteByte(' ')
				prevSpace = true
			}
			walk(c)
			if block && !prevSpace {
				b.WriteByte(' ')
				prevSpace = true
			}
		}
	}
	walk(doc)

	out := strings.TrimSpace(b.String())
	if len(out) > e.max {
		// PocketBase cuts at max bytes; stepping back to a character
		// boundary avoids emitting a broken UTF-8 sequence.
		cut := e.max
		for cut > 0 && !utf8.RuneStart(out[cut]) {
			cut--
		}
		out = strings.TrimSpace(out[:cut])
		if e.ellipsis {
			out += "..."
		}
	}
	return out
}

// collapseSpace replaces each run of ASCII whitespace with one space, like
// the `\s+` regexp PocketBase uses.
func collapseSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inSpace := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\f', '\r':
			if !inSpace {
				b.WriteByte(' ')
			}
			inSpace = true
		default:
			b.WriteByte(c)
			inSpace = false
		}
	}
	return b.String()
}
