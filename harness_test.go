package realtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/internal/caddytest"
)

// caddyBin is our Caddy (cmd/caddy) built once for the tests that run it as a
// real process: reloads and `caddy stop` need a process of their own.
// CADDY_BIN names one built from this tree already.
var caddyBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "realtime-caddy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if !testing.Short() {
			if caddyBin, err = caddytest.Binary(dir, "./cmd/caddy"); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// caddyProc is one running Caddy with its admin and HTTP ports.
type caddyProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	dir   string
	admin string // host:port
	port  int    // the site's port
	logs  *caddytest.SyncBuffer
	done  <-chan struct{}
}

// startCaddy runs Caddy with a Caddyfile whose {ADMIN} and {PORT} are replaced
// by free ports, and waits until the admin API answers.
func startCaddy(t *testing.T, caddyfile string) *caddyProc {
	t.Helper()
	return startCaddyConfig(t, "Caddyfile", caddyfile)
}

// startCaddyConfig is startCaddy with a config file of that name: "Caddyfile"
// is adapted, "caddy.json" is Caddy's JSON.
func startCaddyConfig(t *testing.T, name, config string) *caddyProc {
	t.Helper()
	if caddyBin == "" {
		t.Skip("needs the Caddy binary (not built with -short)")
	}
	p := &caddyProc{t: t, dir: t.TempDir(), logs: &caddytest.SyncBuffer{}}
	p.admin = fmt.Sprintf("127.0.0.1:%d", caddytest.FreePort(t))
	p.port = caddytest.FreePort(t)
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, []byte(p.expand(config)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("caddy output:\n%s", p.logs.String())
		}
	})
	p.cmd, p.done = caddytest.Launch(t, "caddy", caddyBin, p.dir, path, p.admin, p.port, "/realtime/stats", 20*time.Second, p.logs)
	return p
}

func (p *caddyProc) expand(caddyfile string) string {
	return caddytest.Expand(caddyfile, p.admin, p.port)
}

func (p *caddyProc) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path)
}

// load replaces the running config through the admin API (a reload).
func (p *caddyProc) load(caddyfile string) {
	p.t.Helper()
	resp := p.adminDo(http.MethodPost, "/load", "text/caddyfile", p.expand(caddyfile))
	if resp.status != http.StatusOK {
		p.t.Fatalf("reload: %d %s", resp.status, resp.body)
	}
}

type reply struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, contentType, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := oneShot.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// oneShot opens a connection per request: every /load replaces Caddy's admin
// server, and a POST on a connection kept alive to the one being stopped
// fails with EOF (Go retries only idempotent requests there).
var oneShot = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func (p *caddyProc) adminDo(method, path, contentType, body string) reply {
	return do(p.t, method, "http://"+p.admin+path, contentType, body)
}

// publish posts events through the admin API and checks the published count.
func (p *caddyProc) publish(body string, want int) {
	p.t.Helper()
	r := p.adminDo(http.MethodPost, "/realtime/events", "application/json", body)
	if r.status != http.StatusOK || r.body != fmt.Sprintf(`{"published":%d}`, want) && strings.TrimSpace(r.body) != fmt.Sprintf(`{"published":%d}`, want) {
		p.t.Fatalf("publish: %d %s", r.status, r.body)
	}
}

// subscribe sets a client's topics with a POST to the realtime endpoint, as a guest.
func (p *caddyProc) subscribe(client *http.Client, base, clientID string, topics ...string) reply {
	p.t.Helper()
	return p.subscribeAs(client, base, "", clientID, topics...)
}

// subscribeAs is subscribe with the SDK's raw token in Authorization ("" = none).
func (p *caddyProc) subscribeAs(client *http.Client, base, token, clientID string, topics ...string) reply {
	p.t.Helper()
	body, _ := json.Marshal(map[string]any{"clientId": clientID, "subscriptions": topics})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/realtime", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// sseStream reads raw SSE frames from an open stream.
type sseStream struct {
	resp   *http.Response
	frames chan string
	err    chan error
	cancel context.CancelFunc
}

func openStream(t *testing.T, client *http.Client, url string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := client.Do(req)
	// Right after a reload, a new connection can still be accepted by the
	// server being replaced, which closes it unanswered (Caddy shares the
	// listener): what a browser's EventSource would retry, so retry.
	for try := 0; err != nil && try < 5 && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)); try++ {
		time.Sleep(50 * time.Millisecond)
		resp, err = client.Do(req)
	}
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	s := &sseStream{resp: resp, frames: make(chan string, 4096), err: make(chan error, 1), cancel: cancel}
	go func() {
		r := bufio.NewReader(resp.Body)
		var frame strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				s.err <- err
				close(s.frames)
				return
			}
			frame.WriteString(line)
			if line == "\n" {
				s.frames <- frame.String()
				frame.Reset()
			}
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return s
}

// next returns the next frame that is not a heartbeat comment.
func (s *sseStream) next(t *testing.T) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				t.Fatalf("stream ended: %v", <-s.err)
			}
			if strings.HasPrefix(f, ":") {
				continue
			}
			return withoutPositions(f)
		case <-timeout:
			t.Fatal("no frame within 10s")
		}
	}
}

// connect reads PB_CONNECT and returns the client id.
func (s *sseStream) connect(t *testing.T) string {
	t.Helper()
	f := s.next(t)
	var id string
	if _, err := fmt.Sscanf(f, "id:%s\n", &id); err != nil || len(id) != 40 {
		t.Fatalf("bad PB_CONNECT frame %q", f)
	}
	want := "id:" + id + "\nevent:PB_CONNECT\ndata:{\"clientId\":\"" + id + "\"}\n\n"
	if f != want {
		t.Fatalf("PB_CONNECT frame\n got %q\nwant %q", f, want)
	}
	return id
}

// ended waits for the stream to end and returns the read error (io.EOF when clean).
func (s *sseStream) ended(t *testing.T, within time.Duration) error {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case _, ok := <-s.frames:
			if !ok {
				return <-s.err
			}
		case <-timeout:
			t.Fatalf("stream still open after %v", within)
		}
	}
}

// positionRe matches the position part of frame ids ("<clientId>.<epoch>.<n>").
var positionRe = regexp.MustCompile(`(?m)^(id:[A-Za-z0-9]{40})\.[A-Za-z0-9]{8}\.[1-9][0-9]*$`)

// withoutPositions turns frame ids back into bare client ids, so that tests
// about content compare frames as PocketBase writes them.
func withoutPositions(s string) string { return positionRe.ReplaceAllString(s, "$1") }

// doErr is do for goroutines other than the test's: it returns the error.
func doErr(client *http.Client, method, url, contentType, body string) (reply, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{resp.StatusCode, resp.Header, string(b)}, nil
}

// sseConn is a stream read frame by frame, for goroutines other than the test's.
type sseConn struct {
	resp   *http.Response
	frames chan sseFrame
	stop   chan struct{}
	once   sync.Once
	err    error // why reading ended; read after frames is closed
}

type sseFrame struct{ id, event, data string }

var errNoFrame = errors.New("no frame in time")

func dialSSE(client *http.Client, u string, hdr http.Header) (*sseConn, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	c := &sseConn{resp: resp, frames: make(chan sseFrame, 256), stop: make(chan struct{})}
	go c.read()
	return c, nil
}

// read parses frames as EventSource does: comment lines skipped, a frame
// dispatched at its blank line; frames with no field (heartbeats) dropped.
func (c *sseConn) read() {
	defer close(c.frames)
	r := bufio.NewReader(c.resp.Body)
	var f sseFrame
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			c.err = err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		field, value, _ := strings.Cut(line, ":")
		switch field {
		case "":
			if line == "" && f != (sseFrame{}) {
				select {
				case c.frames <- f:
				case <-c.stop:
					c.err = errors.New("closed")
					return
				}
				f = sseFrame{}
			}
		case "id":
			f.id = value
		case "event":
			f.event = value
		case "data":
			f.data = value
		default:
			c.err = fmt.Errorf("unexpected line %q", line)
			return
		}
	}
}

// next returns the next frame, errNoFrame after wait, or why the stream ended.
func (c *sseConn) next(wait time.Duration) (sseFrame, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case f, ok := <-c.frames:
		if !ok {
			if c.err == io.EOF {
				return f, io.ErrUnexpectedEOF // a stream never ends on its own here
			}
			return f, c.err
		}
		return f, nil
	case <-t.C:
		return sseFrame{}, errNoFrame
	}
}

// close drops the stream, as a network that goes away would.
func (c *sseConn) close() {
	c.once.Do(func() {
		close(c.stop)
		c.resp.Body.Close()
	})
}
