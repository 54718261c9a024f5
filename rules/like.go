package rules

import (
	"strings"
	"unicode/utf8"
)

// likeMatch reports whether s matches the SQL LIKE pattern p with ESCAPE '\',
// as SQLite evaluates it: '%' matches any run of characters, '_' exactly one
// character, '\x' the character x; ASCII letters match case-insensitively and
// other characters exactly. With wrap the pattern behaves as '%' + p + '%'
// without building that string (PocketBase's `x LIKE ('%' || field || '%')`).
//
// It is the classic greedy matcher that backtracks only to the last '%',
// which is at most len(s)*len(p) steps and needs no allocation. steps is
// how many it took, for the evaluation budget; past limit steps it gives up
// (no match), so a hostile pattern costs at most what the budget has left.
func likeMatch(s, p string, wrap bool, limit int) (match bool, steps int) {
	si, pi := 0, 0
	starP, starS := -1, 0 // pattern index after the last '%', and where s resumed
	if wrap {
		starP = 0
	}
	for {
		steps++
		if steps > limit {
			return false, steps
		}
		if pi < len(p) {
			c := p[pi]
			if c == '%' {
				pi++
				if pi == len(p) {
					return true, steps // a trailing '%' takes the rest
				}
				starP, starS = pi, si
				continue
			}
			if si < len(s) {
				sr, sw := utf8.DecodeRuneInString(s[si:])
				var pr rune
				pw := 1
				wild := false
				switch {
				case c == '\\' && pi+1 < len(p):
					pr, pw = utf8.DecodeRuneInString(p[pi+1:])
					pw++
				case c == '_':
					wild = true
					_, pw = utf8.DecodeRuneInString(p[pi:])
				default:
					pr, pw = utf8.DecodeRuneInString(p[pi:])
				}
				if wild || foldEqual(pr, sr) {
					pi += pw
					si += sw
					continue
				}
			}
		} else if si == len(s) || wrap {
			return true, steps
		}
		// Mismatch: let the last '%' swallow one more character, if any.
		if starP < 0 || starS >= len(s) {
			return false, steps
		}
		_, w := utf8.DecodeRuneInString(s[starS:])
		starS += w
		si, pi = starS, starP
	}
}

// foldEqual compares runes the way SQLite's LIKE does without ICU: ASCII
// letters case-insensitively, everything else exactly.
func foldEqual(a, b rune) bool {
	if a == b {
		return true
	}
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		return lowerASCII(a) == lowerASCII(b)
	}
	return false
}

func lowerASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + ('a' - 'A')
	}
	return r
}

// paramPattern builds the LIKE pattern PocketBase binds for a parameter
// operand (a literal or an @request.* value): text holding an unescaped '%'
// is a pattern as written; any other text means "contains", so its '%', '_'
// and '\' are escaped and it is wrapped in '%'.
func paramPattern(s string) string {
	if containsUnescaped(s, '%') {
		return s
	}
	return "%" + escapeUnescaped(s) + "%"
}

// containsUnescaped reports whether ch occurs in s without a backslash before
// it (a doubled backslash escapes itself), matching PocketBase's check.
func containsUnescaped(s string, ch byte) bool {
	var prev byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ch && prev != '\\' {
			return true
		}
		if c == '\\' && prev == '\\' {
			prev = 0
		} else {
			prev = c
		}
	}
	return false
}

// escapeUnescaped puts a backslash before every '\', '%' and '_' of s that
// is not already escaped. Like PocketBase it decides from the right: a
// special character preceded by a backslash keeps that backslash as its
// escape. All three characters are ASCII, so working on bytes is safe.
func escapeUnescaped(s string) string {
	isSpecial := func(c byte) bool { return c == '\\' || c == '%' || c == '_' }
	rev := make([]byte, 0, len(s)+4)
	match := false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if match {
			if c != '\\' {
				rev = append(rev, '\\')
			}
			match = false
		} else {
			match = isSpecial(c)
		}
		rev = append(rev, c)
		if i == 0 && match {
			rev = append(rev, '\\')
		}
	}
	var b strings.Builder
	b.Grow(len(rev))
	for i := len(rev) - 1; i >= 0; i-- {
		b.WriteByte(rev[i])
	}
	return b.String()
}
