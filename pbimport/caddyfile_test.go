package pbimport

import (
	"strings"
	"testing"
)

var testCols = []Collection{
	{Name: "users", Type: "auth", Fields: []Field{{Name: "id", Type: "text"}, {Name: "name", Type: "text"}, {Name: "team", Type: "relation", MaxSelect: 1}, {Name: "prefs", Type: "json"}, {Name: "tokenKey", Type: "text", Hidden: true}}},
	{Name: "posts", Type: "base", Fields: []Field{
		{Name: "id", Type: "text"}, {Name: "title", Type: "text"}, {Name: "author", Type: "relation", MaxSelect: 1},
		{Name: "members", Type: "relation", MaxSelect: 9}, {Name: "tags", Type: "select", MaxSelect: 5}, {Name: "meta", Type: "json"},
	}},
}

func TestUntranslatable(t *testing.T) {
	posts, users := &testCols[1], &testCols[0]
	for _, tt := range []struct{ rule, reason string }{
		{"", ""},
		{"author = @request.auth.id", ""},
		{"author.id = @request.auth.id && members.id ?= @request.auth.id", ""},
		{"tags:each ?= 'go' && tags:length > 1 && members:length < 3", ""},
		{"meta.owner = @request.auth.id && meta.a.b = 1", ""},
		{"@request.auth.team = 'x' && @request.auth.team.id = 'x' && @request.auth.prefs.theme = 'dark'", ""},
		{"@request.auth.unknown = 1", ""},
		{"author.name = 'x'", "author.name expands the relation author"},
		{"members.team.id ?= 'x'", "members.team.id expands the relation members"},
		{"meta:each = 'x'", "meta:each: PocketBase ignores :each, :length and .id on the json field meta"},
		{"meta:length > 1", "meta:length: PocketBase ignores"},
		{"meta.id = 'x'", "meta.id: PocketBase ignores"},
		{"comments_via_post.id != ''", "reads the back-relation comments_via_post"},
		{"nosuch = 1", "nosuch reads nosuch, which collection posts does not have"},
		{"@request.auth.team.name = 'core'", "@request.auth.team.name expands the relation team"},
		{"@collection.users.id ?= author", "@collection references need a database"},
		{"@request.body.title != ''", "no request body"},
		{"geoDistance(1, 2, 3, 4) < 5", "function geoDistance() is not supported"},
		{"title = '{$HOME}'", "environment variable"},
		{"title = 'a`\\'b'", "both a backtick and a backslash"},
		{"title = ", "unexpected end"},
	} {
		got := untranslatable(tt.rule, posts, users)
		if tt.reason == "" && got != "" || !strings.Contains(got, tt.reason) {
			t.Errorf("%q: reason %q, want %q", tt.rule, got, tt.reason)
		}
	}
}

func TestCaddyToken(t *testing.T) {
	for in, want := range map[string]string{
		"":                          `""`,
		"posts":                     "posts",
		"/api/realtime":             "/api/realtime",
		"#x":                        "`#x`",
		"a = 'b'":                   "`a = 'b'`",
		"{x}":                       "`{x}`",
		"a = \"`\" && b = \"\\\\\"": "\"a = \\\"`\\\" && b = \\\"\\\\\\\"\"",
	} {
		if got := caddyToken(in); got != want {
			t.Errorf("caddyToken(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCaddyfileAuthCollection(t *testing.T) {
	res, err := Caddyfile(testCols, Options{PocketBaseURL: "http://pb:8090/"})
	if err != nil {
		t.Fatal(err)
	}
	if res.AuthCollection != "users" || !strings.Contains(res.Caddyfile, "url http://pb:8090/api/collections/users/auth-refresh\n") {
		t.Errorf("auth collection %q in\n%s", res.AuthCollection, res.Caddyfile)
	}
	if _, err := Caddyfile(testCols, Options{AuthCollection: "staff"}); err == nil || !strings.Contains(err.Error(), `auth collection "staff" not found; PocketBase's auth collections: users`) {
		t.Errorf("unknown --auth-collection: %v", err)
	}
	res, err = Caddyfile(testCols[1:], Options{PocketBaseURL: "http://pb:8090"})
	if err != nil || strings.Contains(res.Caddyfile, "auth {") || !strings.Contains(res.Caddyfile, "every client is a guest") {
		t.Errorf("without an auth collection: %v\n%s", err, res.Caddyfile)
	}
}
