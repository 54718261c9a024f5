package rules

import (
	"errors"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	deep := strings.Repeat("(", maxDepth+1) + "a = 1" + strings.Repeat(")", maxDepth+1)
	tests := []struct {
		expr string
		pos  int
		msg  string // substring of Error.Msg
	}{
		// syntax, with positions
		{"0=0\x00&&0=\"\"", 3, `control character`},
		{"a = 1\x1b", 5, `control character`},
		{`author = @request.auth.id &&`, 28, "unexpected end"},
		{`a = 1 ||`, 8, "unexpected end"},
		{`a =`, 3, "unexpected end"},
		{`&&`, 0, `expected a field, text or number but found "&&"`},
		{`|| a = 1`, 0, `expected a field, text or number but found "||"`},
		{`= 1`, 0, `expected a field, text or number but found "="`},
		{`a 1`, 2, `expected an operator`},
		{`a = 1 b = 2`, 6, `expected && or || but found "b"`},
		{`a = && b = 1`, 4, `expected a field, text or number after = but found "&&"`},
		{`a == 1`, 2, `invalid operator "=="`},
		{`a => 1`, 2, `invalid operator "=>"`},
		{`a = 1 & b = 2`, 6, `invalid operator "&"`},
		{`a = 1 /`, 6, `invalid comment`},
		{`a = -`, 4, `invalid number "-"`},
		{`a = 1.`, 4, `invalid number "1."`},
		{`a = "unterminated`, 4, "unterminated quoted text"},
		{`a = 'x' && (b = "y`, 16, "unterminated quoted text"},
		{`a = $`, 4, `unexpected character "$"`},
		{`a.b. = 1`, 0, `invalid identifier "a.b."`},
		// parentheses
		{`(a = 1`, 0, "missing closing parenthesis"},
		{`(a = 1 && (b = 2)`, 0, "missing closing parenthesis"},
		{`a = 1)`, 5, `unexpected character ")"`},
		{`a = 1 && (b = )`, 14, `unexpected ")"`},
		{`()`, 0, "empty parentheses"},
		{`a = 1 && ( // nothing` + "\n)", 9, "empty parentheses"},
		{`a = (b = 1)`, 4, `after = but found "("`},
		{`a (b = 1)`, 2, `expected an operator`},
		{`(a = 1) (b = 2)`, 8, `expected && or || but found "("`},
		{deep, maxDepth, "nested deeper"},
		// empty-ish
		{`   `, 0, "empty expression"},
		{`// just a comment`, 0, "empty expression"},
		// identifiers that need a database or do not exist
		{`@collection.users.x = 1`, 0, "@collection.users.x: @collection references need a database and are not supported in realtime rules"},
		{`status = "a" && @collection.posts.author ?= @request.auth.id`, 16, "@collection references need a database"},
		{`@foo = 1`, 0, "unknown identifier @foo"},
		{`@request = 1`, 0, "unknown identifier @request"},
		{`@request.cookies.x = 1`, 0, "unknown identifier @request.cookies.x"},
		{`x = @request.body.title`, 4, "no request body"},
		{`@request.data.title = 1`, 0, "no request body"},
		{`@request.auth = 1`, 0, "name a field"},
		{`@request.query = 1`, 0, "name a field"},
		{`@request.context.x = 1`, 0, "has no fields"},
		{`geoDistance(1, 2, 3, 4) < 5`, 0, "function geoDistance() is not supported"},
		{`a = strftime('%Y', created)`, 4, "function strftime() is not supported"},
		{`#x = 1`, 0, `invalid field name "#x"`},
		{`a..b = 1`, 0, "empty segment"},
		// modifiers
		{`a:foo = 1`, 0, "unknown modifier :foo"},
		{`a:length:each = 1`, 0, "once"},
		{`a:length.b = 1`, 0, "once"},
		{`title:isset = true`, 0, ":isset modifier is only available for @request.*"},
		{`@request.query.x:length > 1`, 0, "only :isset and :lower"},
		{`@request.headers.x:each = 1`, 0, "only :isset and :lower"},
		{`@request.method:each = "x"`, 0, "only :isset and :lower"},
		{`@now:lower = 1`, 0, "modifiers cannot be applied to a macro"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			r, err := Compile(tt.expr)
			if err == nil {
				t.Fatalf("compiled to %v, want an error", r)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not *Error", err, err)
			}
			if ce.Pos != tt.pos {
				t.Errorf("position %d, want %d (%v)", ce.Pos, tt.pos, err)
			}
			if !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", ce.Msg, tt.msg)
			}
			if ce.Expr != tt.expr {
				t.Errorf("Expr %q, want %q", ce.Expr, tt.expr)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := Compile(`author = @request.auth.id &&`)
	want := `rule "author = @request.auth.id &&": unexpected end at position 28`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestErrorCutsLongExpressions(t *testing.T) {
	long := strings.Repeat("a = 1 && ", 100) + "&&"
	_, err := Compile(long)
	var ce *Error
	if !errors.As(err, &ce) || ce.Expr != long || ce.Pos != len(long)-2 {
		t.Fatalf("got %#v", err)
	}
	if msg := err.Error(); len(msg) > 300 || !strings.Contains(msg, "…") || !strings.HasSuffix(msg, "at position 900") {
		t.Fatalf("message not cut: %s", msg)
	}
}

func TestCompileAccepts(t *testing.T) {
	for _, expr := range []string{
		``,
		`a = 1`,
		`a.b.c_d = "x" && (b != 'y' || c ?~ 1.5)`,
		`a = -1 && b = -.5`,
		`a = null || b = TRUE || c = False`,
		"a = 1 // trailing comment\n && b = 2",
		`@request.auth.id != "" && @request.auth.collectionName = "users"`,
		`@request.query.page:isset = true && @request.headers.x_token:lower = "t"`,
		`@request.context = "realtime" && @request.method = "GET"`,
		`created >= @todayStart && created <= @todayEnd && @year > 2000`,
		`tags:each ~ "pb_%" && tags:length > 0 && title:lower = "x"`,
		`((((a = 1))))`,
		`(a = 1) && (b = 2 || (c = 3))`,
		`_private = 1`,
		`"a" = "a"`,
		`1 < 2`,
		`a = "it's \"quoted\""`,
	} {
		r, err := Compile(expr)
		if err != nil {
			t.Errorf("Compile(%q): %v", expr, err)
			continue
		}
		if r.String() != expr {
			t.Errorf("String() = %q, want %q", r.String(), expr)
		}
	}
}

func TestEmptyRuleAllowsAll(t *testing.T) {
	r, err := Compile("")
	if err != nil {
		t.Fatal(err)
	}
	if !r.AllowsAll() || !r.Eval(nil) || !r.Eval(&Env{}) {
		t.Fatal("empty rule must allow everyone")
	}
	if r.UsesRequest() || r.UsesOptions() || r.UsesCollection() {
		t.Fatal("empty rule uses nothing")
	}
}

func TestNilRuleDenies(t *testing.T) {
	var r *Rule
	if r.Eval(&Env{}) || r.AllowsAll() || r.UsesRequest() || r.String() != "" {
		t.Fatal("nil rule must deny")
	}
}

func TestUses(t *testing.T) {
	tests := []struct {
		expr             string
		request, options bool
	}{
		{`status = "published"`, false, false},
		{`created > @now`, false, false},
		{`author = @request.auth.id`, true, false},
		{`@request.context = "realtime"`, true, false},
		{`@request.method = "GET"`, true, false},
		{`@request.query.token = "x"`, true, true},
		{`a = 1 || @request.headers.x_token:isset = true`, true, true},
		{`(a = 1 && (b = 2 || @request.query.q = c))`, true, true},
	}
	for _, tt := range tests {
		r := MustCompile(tt.expr)
		if r.UsesRequest() != tt.request || r.UsesOptions() != tt.options {
			t.Errorf("%s: UsesRequest=%v UsesOptions=%v, want %v %v", tt.expr, r.UsesRequest(), r.UsesOptions(), tt.request, tt.options)
		}
		if r.UsesCollection() {
			t.Errorf("%s: UsesCollection must be false", tt.expr)
		}
	}
}

func TestMustCompilePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustCompile did not panic on a bad expression")
		}
	}()
	MustCompile("&&")
}
