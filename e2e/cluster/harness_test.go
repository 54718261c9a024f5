package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/caddy-realtime/realtime/internal/caddytest"
)

// caddyBin is our Caddy (cmd/caddy): CADDY_BIN, or built once by TestMain.
var caddyBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("skipping the cluster tests under -short (they run Caddy processes)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "realtime-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if caddyBin, err = caddytest.Binary(dir, "../../cmd/caddy"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// waitFor polls ok until it holds, failing after within.
func waitFor(t testing.TB, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// A 3-server nats-server cluster with JetStream on files, in this process.

type natsServer struct {
	name              string
	port, clusterPort int
	dir               string
	srv               *server.Server
}

type natsCluster struct {
	t       testing.TB
	servers []*natsServer
}

func startNATSCluster(t testing.TB, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	for i := range n {
		c.servers = append(c.servers, &natsServer{
			name: fmt.Sprintf("n%d", i+1), port: caddytest.FreePort(t), clusterPort: caddytest.FreePort(t), dir: t.TempDir(),
		})
	}
	for i := range c.servers {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.servers {
			c.stop(i)
		}
	})
	c.waitMetaLeader()
	return c
}

// urls lists the client URLs of every server, for `transport nats`.
func (c *natsCluster) urls() []string {
	var urls []string
	for _, s := range c.servers {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", s.port))
	}
	return urls
}

// start (re)starts server i on its ports and store directory.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	s := c.servers[i]
	var routes []string
	for _, o := range c.servers {
		if o != s {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort))
		}
	}
	opts := &server.Options{
		ServerName: s.name,
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.dir,
		Cluster:    server.ClusterOpts{Name: "realtime", Host: "127.0.0.1", Port: s.clusterPort},
		Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		NoLog:      true,
		NoSigs:     true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		c.t.Fatalf("nats-server %s: %v", s.name, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		c.t.Fatalf("nats-server %s did not start", s.name)
	}
	s.srv = srv
}

// stop shuts server i down (a no-op when it is down).
func (c *natsCluster) stop(i int) {
	s := c.servers[i]
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// waitMetaLeader waits until the JetStream cluster elected its meta leader.
func (c *natsCluster) waitMetaLeader() {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, "a JetStream meta leader", func() bool {
		for _, s := range c.servers {
			if s.srv != nil && s.srv.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
}

// ---------------------------------------------------------------------------
// Caddy processes.

type caddyProc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	dir    string
	config string // the Caddyfile's path
	admin  string // host:port
	port   int
	logs   *caddytest.SyncBuffer
	done   <-chan struct{}
}

// startCaddy runs Caddy with caddyfile, whose {ADMIN} and {PORT} become free
// ports, and waits until the admin API and the site answer.
func startCaddy(t testing.TB, name, caddyfile string) *caddyProc {
	t.Helper()
	p := &caddyProc{t: t, name: name, dir: t.TempDir(), logs: &caddytest.SyncBuffer{}}
	p.admin = fmt.Sprintf("127.0.0.1:%d", caddytest.FreePort(t))
	p.port = caddytest.FreePort(t)
	path := filepath.Join(p.dir, "Caddyfile")
	config := caddytest.Expand(caddyfile, p.admin, p.port)
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p.config = path
	t.Cleanup(func() {
		p.kill()
		if t.Failed() && os.Getenv("CLUSTER_LOGS") != "" {
			t.Logf("%s output:\n%s", p.name, p.logs.String())
		}
	})
	p.launch()
	return p
}

// launch runs the process on the config and waits until it serves.
func (p *caddyProc) launch() {
	p.t.Helper()
	p.cmd, p.done = caddytest.Launch(p.t, p.name, caddyBin, p.dir, p.config, p.admin, p.port, "/config/", 30*time.Second, p.logs)
}

// kill ends the process with SIGKILL: no clean shutdown, as a crashed node.
func (p *caddyProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *caddyProc) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path)
}

type reply struct {
	status int
	body   string
}

func do(method, url, body string) (reply, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, strings.TrimSpace(string(b))}, err
}

// adminDo calls the node's admin API.
func (p *caddyProc) adminDo(method, path, body string) reply {
	p.t.Helper()
	r, err := do(method, p.adminURL(path), body)
	if err != nil {
		p.t.Fatalf("%s %s on %s: %v", method, path, p.name, err)
	}
	return r
}

// publish posts events on the node's admin API; it returns the status and the
// published count.
func (p *caddyProc) publish(body string) (int, int) {
	p.t.Helper()
	r := p.adminDo(http.MethodPost, "/realtime/events", body)
	if r.status != http.StatusOK {
		return r.status, 0
	}
	var out struct{ Published int }
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		p.t.Fatalf("publish on %s: %q: %v", p.name, r.body, err)
	}
	return r.status, out.Published
}

// mustPublish publishes and expects 200 with want published.
func (p *caddyProc) mustPublish(body string, want int) {
	p.t.Helper()
	status, n := p.publish(body)
	if status != http.StatusOK || n != want {
		p.t.Fatalf("publish on %s: status %d, published %d; want 200, %d", p.name, status, n, want)
	}
}

// holds says whether the node holds the client's stream: it lists it among
// its own clients (any node answers GET /realtime/clients/{id}, forwarded to
// the holder).
func (p *caddyProc) holds(clientID string) bool {
	r, err := do(http.MethodGet, p.adminURL("/realtime/clients?scope=node&limit=1000"), "")
	if err != nil || r.status != http.StatusOK {
		return false
	}
	var list struct {
		Clients []struct{ ID string }
	}
	_ = json.Unmarshal([]byte(r.body), &list)
	for _, c := range list.Clients {
		if c.ID == clientID {
			return true
		}
	}
	return false
}

// event is an admin event body creating posts/<id>, deduplicated by id.
func event(id string) string {
	return fmt.Sprintf(`{"id":%q,"action":"create","record":{"id":%q,"collectionName":"posts","title":"t"}}`, id, id)
}

// subscribe sets the client's topics with a POST to base's realtime endpoint.
func subscribe(t testing.TB, base, clientID string, topics ...string) reply {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"clientId": clientID, "subscriptions": topics})
	r, err := do(http.MethodPost, base+"/api/realtime", string(body))
	if err != nil {
		t.Fatalf("subscribe at %s: %v", base, err)
	}
	return r
}

// ---------------------------------------------------------------------------
// SSE clients.

// frame is one SSE frame; a heartbeat comment has Comment set.
type frame struct {
	ID, Event, Data string
	Comment         bool
}

// position is the part of a data frame's id after the client id: the epoch
// and the position in the stream, the same on every node.
func (f frame) position() string {
	_, pos, _ := strings.Cut(f.ID, ".")
	return pos
}

// recordID is the record id of an event frame.
func (f frame) recordID() string {
	var ev struct {
		Record struct {
			ID string `json:"id"`
		} `json:"record"`
	}
	_ = json.Unmarshal([]byte(f.Data), &ev)
	return ev.Record.ID
}

type sseClient struct {
	t       testing.TB
	name    string
	id      string // the client id from PB_CONNECT
	connect frame
	frames  chan frame
	err     chan error
	cancel  context.CancelFunc
	lastID  string // the id of the last data frame read
}

// openStream GETs url (with Last-Event-ID when lastEventID is set) and reads
// PB_CONNECT.
func openStream(t testing.TB, name, url, lastEventID string) *sseClient {
	t.Helper()
	c, err := dialStream(t, name, url, lastEventID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.cancel)
	return c
}

// dialStream is openStream returning its errors, for goroutines.
func dialStream(t testing.TB, name, url, lastEventID string) (*sseClient, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	c := &sseClient{t: t, name: name, frames: make(chan frame, 1<<16), err: make(chan error, 1), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		var f frame
		started := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				c.err <- err
				close(c.frames)
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if started {
					c.frames <- f
				}
				f, started = frame{}, false
				continue
			case strings.HasPrefix(line, ":"):
				f.Comment = true
			case strings.HasPrefix(line, "id:"):
				f.ID = line[3:]
			case strings.HasPrefix(line, "event:"):
				f.Event = line[6:]
			case strings.HasPrefix(line, "data:"):
				f.Data = line[5:]
			}
			started = true
		}
	}()
	select {
	case c.connect = <-c.frames:
	case <-time.After(10 * time.Second):
	}
	if c.connect.Event != "PB_CONNECT" {
		cancel()
		return nil, fmt.Errorf("%s: first frame %+v, want PB_CONNECT", name, c.connect)
	}
	var data struct{ ClientID string }
	_ = json.Unmarshal([]byte(c.connect.Data), &data)
	c.id = data.ClientID
	return c, nil
}

// resumed reads PB_CONNECT's "resumed".
func (c *sseClient) resumed() bool {
	var data struct{ Resumed bool }
	_ = json.Unmarshal([]byte(c.connect.Data), &data)
	return data.Resumed
}

// recv returns the next frame, heartbeats included; the test fails if the
// stream ends or timeout fires first (what names the awaited frame).
func (c *sseClient) recv(timeout <-chan time.Time, within time.Duration, what string) frame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("%s: stream ended: %v", c.name, <-c.err)
		}
		return f
	case <-timeout:
		c.t.Fatalf("%s: no %s within %v", c.name, what, within)
	}
	panic("unreachable")
}

// next returns the next frame that is not a heartbeat.
func (c *sseClient) next(within time.Duration) frame {
	c.t.Helper()
	timeout := time.After(within)
	for {
		f := c.recv(timeout, within, "frame")
		if f.Comment {
			continue
		}
		if f.ID != "" {
			c.lastID = f.ID
		}
		return f
	}
}

// heartbeat waits for a heartbeat comment.
func (c *sseClient) heartbeat(within time.Duration) {
	c.t.Helper()
	if f := c.recv(time.After(within), within, "heartbeat"); !f.Comment {
		c.t.Fatalf("%s: unexpected frame %+v while waiting for a heartbeat", c.name, f)
	}
}

// eventsUntil reads event frames up to and including the one of record last.
func (c *sseClient) eventsUntil(last string, within time.Duration) []frame {
	c.t.Helper()
	var out []frame
	for {
		f := c.next(within)
		out = append(out, f)
		if f.recordID() == last {
			return out
		}
	}
}

// close ends the stream from the client's side.
func (c *sseClient) close() { c.cancel() }

// brokerName is the broker every node shares.
const brokerName = "cluster"

// adminURL is the URL of an admin route of the node, for the cluster's broker.
func (p *caddyProc) adminURL(path string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return "http://" + p.admin + path + sep + "broker=" + brokerName
}
