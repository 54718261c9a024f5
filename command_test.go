package realtime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/internal/caddytest"
)

// pocketBaseBin is the reference PocketBase v0.40.4 for tests that need a
// real one: $POCKETBASE_BIN, else e2e/.peer/base when it was built.
func pocketBaseBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("POCKETBASE_BIN")
	if bin == "" {
		bin = filepath.Join("e2e", ".peer", "base")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("needs PocketBase v0.40.4: set POCKETBASE_BIN or run e2e/scripts/build-pocketbase.sh (%v)", err)
	}
	abs, _ := filepath.Abs(bin)
	return abs
}

// pocketBase is a running PocketBase with a superuser.
type pocketBase struct {
	t       *testing.T
	url     string
	suToken string
}

const pbSuperuser, pbPassword = "su@example.com", "import-pass-123"

func startPocketBase(t *testing.T) *pocketBase {
	t.Helper()
	bin, dir := pocketBaseBin(t), t.TempDir()
	if out, err := exec.Command(bin, "superuser", "upsert", pbSuperuser, pbPassword, "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("superuser upsert: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", caddytest.FreePort(t))
	cmd := exec.Command(bin, "serve", "--http", addr, "--dir", dir)
	logs := &caddytest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("pocketbase output:\n%s", logs.String())
		}
	})
	pb := &pocketBase{t: t, url: "http://" + addr}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(pb.url + "/api/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pocketbase did not come up:\n%s", logs.String())
		}
	}
	var auth struct{ Token string }
	pb.must("POST", "/api/collections/_superusers/auth-with-password", map[string]any{"identity": pbSuperuser, "password": pbPassword}, &auth)
	pb.suToken = auth.Token
	return pb
}

// must calls PocketBase's REST API as the superuser and decodes the answer.
func (pb *pocketBase) must(method, path string, body, out any) {
	pb.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, pb.url+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if pb.suToken != "" {
		req.Header.Set("Authorization", pb.suToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		pb.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		pb.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			pb.t.Fatal(err)
		}
	}
}

func (pb *pocketBase) collection(def map[string]any) string {
	pb.t.Helper()
	var c struct{ ID string }
	pb.must("POST", "/api/collections", def, &c)
	return c.ID
}

func rel(name, collectionID string, maxSelect int) map[string]any {
	return map[string]any{"name": name, "type": "relation", "collectionId": collectionID, "maxSelect": maxSelect}
}

func field(name, typ string) map[string]any { return map[string]any{"name": name, "type": typ} }

// importRun runs our Caddy's `realtime import-pocketbase` with args and env.
func importRun(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(caddyBin, append([]string{"realtime", "import-pocketbase"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestImportPocketBase reads a real PocketBase's collections with the
// command, checks the rules it translates and the ones it leaves out, adapts
// the block, and runs Caddy with it: PocketBase tokens sign in through
// auth-refresh, and a collection whose rule needs a database stays closed.
func TestImportPocketBase(t *testing.T) {
	if caddyBin == "" {
		t.Skip("needs the Caddy binary (not built with -short)")
	}
	pb := startPocketBase(t)
	var users struct {
		ID     string
		Fields []map[string]any
	}
	pb.must("GET", "/api/collections/users", nil, &users)
	teams := pb.collection(map[string]any{"name": "teams", "type": "base", "fields": []any{field("name", "text")}})
	pb.must("PATCH", "/api/collections/users", map[string]any{
		"fields":   append(users.Fields, rel("team", teams, 1), field("role", "text")),
		"listRule": "id = @request.auth.id", "viewRule": "id = @request.auth.id",
	}, nil)
	secret := field("secret", "text")
	secret["hidden"] = true
	posts := pb.collection(map[string]any{
		"name": "posts", "type": "base",
		"fields": []any{field("title", "text"), field("status", "text"), rel("author", users.ID, 1), rel("team", teams, 1), secret, field("meta", "json")},
		// the owner rule translates; the view rule expands the author relation
		"listRule": "status = 'published' || author = @request.auth.id",
		"viewRule": "author.name != ''",
	})
	pb.must("PATCH", "/api/collections/teams", map[string]any{
		"listRule": "",
		"viewRule": "posts_via_team.status ?= 'published'", // a back-relation
	}, nil)
	pb.collection(map[string]any{
		"name": "notes", "type": "base", "fields": []any{field("body", "text")},
		"listRule": "@collection.teams.name ?= 'core'",
		"viewRule": "@request.auth.team.name = 'core'", // expands the auth record's relation
	})
	pb.collection(map[string]any{
		"name": "docs", "type": "base", "fields": []any{field("meta", "json"), rel("post", posts, 1)},
		"listRule": "meta.id = @request.auth.id", // .id on a json field
		"viewRule": "post.id != '' && @request.auth.team.id != ''",
	})
	pb.collection(map[string]any{
		"name": "Odd_Name_2", "type": "base", "fields": []any{field("title", "text")},
		"listRule": oddRule,
		"viewRule": nil,
	})
	pb.collection(map[string]any{"name": "staff", "type": "auth", "fields": []any{}, "listRule": "", "viewRule": ""})

	t.Run("wrong token", func(t *testing.T) {
		_, stderr, code := importRun(t, nil, "--url", pb.url, "--token", "not-a-token")
		if code != 1 || !strings.Contains(stderr, "PocketBase refused the token (401") {
			t.Errorf("exit %d, stderr %s", code, stderr)
		}
		_, stderr, code = importRun(t, nil, "--url", pb.url, "--email", pbSuperuser, "--password", "wrong")
		if code != 1 || !strings.Contains(stderr, "PocketBase refused the superuser credentials") {
			t.Errorf("exit %d, stderr %s", code, stderr)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		_, stderr, code := importRun(t, nil, "--url", fmt.Sprintf("http://127.0.0.1:%d", caddytest.FreePort(t)), "--token", pb.suToken)
		if code != 1 || !strings.Contains(stderr, "cannot reach PocketBase at") {
			t.Errorf("exit %d, stderr %s", code, stderr)
		}
	})

	out, stderr, code := importRun(t, []string{"POCKETBASE_TOKEN=" + pb.suToken}, "--url", pb.url)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	viaLogin, _, code := importRun(t, []string{"POCKETBASE_EMAIL=" + pbSuperuser, "POCKETBASE_PASSWORD=" + pbPassword}, "--url", pb.url)
	if code != 0 || viaLogin != out {
		t.Errorf("signing in with email and password gave exit %d and a different block:\n%s", code, viaLogin)
	}
	t.Logf("imported:\n%s\nstderr:\n%s", out, stderr)
	for _, want := range []string{
		"url " + pb.url + "/api/collections/users/auth-refresh\n",
		"tokens of staff are guests here",
		"superusers `@request.auth.collectionName = '_superusers'`",
		"# view_rule left out, so superusers only: author.name expands the relation author",
		"# view_rule `author.name != ''`",
		"# view_rule left out, so superusers only: posts_via_team.status reads the back-relation",
		"# list_rule left out, so superusers only: @collection.teams.name: @collection references need a database",
		"# view_rule left out, so superusers only: @request.auth.team.name expands the relation team",
		"# list_rule left out, so superusers only: meta.id: PocketBase ignores :each, :length and .id on the json field meta",
		"list_rule \"title = \\\"a`b\\\" ||\ntitle = 'x\\\"y'\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if want := "5 rule(s) need PocketBase's database"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q: %s", want, stderr)
	}

	// The block adapts, and every rule it sets is PocketBase's rule verbatim.
	h, err := adaptHandler(t, out)
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	raw, _ := json.Marshal(h)
	var got Handler
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if _, err := got.buildRuleSet(); err != nil {
		t.Fatalf("imported rules do not compile: %v", err)
	}
	str := func(s string) *string { return &s }
	want := map[string]*CollectionConfig{
		"posts":          {ListRule: str("status = 'published' || author = @request.auth.id"), HiddenFields: []string{"secret"}},
		"teams":          {ListRule: str("")},
		"notes":          {},
		"docs":           {ViewRule: str("post.id != '' && @request.auth.team.id != ''")},
		"Odd_Name_2":     {ListRule: str(oddRule)},
		"users":          {ListRule: str("id = @request.auth.id"), ViewRule: str("id = @request.auth.id"), HiddenFields: []string{"password", "tokenKey"}},
		"staff":          {ListRule: str(""), ViewRule: str(""), HiddenFields: []string{"password", "tokenKey"}},
		"_superusers":    {HiddenFields: []string{"password", "tokenKey"}},
		"_externalAuths": {ListRule: str(mineOnly), ViewRule: str(mineOnly)},
	}
	for name, w := range want {
		c := got.Collections[name]
		if c == nil {
			t.Errorf("collection %s missing", name)
			continue
		}
		if !eqRule(c.ListRule, w.ListRule) || !eqRule(c.ViewRule, w.ViewRule) || !slices.Equal(c.HiddenFields, w.HiddenFields) {
			t.Errorf("collection %s = list %v view %v hidden %v, want list %v view %v hidden %v", name,
				show(c.ListRule), show(c.ViewRule), c.HiddenFields, show(w.ListRule), show(w.ViewRule), w.HiddenFields)
		}
	}

	// Run it: a PocketBase user signs in through auth-refresh and sees its
	// own draft; a guest does not; notes (list rule left out) reach nobody.
	var user struct{ ID string }
	pb.must("POST", "/api/collections/users/records", map[string]any{"email": "ann@example.com", "password": pbPassword, "passwordConfirm": pbPassword, "name": "Ann"}, &user)
	var annAuth struct{ Token string }
	pb.must("POST", "/api/collections/users/auth-with-password", map[string]any{"identity": "ann@example.com", "password": pbPassword}, &annAuth)
	p := startCaddy(t, "{\n\tadmin {ADMIN}\n\tpersist_config off\n}\nhttp://127.0.0.1:{PORT} {\n"+out+"}\n")
	guest, ann := openStream(t, http.DefaultClient, p.url("/api/realtime")), openStream(t, http.DefaultClient, p.url("/api/realtime"))
	if r := p.subscribe(http.DefaultClient, p.url(""), guest.connect(t), "posts/*", "notes/*"); r.status != http.StatusNoContent {
		t.Fatalf("guest subscribe: %d %s", r.status, r.body)
	}
	if r := p.subscribeAs(http.DefaultClient, p.url(""), annAuth.Token, ann.connect(t), "posts/*", "notes/*"); r.status != http.StatusNoContent {
		t.Fatalf("ann subscribe: %d %s", r.status, r.body)
	}
	p.publish(`[{"action":"create","record":{"id":"n1","collectionName":"notes","body":"team only"}},
		{"action":"create","record":{"id":"d1","collectionName":"posts","status":"draft","author":"`+user.ID+`","secret":"s"}},
		{"action":"create","record":{"id":"p1","collectionName":"posts","status":"published","author":"","secret":"s"}}]`, 3)
	if f := ann.next(t); !strings.Contains(f, `"id":"d1"`) || strings.Contains(f, "secret") {
		t.Errorf("ann's first event is %q, want her draft without the hidden field", f)
	}
	if f := ann.next(t); !strings.Contains(f, `"id":"p1"`) {
		t.Errorf("ann's second event is %q, want the published post", f)
	}
	if f := guest.next(t); !strings.Contains(f, `"id":"p1"`) {
		t.Errorf("the guest's first event is %q, want the published post (not the note nor the draft)", f)
	}
}

// oddRule holds a backtick, double quotes and a newline: it must reach the
// adapted config verbatim.
const oddRule = "title = \"a`b\" ||\ntitle = 'x\"y'"

// mineOnly is the rule of PocketBase's system collections _externalAuths,
// _mfas, _otps and _authOrigins.
const mineOnly = "@request.auth.id != '' && recordRef = @request.auth.id && collectionRef = @request.auth.collectionId"

func eqRule(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func show(s *string) string {
	if s == nil {
		return "<unset>"
	}
	return fmt.Sprintf("%q", *s)
}
