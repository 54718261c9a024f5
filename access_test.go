package realtime

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// authEndpoint plays the site's own "who is this token" endpoint.
type authEndpoint struct {
	*httptest.Server
	calls atomic.Int64
}

func newAuthEndpoint(t *testing.T, users map[string]string) *authEndpoint {
	ep := &authEndpoint{}
	ep.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ep.calls.Add(1)
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		rec, ok := users[token]
		if !ok {
			http.Error(w, `{"message":"invalid token"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":%q,"record":%s}`, token, rec)
	}))
	t.Cleanup(ep.Close)
	return ep
}

const authCaddyfile = `{
	admin {ADMIN}
	auto_https off
	persist_config off
}
http://127.0.0.1:{PORT} {
	realtime /api/realtime {
		auth {
			url AUTHURL/auth
			record_path record
		}
		superusers "@request.auth.collectionName = '_superusers'"
		collection notes {
			list_rule "@request.auth.id != '' && author = @request.auth.id"
			view_rule "@request.auth.id != '' && author = @request.auth.id"
		}
		topic admin_* "@request.auth.isAdmin = true"
	}
}
`

func TestCaddyAuthAndRules(t *testing.T) {
	ep := newAuthEndpoint(t, map[string]string{
		"alice-token": `{"id":"alice","collectionId":"_pb_users_auth_","collectionName":"users"}`,
		"bob-token":   `{"id":"bob","collectionId":"_pb_users_auth_","collectionName":"users"}`,
	})
	p := startCaddy(t, strings.Replace(authCaddyfile, "AUTHURL", ep.URL, 1))
	notes := `[{"action":"create","collection":"notes","record":{"id":"n1","author":"bob"}},
		{"action":"create","collection":"notes","record":{"id":"n2","author":"alice"}}]`

	guest := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	guestID := guest.connect(t)
	if r := p.subscribeAs(http.DefaultClient, p.url(""), "", guestID, "notes/*", "chat"); r.status != http.StatusNoContent {
		t.Fatalf("guest subscribe: %d %s", r.status, r.body)
	}
	alice := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	aliceID := alice.connect(t)
	for range 100 { // one lookup while cached
		if r := p.subscribeAs(http.DefaultClient, p.url(""), "alice-token", aliceID, "notes/*"); r.status != http.StatusNoContent {
			t.Fatalf("alice subscribe: %d %s", r.status, r.body)
		}
	}
	if n := ep.calls.Load(); n != 1 {
		t.Errorf("100 POSTs with one token made %d lookups, want 1", n)
	}
	p.publish(notes, 2)
	if f := alice.next(t); !strings.Contains(f, `"id":"n2"`) {
		t.Fatalf("alice got %q, want her own note n2 only", f)
	}
	// A marker that everybody may see proves nothing else was queued before it.
	p.adminDo(http.MethodPost, "/realtime/messages", "application/json", `{"name":"chat","data":"marker"}`)
	if f := guest.next(t); !strings.Contains(f, "event:chat") {
		t.Fatalf("guest received %q before the marker: a private note leaked", f)
	}

	wantForbidden := `{"data":{},"message":"The current and the previous request authorization don't match.","status":403}`
	for name, token := range map[string]string{"switch to bob": "bob-token", "downgrade to guest": "", "invalid token": "forged"} {
		if r := p.subscribeAs(http.DefaultClient, p.url(""), token, aliceID, "notes/*"); r.status != http.StatusForbidden || r.body != wantForbidden {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	r := p.subscribeAs(http.DefaultClient, p.url(""), "alice-token", aliceID, "admin_stats")
	if r.status != http.StatusForbidden || !strings.Contains(r.body, `You are not allowed to subscribe to \"admin_stats\".`) {
		t.Errorf("admin topic for a non-admin: %d %s", r.status, r.body)
	}

	metrics := p.adminDo(http.MethodGet, "/metrics", "", "").body
	for _, line := range []string{
		`caddy_realtime_auth_lookups_total{broker="default",outcome="miss"} `,
		`caddy_realtime_auth_lookups_total{broker="default",outcome="hit"} `,
		`caddy_realtime_auth_lookups_total{broker="default",outcome="limited"} 0`,
		`caddy_realtime_rule_evaluations_total{broker="default"} `,
	} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %q", line)
		}
	}

	// The lookup endpoint goes down: a new token gets 503, never a silent guest.
	ep.Close()
	newcomer := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	id := newcomer.connect(t)
	r = p.subscribeAs(http.DefaultClient, p.url(""), "carol-token", id, "notes/*")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"status":503`) {
		t.Fatalf("lookup endpoint down: %d %s", r.status, r.body)
	}
}

// A bad rule fails the config load and says where.
func TestCaddyBadRuleFailsLoad(t *testing.T) {
	if caddyBin == "" {
		t.Skip("needs the Caddy binary")
	}
	for _, tc := range []struct{ rule, want string }{
		{`author = @request.auth.id &&`, `collection notes list_rule: rule`},
		{`@collection.users.id ?= author`, `@collection`},
		{`@request.nope = 1`, `@request.nope`},
	} {
		dir := t.TempDir()
		cf := fmt.Sprintf(":0 {\n\trealtime {\n\t\tcollection notes {\n\t\t\tlist_rule %q\n\t\t}\n\t}\n}\n", tc.rule)
		path := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(caddyBin, "validate", "--config", path, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "position") {
			t.Errorf("rule %q: err %v, output lacks %q and a position:\n%s", tc.rule, err, tc.want, out)
		}
	}
}
