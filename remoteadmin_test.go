package realtime

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/internal/caddytest"
)

// readmeBlock is one fenced code block of README.md.
type readmeBlock struct{ lang, code string }

// readmeSection returns the code blocks of README.md under the heading.
func readmeSection(t *testing.T, heading string) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	indent := ""
	for _, line := range strings.Split(sec, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			indent = line[:len(line)-len(trimmed)]
			cur = &readmeBlock{lang: strings.TrimPrefix(trimmed, "```")}
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.code += strings.TrimPrefix(line, indent) + "\n"
		}
	}
	return blocks
}

// clientCert makes a self-signed client certificate, as the README's
// openssl command does.
func clientCert(t *testing.T, name string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, base64.StdEncoding.EncodeToString(der)
}

// TestRemoteAdminPublish runs the README's remote admin setup: a publisher
// certificate may POST under /realtime/ and nothing else, an operator's may
// do anything, other certificates cannot connect; then every publishing
// snippet of the README runs against it and its event arrives.
func TestRemoteAdminPublish(t *testing.T) {
	if caddyBin == "" {
		t.Skip("needs the Caddy binary (not built with -short)")
	}
	blocks := readmeSection(t, "## Publishers on other machines")
	certDir := t.TempDir()

	// The publisher's certificate comes from the README's openssl commands.
	var pubKeyB64 string
	var publisher tls.Certificate
	for _, b := range blocks {
		if b.lang == "sh" && strings.Contains(b.code, "openssl req") {
			if _, err := exec.LookPath("openssl"); err != nil {
				t.Skip("needs openssl for the README's certificate commands")
			}
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", b.code)
			cmd.Dir = certDir
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("README's openssl commands: %v\n%s", err, out)
			}
			pubKeyB64 = strings.TrimSpace(string(out))
			if publisher, err = tls.LoadX509KeyPair(filepath.Join(certDir, "publisher.crt"), filepath.Join(certDir, "publisher.key")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pubKeyB64 == "" {
		t.Fatal("README has no openssl block")
	}
	ops, opsKey := clientCert(t, "ops")
	stranger, _ := clientCert(t, "stranger")

	// The README's remote-admin.json, pointed at this test's ports, plus
	// an operator key and the site.
	var cfg map[string]any
	for _, b := range blocks {
		if b.lang == "json" {
			if err := json.Unmarshal([]byte(b.code), &cfg); err != nil {
				t.Fatalf("README's remote-admin.json: %v", err)
			}
		}
	}
	remoteAddr := fmt.Sprintf("127.0.0.1:%d", caddytest.FreePort(t))
	admin := cfg["admin"].(map[string]any)
	admin["listen"] = "{ADMIN}"
	admin["identity"].(map[string]any)["identifiers"] = []string{"127.0.0.1"}
	remote := admin["remote"].(map[string]any)
	remote["listen"] = remoteAddr
	acl := remote["access_control"].([]any)
	acl[0].(map[string]any)["public_keys"] = []string{pubKeyB64}
	remote["access_control"] = append(acl, map[string]any{"public_keys": []string{opsKey}})
	cfg["apps"].(map[string]any)["http"] = map[string]any{"servers": map[string]any{"site": map[string]any{
		"listen": []string{"127.0.0.1:{PORT}"},
		"routes": []any{map[string]any{"match": []any{map[string]any{"path": []string{"/api/realtime"}}}, "handle": []any{map[string]any{"handler": "realtime"}}}},
	}}}
	cfgJSON, _ := json.Marshal(cfg)
	p := startCaddyConfig(t, "caddy.json", string(cfgJSON))

	rootPath := filepath.Join(p.dir, "caddy", "pki", "authorities", "local", "root.crt")
	client := func(cert *tls.Certificate) *http.Client {
		roots := x509.NewCertPool()
		if pemBytes, err := os.ReadFile(rootPath); err == nil {
			roots.AppendCertsFromPEM(pemBytes)
		}
		tc := &tls.Config{RootCAs: roots}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	}
	call := func(c *http.Client, method, path, body string) (int, string, error) {
		req, _ := http.NewRequest(method, "https://"+remoteAddr+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), nil
	}
	// The identity certificate is issued in the background after start-up.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, _, err := call(client(&ops), "GET", "/config/", "")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote admin endpoint not ready: %d %v", code, err)
		}
	}

	stream := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	if r := p.subscribe(http.DefaultClient, p.url(""), stream.connect(t), "posts/*"); r.status != http.StatusNoContent {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}
	event := `{"action":"create","record":{"id":"%s","collectionName":"posts"}}`
	pub := client(&publisher)
	for _, c := range []struct {
		name         string
		cert         *tls.Certificate
		method, path string
		body         string
		want         int // 0: the TLS handshake must fail
	}{
		{"no certificate", nil, "POST", "/realtime/events", fmt.Sprintf(event, "x1"), 0},
		{"unlisted certificate", &stranger, "POST", "/realtime/events", fmt.Sprintf(event, "x2"), 0},
		{"publisher loads a config", &publisher, "POST", "/load", `{}`, http.StatusForbidden},
		{"publisher reads the config", &publisher, "GET", "/config/", "", http.StatusForbidden},
		{"publisher lists clients", &publisher, "GET", "/realtime/clients", "", http.StatusForbidden},
		{"publisher disconnects a client", &publisher, "DELETE", "/realtime/clients/abc", "", http.StatusForbidden},
		{"publisher publishes", &publisher, "POST", "/realtime/events", fmt.Sprintf(event, "direct"), http.StatusOK},
		{"operator reads the config", &ops, "GET", "/config/", "", http.StatusOK},
	} {
		hc := pub
		if c.cert != &publisher {
			hc = client(c.cert)
		}
		code, body, err := call(hc, c.method, c.path, c.body)
		switch {
		case c.want == 0 && err == nil:
			t.Errorf("%s: got %d %s, want the handshake refused", c.name, code, body)
		case c.want != 0 && (err != nil || code != c.want):
			t.Errorf("%s: got %d %s %v, want %d", c.name, code, body, err, c.want)
		}
	}
	if f := stream.next(t); !strings.Contains(f, `"id":"direct"`) {
		t.Fatalf("subscriber got %q, want the publisher's event", f)
	}

	// Every publishing snippet, as printed in the README.
	env := append(os.Environ(), "CADDY_CA="+rootPath,
		"CLIENT_CERT="+filepath.Join(certDir, "publisher.crt"), "CLIENT_KEY="+filepath.Join(certDir, "publisher.key"))
	ran, runnable := map[string]bool{}, map[string]bool{}
	for i, b := range blocks {
		if !strings.Contains(b.code, "/realtime/events") {
			continue
		}
		adminURL := "https://" + remoteAddr
		if !strings.Contains(b.code, "CLIENT_CERT") {
			adminURL = "http://" + p.admin // the plain endpoint, on the Caddy host
		}
		dir := t.TempDir()
		var cmd *exec.Cmd
		switch b.lang {
		case "sh":
			cmd = exec.Command("bash", "-euo", "pipefail", "-c", b.code)
		case "js":
			os.WriteFile(filepath.Join(dir, "publish.mjs"), []byte(b.code), 0o600)
			cmd = exec.Command("node", "publish.mjs")
		case "python":
			os.WriteFile(filepath.Join(dir, "publish.py"), []byte(b.code), 0o600)
			cmd = exec.Command("python3", "publish.py")
		case "go":
			os.WriteFile(filepath.Join(dir, "main.go"), []byte(b.code), 0o600)
			cmd = exec.Command("go", "run", "main.go")
		default:
			t.Fatalf("README block %d (%s) publishes but the test cannot run %q", i, b.lang, b.lang)
		}
		name := fmt.Sprintf("%s snippet %d", b.lang, i)
		if _, err := exec.LookPath(cmd.Args[0]); err != nil {
			t.Logf("%s skipped: %v", name, err)
			continue
		}
		runnable[b.lang] = true
		cmd.Dir, cmd.Env = dir, append(env, "CADDY_ADMIN="+adminURL)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), `{"published":1}`) {
			t.Errorf("%s: %v\n%s", name, err, out)
			continue
		}
		if f := stream.next(t); !strings.Contains(f, `"id":"abc123"`) {
			t.Errorf("%s: subscriber got %q", name, f)
		}
		ran[b.lang] = true
	}
	for _, lang := range []string{"sh", "js", "python", "go"} {
		if runnable[lang] && !ran[lang] {
			t.Errorf("no %s publishing snippet ran", lang)
		}
	}

	t.Run("forwarder for PocketBase's hook", func(t *testing.T) {
		forwarderPublish(t, remoteAddr, rootPath, certDir, stream)
	})
}

// forwarderPublish runs the README's forwarder (a Caddy on the PocketBase
// host presenting the publisher's certificate, since the hook's $http.send
// cannot): a plain POST to it on loopback publishes through the remote admin
// endpoint, whose permissions still apply.
func forwarderPublish(t *testing.T, remoteAddr, rootPath, certDir string, stream *sseStream) {
	var config string
	for _, b := range readmeSection(t, "## Moving PocketBase's realtime to Caddy") {
		if b.lang == "caddyfile" && strings.Contains(b.code, "tls_client_auth") {
			config = b.code
		}
	}
	if config == "" {
		t.Fatal("README has no forwarder Caddyfile")
	}
	fwd := fmt.Sprintf("127.0.0.1:%d", caddytest.FreePort(t))
	config = strings.NewReplacer(
		"127.0.0.1:2020", fwd,
		"caddy1.internal:2021", remoteAddr,
		"/etc/caddy/publisher.crt", filepath.Join(certDir, "publisher.crt"),
		"/etc/caddy/publisher.key", filepath.Join(certDir, "publisher.key"),
		"/etc/caddy/caddy-root.crt", rootPath,
	).Replace(config)
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &caddytest.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("forwarder output:\n%s", logs.String())
		}
	})
	caddytest.Start(t, caddyBin, dir, path, logs)
	post := func(method, path, body string) (int, string, error) {
		req, _ := http.NewRequest(method, "http://"+fwd+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), nil
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body, err := post("POST", "/realtime/events", `{"action":"create","record":{"id":"via-forwarder","collectionName":"posts"}}`)
		if err == nil {
			if code != http.StatusOK {
				t.Fatalf("publishing through the forwarder: %d %s", code, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("forwarder not ready: %v\n%s", err, logs.String())
		}
	}
	if f := stream.next(t); !strings.Contains(f, `"id":"via-forwarder"`) {
		t.Fatalf("subscriber got %q, want the forwarded event", f)
	}
	if code, body, err := post("POST", "/load", `{}`); err != nil || code != http.StatusForbidden {
		t.Errorf("/load through the forwarder: %d %s %v, want 403", code, body, err)
	}
}
