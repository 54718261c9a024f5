package rules

// The oracle: a real PocketBase (v0.40.4, built by e2e/scripts/build-pocketbase.sh)
// answers the same rules over the same records, through its list API, and
// every answer of ours is compared with it.
//
//	e2e/scripts/build-pocketbase.sh
//	RULES_ORACLE_PB=$PWD/e2e/.peer/base go test -run TestOracle -v ./rules/
//
// RULES_ORACLE_N sets how many random rules are generated (default 400),
// RULES_ORACLE_SEED their seed (default 1), and RULES_ORACLE_GOLDEN=1 rewrites
// testdata/oracle.json, which TestOracleGolden replays without PocketBase.
//
// Each rule becomes the collection's listRule (PocketBase refuses @request.*
// in a user's filter parameter, not in a rule) and the collection is listed
// as a guest and as each user: the ids listed are the records PocketBase
// allows. A rule PocketBase refuses (400 when saving it, or when listing)
// allows nothing, as a realtime subscription with it would receive nothing.
// Ours is evaluated over each record as a superuser fetches it and each
// user's auth record as auth-with-password returns it: what a hub receives.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// oracleUsers are created in the users auth collection; ids are fixed so
// that records can point at them.
var oracleUsers = []string{
	`{"id": "u00000000000001", "email": "u1@example.com", "name": "Ann", "plan": "pro", "banned": false, "level": 5, "roles": ["admin", "editor"], "prefs": {"theme": "dark", "n": 3}, "code": "10", "verified": true}`,
	`{"id": "u00000000000002", "email": "u2@example.com", "name": "", "plan": "", "banned": true, "level": 0, "roles": [], "prefs": null, "code": "", "verified": false}`,
	`{"id": "u00000000000003", "email": "u3@example.com", "name": "Bo_b%", "plan": "10", "banned": false, "level": 10, "roles": ["editor"], "prefs": {"theme": ""}, "code": "a_c"}`,
}

// oracleRecords are created in the items collection.
var oracleRecords = []string{
	`{"id": "r00000000000001", "title": "Hello World", "code": "10", "prio": "10", "note": "", "views": 42, "score": 1.5, "flag": true, "status": "published", "tags": ["go", "Caddy"], "author": "u00000000000001", "members": ["u00000000000001", "u00000000000002"], "meta": {"owner": "u00000000000001", "shares": [{"user": "u00000000000001"}, {"user": "u00000000000002"}], "level": 3, "list": ["a", "B"], "empty": ""}, "due": "2024-01-01 10:00:00.000Z", "contact": "a@b.io"}`,
	`{"id": "r00000000000002", "title": "", "code": "", "prio": "", "note": "", "views": 0, "score": 0, "flag": false, "status": "", "tags": [], "author": "", "members": [], "meta": null, "due": "", "contact": ""}`,
	`{"id": "r00000000000003", "title": "abc", "code": "10.0", "prio": "9", "note": "x", "views": -3, "score": 10, "flag": false, "status": "10", "tags": ["10"], "author": "u00000000000002", "members": ["u00000000000003"], "meta": {"owner": "U00000000000001", "level": "3"}, "due": "2099-12-31 23:59:59.000Z", "contact": "c@d.io"}`,
	`{"id": "r00000000000004", "title": "50% off_sale", "code": "007", "prio": "5.0", "note": "a_c", "views": 10, "score": -0.5, "flag": true, "status": "draft", "tags": ["x%y", "a_b", "pb_a"], "author": "u00000000000003", "members": ["u00000000000002", "u00000000000001"], "meta": "10", "due": "2000-06-15 00:00:00.000Z", "contact": "e@f.io"}`,
	`{"id": "r00000000000005", "title": "Hello", "code": "1e1", "prio": "abc", "note": "", "views": 5, "score": 5, "flag": false, "status": "archived", "tags": ["Caddy"], "author": "", "members": ["u00000000000003"], "meta": 10, "due": "2024-01-01 10:00:00.000Z", "contact": ""}`,
	`{"id": "r00000000000006", "title": "hello world", "code": " 10", "prio": "-1", "note": "", "views": 100, "score": 0.1, "flag": true, "status": "published", "tags": ["go", "sse", "pb_a"], "author": "u00000000000001", "members": [], "meta": [], "due": "", "contact": ""}`,
	`{"id": "r00000000000007", "title": "[]", "code": "[]", "prio": "", "note": "", "views": 1, "score": 2, "flag": false, "status": "draft", "tags": ["a_b"], "author": "u00000000000002", "members": ["u00000000000002"], "meta": {"owner": null, "shares": []}, "due": "", "contact": ""}`,
	`{"id": "r00000000000008", "title": "x", "code": "x", "prio": "", "note": "", "views": 2, "score": 3, "flag": false, "status": "draft", "tags": [], "author": "", "members": [], "meta": true, "due": "", "contact": ""}`,
	`{"id": "r00000000000009", "title": "y", "code": "", "prio": "", "note": "", "views": 3, "score": 4, "flag": false, "status": "draft", "tags": [], "author": "", "members": [], "meta": "", "due": "", "contact": ""}`,
	`{"id": "r00000000000010", "title": "z", "code": "", "prio": "", "note": "", "views": 4, "score": 5, "flag": false, "status": "draft", "tags": [], "author": "", "members": [], "meta": {"a": {"b": [1, 2, {"c": "u00000000000001"}]}, "owner": "u00000000000003"}, "due": "2024-01-01T10:00:00Z", "contact": ""}`,
}

const oraclePassword = "oracle-pass-123"

type oracle struct {
	t       *testing.T
	base    string
	suToken string
	users   []oracleUser // guest first (empty token)
	usersID string
	records []map[string]any // as a superuser fetches them, in id order
}

type oracleUser struct {
	name  string
	token string
	auth  map[string]any // nil for the guest
}

func TestOracle(t *testing.T) {
	bin := os.Getenv("RULES_ORACLE_PB")
	if bin == "" {
		t.Skip("set RULES_ORACLE_PB to a PocketBase v0.40.4 binary (e2e/scripts/build-pocketbase.sh builds e2e/.peer/base)")
	}
	o := startOracle(t, bin)
	o.setup()

	n, seed := 400, uint64(1)
	if s := os.Getenv("RULES_ORACLE_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("RULES_ORACLE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	exprs := append(slices.Clone(oracleFixed), randomRules(rand.New(rand.NewPCG(seed, 7)), n)...)
	if s := os.Getenv("RULES_ORACLE_EXPRS"); s != "" { // ask only these (one per line), and show every answer
		exprs = strings.Split(strings.TrimSpace(s), "\n")
	}

	golden := goldenFile{Records: o.records, Now: time.Now().UTC()}
	for _, u := range o.users {
		golden.Viewers = append(golden.Viewers, goldenViewer{Name: u.name, Auth: u.auth})
	}
	leaks, denies := 0, 0
	for _, expr := range exprs {
		answers, perr := o.ask(expr)
		gc := goldenCase{Expr: expr, Error: perr}
		for vi := range o.users {
			var ids []string
			if perr == "" {
				ids = answers[vi]
			}
			gc.Allowed = append(gc.Allowed, ids)
		}
		golden.Cases = append(golden.Cases, gc)
		if os.Getenv("RULES_ORACLE_EXPRS") != "" {
			t.Logf("PocketBase: %s -> %v %s", expr, gc.Allowed, gc.Error)
		}
		l, d := compareCase(t, &golden, gc, false)
		leaks += l
		denies += d
	}
	t.Logf("%d rules x %d viewers x %d records: %d leaks, %d over-denials", len(exprs), len(o.users), len(o.records), leaks, denies)
	if os.Getenv("RULES_ORACLE_GOLDEN") != "" {
		b, err := json.Marshal(golden)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "oracle.json"), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// goldenFile is PocketBase's recorded answers (testdata/oracle.json).
type goldenFile struct {
	Records []map[string]any
	Viewers []goldenViewer
	Cases   []goldenCase
	// Now is when PocketBase answered: the @now-style macros are evaluated at
	// it, or a replay on another day would ask a different question.
	Now time.Time `json:",omitzero"`
}

// clock is g.Now, or for a file recorded without it a second after the
// newest record was written (the answers were asked right after).
func (g *goldenFile) clock() time.Time {
	if !g.Now.IsZero() {
		return g.Now
	}
	var latest time.Time
	for _, rec := range g.Records {
		for _, k := range []string{"created", "updated"} {
			if s, ok := rec[k].(string); ok {
				if at, err := time.Parse("2006-01-02 15:04:05.000Z", s); err == nil && at.After(latest) {
					latest = at
				}
			}
		}
	}
	if latest.IsZero() {
		return time.Time{}
	}
	return latest.Add(time.Second)
}

type goldenViewer struct {
	Name string
	Auth map[string]any
}

type goldenCase struct {
	Expr    string
	Error   string     `json:",omitempty"` // PocketBase refused the rule
	Allowed [][]string // per viewer, the record ids PocketBase listed
}

// compareCase evaluates gc with our rules and reports differences: allowing
// what PocketBase denies is an error; denying what it allows is logged
// (those are the documented over-denials). It returns both counts.
func compareCase(t *testing.T, g *goldenFile, gc goldenCase, quiet bool) (leaks, denies int) {
	t.Helper()
	r, err := Compile(gc.Expr)
	if err != nil {
		if !quiet {
			t.Logf("ours refuses %q (%v); PocketBase: %s", gc.Expr, err, orOK(gc.Error))
		}
		return 0, 0
	}
	now := g.clock()
	for vi, v := range g.Viewers {
		for _, rec := range g.Records {
			id := rec["id"].(string)
			pb := slices.Contains(gc.Allowed[vi], id)
			env := &Env{Record: rec, Auth: v.Auth, Method: "GET", Context: "default", Query: oracleQuery, Now: now}
			got := r.Eval(env)
			switch {
			case got && !pb && knownLeak(gc.Expr):
				if !quiet {
					t.Logf("assumed %s | viewer %s | record %s: ours allows, PocketBase denies (json field read as a relation/multi-valued field)", gc.Expr, v.Name, id)
				}
			case got && !pb:
				leaks++
				t.Errorf("LEAK %s | viewer %s | record %s: ours allows, PocketBase denies%s", gc.Expr, v.Name, id, errNote(gc.Error))
			case !got && pb:
				denies++
				if !quiet {
					t.Logf("deny %s | viewer %s | record %s: ours denies, PocketBase allows", gc.Expr, v.Name, id)
				}
			}
		}
	}
	return leaks, denies
}

// knownLeak matches the rules where the one assumption we make shows: a
// json field (meta) holding a bare string or an array of strings is read as
// a relation or multi-valued field by `.id`, `:length` and `:each`, which
// PocketBase ignores on json fields. The JSON of a record cannot tell them
// apart; see the package documentation.
func knownLeak(expr string) bool {
	return strings.Contains(expr, "meta:length") || strings.Contains(expr, "meta:each") || strings.Contains(expr, "meta.id")
}

func orOK(s string) string {
	if s == "" {
		return "accepts it"
	}
	return "refuses it: " + s
}

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return " (PocketBase refuses the rule: " + s + ")"
}

func startOracle(t *testing.T, bin string) *oracle {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command(bin, "superuser", "upsert", "su@example.com", oraclePassword, "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("superuser upsert: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "serve", "--http", addr, "--dir", dir)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && testing.Verbose() {
			t.Logf("pocketbase output:\n%s", logs.String())
		}
	})
	o := &oracle{t: t, base: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(o.base + "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pocketbase did not come up: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var auth struct{ Token string }
	o.must("POST", "/api/collections/_superusers/auth-with-password", "", map[string]any{"identity": "su@example.com", "password": oraclePassword}, &auth)
	o.suToken = auth.Token
	return o
}

// call does one API request; it returns the status code and decodes a 2xx
// body into out (numbers as json.Number).
func (o *oracle) call(method, path, token string, body any, out any) (int, string) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, o.base+path, rd)
	if err != nil {
		o.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && out != nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(out); err != nil {
			o.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func (o *oracle) must(method, path, token string, body any, out any) {
	o.t.Helper()
	if code, msg := o.call(method, path, token, body, out); code/100 != 2 {
		o.t.Fatalf("%s %s: %d %s", method, path, code, msg)
	}
}

func (o *oracle) setup() {
	t := o.t
	var users map[string]any
	o.must("GET", "/api/collections/users", o.suToken, nil, &users)
	o.usersID = users["id"].(string)
	fields := users["fields"].([]any)
	fields = append(fields,
		map[string]any{"name": "plan", "type": "text"},
		map[string]any{"name": "code", "type": "text"},
		map[string]any{"name": "banned", "type": "bool"},
		map[string]any{"name": "level", "type": "number"},
		map[string]any{"name": "roles", "type": "select", "values": []string{"admin", "editor"}, "maxSelect": 2},
		map[string]any{"name": "prefs", "type": "json"},
	)
	o.must("PATCH", "/api/collections/users", o.suToken, map[string]any{"fields": fields}, nil)

	rel := func(name string, max int) map[string]any {
		return map[string]any{"name": name, "type": "relation", "collectionId": o.usersID, "maxSelect": max}
	}
	o.must("POST", "/api/collections", o.suToken, map[string]any{
		"name": "items", "type": "base", "listRule": "", "viewRule": "",
		"fields": []any{
			map[string]any{"name": "title", "type": "text"},
			map[string]any{"name": "code", "type": "text"},
			map[string]any{"name": "prio", "type": "text"},
			map[string]any{"name": "note", "type": "text"},
			map[string]any{"name": "views", "type": "number"},
			map[string]any{"name": "score", "type": "number"},
			map[string]any{"name": "flag", "type": "bool"},
			map[string]any{"name": "status", "type": "select", "values": []string{"draft", "published", "archived", "10"}, "maxSelect": 1},
			map[string]any{"name": "tags", "type": "select", "values": []string{"go", "Caddy", "sse", "pb_a", "a_b", "10", "x%y"}, "maxSelect": 7},
			rel("author", 1),
			rel("members", 10),
			map[string]any{"name": "meta", "type": "json"},
			map[string]any{"name": "due", "type": "date"},
			map[string]any{"name": "contact", "type": "email"},
			map[string]any{"name": "created", "type": "autodate", "onCreate": true},
			map[string]any{"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
		},
	}, nil)

	o.users = []oracleUser{{name: "guest"}}
	for _, s := range oracleUsers {
		u := decode(t, s)
		u["password"], u["passwordConfirm"] = oraclePassword, oraclePassword
		u["emailVisibility"] = false
		o.must("POST", "/api/collections/users/records", o.suToken, u, nil)
		var auth struct {
			Token  string
			Record map[string]any
		}
		o.must("POST", "/api/collections/users/auth-with-password", "", map[string]any{"identity": u["email"], "password": oraclePassword}, &auth)
		o.users = append(o.users, oracleUser{name: auth.Record["id"].(string), token: auth.Token, auth: auth.Record})
	}
	for _, s := range oracleRecords {
		o.must("POST", "/api/collections/items/records", o.suToken, json.RawMessage(s), nil)
	}
	var list struct{ Items []map[string]any }
	o.must("GET", "/api/collections/items/records?perPage=500&sort=id", o.suToken, nil, &list)
	o.records = list.Items
	if len(o.records) != len(oracleRecords) {
		t.Fatalf("created %d records, listed %d", len(oracleRecords), len(o.records))
	}
}

// ask sets expr as the list rule and lists as every viewer. A refused rule
// returns PocketBase's message.
func (o *oracle) ask(expr string) ([][]string, string) {
	code, msg := o.call("PATCH", "/api/collections/items", o.suToken, map[string]any{"listRule": expr}, nil)
	if code/100 != 2 {
		return nil, fmt.Sprintf("save %d %s", code, strings.TrimSpace(msg))
	}
	out := make([][]string, len(o.users))
	for i, u := range o.users {
		var list struct{ Items []struct{ ID string } }
		code, msg := o.call("GET", "/api/collections/items/records?perPage=500&fields=id&sort=id", u.token, nil, &list)
		if code/100 != 2 {
			return nil, fmt.Sprintf("list %d %s", code, strings.TrimSpace(msg))
		}
		ids := []string{}
		for _, it := range list.Items {
			ids = append(ids, it.ID)
		}
		out[i] = ids
	}
	return out, ""
}

// oracleQuery is the list request's query string, which PocketBase's
// @request.query sees.
var oracleQuery = map[string]string{"perPage": "500", "fields": "id", "sort": "id"}

// oracleFixed are the rules the known differences are about.
var oracleFixed = []string{
	// [] and "" on multi-valued fields, which PocketBase stores as JSON text
	`tags = ""`, `tags != ""`, `tags = null`, `tags != null`, `tags = "[]"`, `tags = '["go","Caddy"]'`,
	`members = ""`, `members != ""`, `tags ~ ""`, `tags !~ ""`, `tags ~ "go"`, `tags ~ '"go"'`, `tags ~ "["`,
	`tags ?= "go"`, `tags ?!= "go"`, `tags ?~ "cad"`, `tags:each ?= "go"`, `tags:each = "go"`, `tags:each != "go"`,
	`tags:each ~ "a"`, `tags > "A"`, `tags < "A"`, `tags:length = 0`, `tags:length > 1`, `tags:each ?= ""`,
	`members ?= @request.auth.id`, `members.id ?= @request.auth.id`, `members.id = @request.auth.id`,
	`members ~ @request.auth.id`, `@request.auth.id ?= members.id`, `members:each ?= @request.auth.id`,
	`members:length > 1`, `@request.auth.roles ?= "admin"`, `@request.auth.roles:each ?= "admin"`,
	`@request.auth.roles = ""`, `@request.auth.roles:length = 0`,
	// numeric-looking text against numbers
	`code = 10`, `code != 10`, `code = "10"`, `code > 5`, `code < 5`, `prio > 5`, `prio < 50`, `prio = 9`,
	`code = 7`, `code = 10.0`, `code = 1e1`, `views = "42"`, `views = "42.0"`, `views > "abc"`, `views < "abc"`,
	`views = " 42"`, `views > "5"`, `status = 10`, `status > 5`, `score = 1.5`, `score = "1.5"`,
	`@request.auth.code = 10`, `@request.auth.level > 4`, `@request.auth.level = "5"`, `@request.auth.plan = 10`,
	`flag = true`, `flag = 1`, `flag = "true"`, `flag = "1"`, `flag > 0`, `flag != false`,
	// :isset on @request.auth, guests
	`@request.auth.id:isset = true`, `@request.auth.id:isset = false`, `@request.auth.id:isset != true`,
	`@request.auth.plan:isset = true`, `@request.auth.banned:isset = true`, `@request.auth.banned:isset = false`,
	`@request.auth.nope:isset = false`, `@request.auth.verified:isset = true`, `@request.auth.id:isset = @request.auth.id`,
	`@request.auth.id = ""`, `@request.auth.id != ""`, `@request.auth.id = null`, `@request.auth.id != null`,
	`@request.auth.id = author`, `author = @request.auth.id`, `@request.auth.id != author`,
	`@request.auth.plan = ""`, `@request.auth.plan != ""`, `@request.auth.nope = ""`, `@request.auth.nope != ""`,
	`@request.auth.prefs.theme = "dark"`, `@request.auth.prefs.theme = ""`, `@request.auth.prefs.missing = ""`,
	`@request.auth.prefs = null`, `@request.auth.banned = false`, `@request.auth.verified = true`,
	`@request.auth.email ~ "example"`, `@request.auth.name ~ "_"`, `title ~ @request.auth.name`,
	`title ~ @request.auth.code`, `note ~ @request.auth.code`, `note = @request.auth.code`,
	// dates
	`due < @now`, `due > @now`, `due >= @todayStart`, `due = ""`, `due != ""`, `due > "2024-01-01"`,
	`due > "2024-01-01 10:00:00"`, `due = "2024-01-01 10:00:00.000Z"`, `due = "2024-01-01T10:00:00Z"`,
	`due < "2024-01-01T10:00:00Z"`, `created > "2020-01-01"`, `created < @now`, `created > @yesterday`,
	`updated >= created`, `due < @yearStart`, `due ~ "T"`,
	// JSON paths
	`meta.owner = @request.auth.id`, `meta.owner != @request.auth.id`, `meta.owner:lower = "u00000000000001"`,
	`meta.owner:lower = @request.auth.id`, `meta.shares.user ?= @request.auth.id`, `meta.shares.user = @request.auth.id`,
	`meta.shares.0.user = @request.auth.id`, `meta.shares:each ?= "x"`, `meta.shares:length = 2`,
	`meta.missing = ""`, `meta.missing != ""`, `meta.missing = null`, `meta.missing != null`, `meta.empty = ""`,
	`meta.empty = null`, `meta.empty != null`, `meta.level = 3`, `meta.level = "3"`, `meta.level > 2`,
	`meta.level > "2"`, `meta = null`, `meta != null`, `meta = ""`, `meta != ""`, `meta = 10`, `meta = "10"`,
	`meta > 5`, `meta < 5`, `meta = true`, `meta = 1`, `meta ~ "owner"`, `meta ~ "u0"`, `meta.list ?= "a"`,
	`meta.list ~ "a"`, `meta.list.0 = "a"`, `meta.list:length = 2`, `meta:length = 0`, `meta:each ?= 10`,
	`meta.owner.id = @request.auth.id`, `meta.a.b.2.c = @request.auth.id`, `meta.a.b.1 = 2`, `meta.owner ~ ""`,
	`meta.owner = author`, `meta.owner = author.id`, `@request.auth.prefs.n > 2`,
	// relation paths other than id
	`author.name = "Ann"`, `author.name != "x"`, `author.verified = true`, `author.plan = ""`, `author.plan != ""`,
	`members.name ?= "Ann"`, `members.plan = ""`, `author.id = @request.auth.id`, `author.id != ""`,
	`author.email = ""`, `author.author = ""`, `title.x = ""`, `views.x = ""`,
	// :length and :lower on text, LIKE
	`title:length = 11`, `title:length > 0`, `title:length = 0`, `status:length = 1`, `author:length = 1`,
	`note:length = 0`, `title:lower = "hello world"`, `title:lower ~ "HELLO"`, `title ~ "%"`, `title ~ "_"`,
	`title ~ "50%"`, `title ~ "\\%"`, `title ~ "o_s"`, `title !~ "hello"`, `title ~ note`, `title ~ code`,
	`@request.auth.name ~ "b_"`, `@request.auth.name ~ "B%"`, `title ~ 4`, `views ~ 4`, `flag ~ 1`, `flag ~ "true"`,
	// unknown fields
	`nosuch = ""`, `nosuch = null`, `nosuch != 1`, `nosuch = 1 || title != ""`,
	// literals
	`null = ""`, `"a" = "a"`, `1 = "1"`, `1 = 1.0`, `"10" > 9`, `"abc" > 5`, `true = 1`, `"" = null`,
	`@request.context = "default"`, `@request.method = "GET"`,
	// column against column (COALESCE on both sides)
	`views = prio`, `prio = views`, `views = code`, `title = code`, `views > prio`, `score = views`,
	`code = 10.0`, `code = 1e20`, `prio = 5`, `prio = 5.0`, `code = 0.1`,
	// the assumption: json fields holding a string or an array of strings
	`meta.id = "10"`, `meta:length = 0`, `meta:each = ""`, `meta.list:each ?= "a"`,
}

// randomRules generates rules over the oracle schema.
func randomRules(rng *rand.Rand, n int) []string {
	fields := []string{
		"id", "title", "code", "prio", "note", "views", "score", "flag", "status", "tags", "author", "members", "meta",
		"due", "contact", "created", "author.id", "members.id", "meta.owner", "meta.level", "meta.list", "meta.empty",
		"meta.missing", "meta.shares.user", "meta.list.0", "author.name", "members.plan",
		"@request.auth.id", "@request.auth.plan", "@request.auth.level", "@request.auth.banned", "@request.auth.roles",
		"@request.auth.prefs.theme", "@request.auth.code", "@request.auth.name", "@request.auth.verified",
		"@request.auth.email", "@request.auth.nope",
	}
	mods := []string{"", "", "", "", ":lower", ":length", ":each", ":isset"}
	lits := []string{`""`, `"10"`, `"go"`, `"Hello"`, `"a_b"`, `"%o%"`, `"_"`, `"u00000000000001"`, `"pro"`, `"abc"`,
		`"[]"`, `"2024-01-01"`, `"10.0"`, `0`, `1`, `5`, `10`, `42`, `-1`, `1.5`, `null`, `true`, `false`, `@todayStart`}
	ops := []string{"=", "!=", ">", ">=", "<", "<=", "~", "!~", "?=", "?!=", "?>", "?>=", "?<", "?<=", "?~", "?!~"}
	operand := func() string {
		if rng.IntN(2) == 0 {
			return lits[rng.IntN(len(lits))]
		}
		f := fields[rng.IntN(len(fields))]
		m := mods[rng.IntN(len(mods))]
		if m == ":isset" && !strings.HasPrefix(f, "@request.") {
			m = ""
		}
		return f + m
	}
	cmp := func() string {
		l := operand()
		if strings.HasPrefix(l, "@") || rng.IntN(3) > 0 {
			// keep a field on the left most of the time
			f := fields[rng.IntN(len(fields))]
			if !strings.HasPrefix(f, "@request.") {
				l = f + mods[rng.IntN(len(mods)-1)]
			}
		}
		return l + " " + ops[rng.IntN(len(ops))] + " " + operand()
	}
	out := make([]string, 0, n)
	for len(out) < n {
		expr := cmp()
		for rng.IntN(3) == 0 {
			j := " && "
			if rng.IntN(2) == 0 {
				j = " || "
			}
			if rng.IntN(3) == 0 {
				expr = "(" + expr + ")" + j + cmp()
			} else {
				expr += j + cmp()
			}
		}
		if _, err := Compile(expr); err == nil {
			out = append(out, expr)
		}
	}
	return out
}

// TestOracleGolden replays PocketBase's recorded answers (testdata/oracle.json,
// written by TestOracle with RULES_ORACLE_GOLDEN=1 against PocketBase
// v0.40.4): no rule may allow what PocketBase denied.
func TestOracleGolden(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "oracle.json"))
	if os.IsNotExist(err) {
		t.Skip("no testdata/oracle.json")
	}
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var g goldenFile
	if err := dec.Decode(&g); err != nil {
		t.Fatal(err)
	}
	leaks, denies := 0, 0
	for _, gc := range g.Cases {
		l, d := compareCase(t, &g, gc, true)
		leaks += l
		denies += d
	}
	t.Logf("%d rules: %d leaks, %d over-denials", len(g.Cases), leaks, denies)
}
