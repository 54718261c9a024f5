package rules

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// excerpt is the `:excerpt(max, withEllipsis?)` fields modifier: the plain
// text of an HTML string, cut to max characters.
type excerpt struct {
	max      int
	ellipsis bool
}

// parseModifier parses "excerpt(200, true)" as PocketBase's picker does: the
// modifier is tokenized on parentheses, commas and spaces alike (so
// "excerpt(200 true)" and "excerpt 200" are accepted too), quotes group, the
// name is case-sensitive, max is read with spf13/cast's ToInt and must be
// > 0, withEllipsis with strconv.ParseBool (anything else is false). ok is
// false for anything PocketBase refuses.
func parseModifier(raw string) (*excerpt, bool) {
	parts, ok := tokenize(raw, "(), ", true)
	if !ok || len(parts) < 2 || len(parts) > 3 || parts[0] != "excerpt" {
		return nil, false
	}
	max := castToInt(parts[1])
	if max <= 0 {
		return nil, false
	}
	e := &excerpt{max: max}
	if len(parts) == 3 {
		e.ellipsis, _ = strconv.ParseBool(parts[2])
	}
	return e, true
}

// castToInt is spf13/cast v1.10's ToInt for a string: a fraction is dropped
// ("10.9" is 10, ".5" is 0), then strconv.ParseInt with base 0 ("0x10" is
// 16, "010" is 8, "1_000" is 1000); anything unparsable is 0.
func castToInt(s string) int {
	if strings.Contains(s, ".") {
		if m := castDecimal.FindStringSubmatch(s); m != nil {
			s = m[1]
			switch s {
			case "-", "+":
				s += "0"
			case "":
				s = "0"
			}
		}
	}
	n, err := strconv.ParseInt(s, 0, 0)
	if err != nil {
		return 0
	}
	return int(n)
}

var castDecimal = regexp.MustCompile(`^([-+]?\d*)(\.\d*)?$`)

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

	// Characters, not bytes, as PocketBase (which converts to []rune once
	// the byte length passes max). Text gathering above stops on bytes, as
	// PocketBase's does.
	out := strings.TrimSpace(b.String())
	if len(out) > e.max && utf8.RuneCountInString(out) > e.max {
		runes := []rune(out)
		out = strings.TrimSpace(string(runes[:e.max]))
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
