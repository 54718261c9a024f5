package rules

import (
	"fmt"

	"github.com/ganigeorgiev/fexpr"
)

// token is one fexpr token together with where it sits in the source.
// fexpr's own Parse drops positions (and re-parses each parenthesised group
// from a copy of its text), so the lexer runs fexpr's Scanner one token at a
// time and measures how many source bytes each token took.
type token struct {
	typ fexpr.TokenType
	lit string // fexpr's literal: unescaped for text, raw content for groups
	pos int    // byte offset of the token in the whole expression
	end int    // byte offset just past the token
}

// lexer tokenizes ranges of one expression.
type lexer struct {
	src  string
	data []byte
}

// lex returns the tokens of src[from:to] without whitespace and comments.
func (l *lexer) lex(from, to int) ([]token, *Error) {
	var toks []token
	pos := from
	for pos < to {
		t, err := fexpr.NewScanner(l.data[pos:to]).Scan()
		if t.Type == fexpr.TokenEOF {
			break
		}
		if err != nil {
			return nil, l.scanError(t, err, pos, to)
		}
		n := l.tokenLen(t, pos, to)
		if n <= 0 { // cannot happen for a token Scan accepted; never loop forever
			return nil, l.errorf(pos, "unexpected %q", l.excerpt(pos, to))
		}
		if t.Type != fexpr.TokenWS && t.Type != fexpr.TokenComment {
			toks = append(toks, token{typ: t.Type, lit: t.Literal, pos: pos, end: pos + n})
		}
		pos += n
	}
	return toks, nil
}

// tokenLen returns how many source bytes the token starting at pos took.
// Most literals are the source bytes themselves; quoted text is unescaped by
// fexpr and groups may re-encode invalid UTF-8, so those are re-measured.
func (l *lexer) tokenLen(t fexpr.Token, pos, to int) int {
	switch t.Type {
	case fexpr.TokenText:
		return quotedLen(l.data, pos, to)
	case fexpr.TokenGroup:
		n, _ := groupLen(l.data, pos, to)
		return n
	case fexpr.TokenComment:
		for i := pos; i < to; i++ {
			if l.data[i] == '\n' {
				return i + 1 - pos
			}
		}
		return to - pos
	default: // whitespace, identifiers, numbers, signs and joins are ASCII runs
		return len(t.Literal)
	}
}

// scanError turns a Scanner error into an *Error pointing at the culprit.
func (l *lexer) scanError(t fexpr.Token, err error, pos, to int) *Error {
	switch t.Type {
	case fexpr.TokenUnexpected:
		return l.errorf(pos, "unexpected character %q", t.Literal)
	case fexpr.TokenNumber:
		return l.errorf(pos, "invalid number %q", t.Literal)
	case fexpr.TokenText:
		return l.errorf(pos, "unterminated quoted text")
	case fexpr.TokenIdentifier:
		return l.errorf(pos, "invalid identifier %q", t.Literal)
	case fexpr.TokenSign:
		return l.errorf(pos, "invalid operator %q", t.Literal)
	case fexpr.TokenJoin:
		return l.errorf(pos, "invalid operator %q, expected && or ||", t.Literal)
	case fexpr.TokenComment:
		return l.errorf(pos, "invalid comment, expected //")
	case fexpr.TokenGroup:
		if _, quote := groupLen(l.data, pos, to); quote >= 0 {
			return l.errorf(quote, "unterminated quoted text")
		}
		return l.errorf(pos, "missing closing parenthesis")
	case fexpr.TokenFunction:
		return l.errorf(pos, "invalid function call %q: %v", t.Literal, err)
	}
	return l.errorf(pos, "%v", err)
}

func (l *lexer) errorf(pos int, format string, args ...any) *Error {
	return &Error{Expr: l.src, Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// excerpt returns a short piece of the source for messages.
func (l *lexer) excerpt(from, to int) string {
	const max = 32
	if to-from > max {
		return l.src[from:from+max] + "…"
	}
	return l.src[from:to]
}

// quotedLen returns the length of the quoted text starting at data[pos], or
// -1 when it is not terminated before to. A backslash escapes the next byte;
// quotes and backslashes are ASCII, which never occurs inside a multi-byte
// UTF-8 sequence, so stepping by bytes finds the same end as fexpr does.
func quotedLen(data []byte, pos, to int) int {
	q := data[pos]
	for i := pos + 1; i < to; i++ {
		switch data[i] {
		case '\\':
			i++
		case q:
			return i + 1 - pos
		}
	}
	return -1
}

// groupLen returns the length of the parenthesised group starting at
// data[pos], skipping quoted text the way fexpr's group scanner does (even
// inside comments). When the group is not closed it returns -1 and, if an
// unterminated quote is the reason, that quote's offset (else -1).
func groupLen(data []byte, pos, to int) (n, badQuote int) {
	depth := 0
	for i := pos; i < to; i++ {
		switch data[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i + 1 - pos, -1
			}
		case '"', '\'':
			q := quotedLen(data, i, to)
			if q < 0 {
				return -1, i
			}
			i += q - 1
		}
	}
	return -1, -1
}
