//go:build linux

package bench

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind names a server under test.
type Kind string

// The servers under test.
const (
	KindOurs       Kind = "ours"
	KindPocketBase Kind = "pocketbase"
	KindMercure    Kind = "mercure"
)

// Bins are the server binaries.
type Bins struct {
	Caddy, PocketBase, Mercure string
	Floor                      string // KindFloor (the HTTPS streams bench)
}

// ServerOptions configure a server for one workload.
type ServerOptions struct {
	OwnerRule bool   // posts readable only by their author (workload h)
	AuthURL   string // ours: the auth lookup endpoint (workload h)
	Users     int    // pocketbase: users to create, with tokens (workload h)
	Realtime  string // ours: extra lines inside the realtime block (the abuse suite)
	Defaults  bool   // ours: leave max_clients_per_ip and max_clients at their defaults (the abuse suite)
	TLS       bool   // ours, mercure: serve the site over HTTPS with Caddy's internal CA (the HTTPS streams bench)
}

// OwnerRule is the list and view rule of workload h, on both servers.
const OwnerRule = "@request.auth.id != '' && @request.auth.id = author"

const (
	pbSuperEmail    = "bench@example.com"
	pbSuperPassword = "Bench-Passw0rd-123456"
	pbUserPassword  = "User-Passw0rd-123456"
	mercureSecret   = "bench-mercure-publisher-secret-0123456789abcdef"
)

// Server is one server process under test, fresh on free loopback ports.
type Server struct {
	Kind      Kind
	Addr      string // the site: 127.0.0.1:port
	AdminAddr string // Caddy's admin endpoint (ours, mercure)
	PID       int

	superToken string   // pocketbase
	UserIDs    []string // pocketbase users, workload h
	UserTokens []string

	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// StartServer starts kind with opts in a new directory under workDir.
func StartServer(kind Kind, bins Bins, workDir string, opts ServerOptions) (*Server, error) {
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(workDir, string(kind)+"-")
	if err != nil {
		return nil, err
	}
	s := &Server{Kind: kind, dir: dir, logPath: filepath.Join(dir, "server.log")}
	switch kind {
	case KindOurs:
		err = s.startCaddy(bins.Caddy, oursSite(opts), opts.TLS)
	case KindMercure:
		err = s.startCaddy(bins.Mercure, "\tmercure {\n\t\tpublisher_jwt "+mercureSecret+
			" HS256\n\t\tanonymous\n\t\ttransport local\n\t}\n", opts.TLS)
	case KindFloor:
		err = s.startCaddy(bins.Floor, floorSite, opts.TLS)
	case KindPocketBase:
		err = s.startPocketBase(bins.PocketBase, opts)
	default:
		err = fmt.Errorf("unknown server kind %q", kind)
	}
	if err != nil {
		tail := s.LogTail(20)
		s.Stop()
		if tail != "" {
			err = fmt.Errorf("%w\n--- %s log ---\n%s", err, kind, tail)
		}
		return nil, fmt.Errorf("starting %s: %w", kind, err)
	}
	return s, nil
}

// oursSite is the body of our site block: the realtime handler as the runs configure it.
func oursSite(opts ServerOptions) string {
	var b strings.Builder
	b.WriteString("\trealtime /api/realtime {\n\t\theartbeat 15s\n\t\tidle_timeout 10m\n\t\tmax_subscriptions 1000\n")
	if !opts.Defaults {
		b.WriteString("\t\tmax_clients_per_ip 0\n\t\tmax_clients 0\n")
	}
	if opts.AuthURL != "" {
		fmt.Fprintf(&b, "\t\tauth {\n\t\t\turl %s\n\t\t\trecord_path record\n\t\t}\n", opts.AuthURL)
	}
	if opts.OwnerRule {
		fmt.Fprintf(&b, "\t\tcollection posts {\n\t\t\tlist_rule %q\n\t\t\tview_rule %q\n\t\t}\n", OwnerRule, OwnerRule)
	}
	b.WriteString(opts.Realtime)
	b.WriteString("\t}\n")
	return b.String()
}

// startCaddy runs bin with site (the handler) as the only site. Ours and
// Mercure get the same configuration apart from the handler.
func (s *Server) startCaddy(bin, site string, useTLS bool) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	s.AdminAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	scheme, global := "http", "\tauto_https off\n"
	if useTLS {
		// A certificate for 127.0.0.1 from Caddy's internal CA; no HTTP->HTTPS
		// redirect listener, no trust-store install, and no HTTP/3 listener
		// (the clients speak HTTP/1.1 and HTTP/2 only).
		scheme = "https"
		global = "\tauto_https disable_redirects\n\tskip_install_trust\n\tservers {\n\t\tprotocols h1 h2\n\t}\n"
		site = "\ttls internal\n" + site
	}
	config := fmt.Sprintf("{\n\tadmin %s\n%s\tpersist_config off\n\tlog {\n\t\tlevel ERROR\n\t}\n}\n\n%s://%s {\n\tbind 127.0.0.1\n%s}\n",
		s.AdminAddr, global, scheme, s.Addr, site)
	path := filepath.Join(s.dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return err
	}
	env := []string{"HOME=" + s.dir, "XDG_CONFIG_HOME=" + filepath.Join(s.dir, "config"), "XDG_DATA_HOME=" + filepath.Join(s.dir, "data")}
	if err := s.spawn(bin, env, "run", "--config", path, "--adapter", "caddyfile"); err != nil {
		return err
	}
	probe := "http://" + s.AdminAddr + "/config/"
	if s.Kind == KindOurs {
		probe = "http://" + s.AdminAddr + "/realtime/stats"
	}
	if err := s.waitHTTP(probe, 30*time.Second); err != nil {
		return err
	}
	if useTLS { // the certificate is issued after the listener opens
		return s.waitTLS(s.Addr, 30*time.Second)
	}
	return s.waitTCP(s.Addr, 10*time.Second)
}

func (s *Server) startPocketBase(bin string, opts ServerOptions) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	data := filepath.Join(s.dir, "pb_data")
	out, err := exec.Command(bin, "--dir="+data, "superuser", "upsert", pbSuperEmail, pbSuperPassword).CombinedOutput()
	if err != nil {
		return fmt.Errorf("superuser upsert: %w: %s", err, out)
	}
	if err := s.spawn(bin, nil, "--dir="+data, "serve", "--http="+s.Addr); err != nil {
		return err
	}
	if err := s.waitHTTP("http://"+s.Addr+"/api/health", 30*time.Second); err != nil {
		return err
	}
	var auth struct {
		Token string `json:"token"`
	}
	if err := s.pbREST("POST", "/api/collections/_superusers/auth-with-password",
		map[string]any{"identity": pbSuperEmail, "password": pbSuperPassword}, &auth); err != nil {
		return err
	}
	s.superToken = auth.Token
	rule := ""
	if opts.OwnerRule {
		rule = OwnerRule
	}
	posts := map[string]any{
		"name": "posts", "type": "base", "listRule": rule, "viewRule": rule,
		"createRule": nil, "updateRule": nil, "deleteRule": nil,
		"fields": []map[string]any{
			{"name": "title", "type": "text"}, {"name": "author", "type": "text"}, {"name": "pad", "type": "text", "max": 100000},
			{"name": "pub", "type": "number"}, {"name": "seq", "type": "number"}, {"name": "ts", "type": "number"},
		},
	}
	if err := s.pbREST("POST", "/api/collections", posts, nil); err != nil {
		return err
	}
	if opts.Users > 0 {
		return s.pbCreateUsers(opts.Users)
	}
	return nil
}

// pbCreateUsers creates n users concurrently (password hashing is slow) and
// gets each a token by impersonation, which skips a second password check.
func (s *Server) pbCreateUsers(n int) error {
	s.UserIDs, s.UserTokens = make([]string, n), make([]string, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var rec struct {
					ID string `json:"id"`
				}
				err := s.pbREST("POST", "/api/collections/users/records", map[string]any{
					"email": fmt.Sprintf("user%d@bench.example.com", i), "password": pbUserPassword,
					"passwordConfirm": pbUserPassword, "verified": true,
				}, &rec)
				var tok struct {
					Token string `json:"token"`
				}
				if err == nil {
					err = s.pbREST("POST", "/api/collections/users/impersonate/"+rec.ID, map[string]any{"duration": 3600}, &tok)
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				s.UserIDs[i], s.UserTokens[i] = rec.ID, tok.Token
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return firstErr
}

func (s *Server) pbREST(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+s.Addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.superToken != "" {
		req.Header.Set("Authorization", s.superToken)
	}
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("pocketbase %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("pocketbase %s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (s *Server) spawn(bin string, env []string, args ...string) error {
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.PID, s.exited = cmd, cmd.Process.Pid, make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// Port is the site's port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Alive reports whether the process is still running.
func (s *Server) Alive() bool {
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *Server) waitHTTP(url string, timeout time.Duration) error {
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		if !s.Alive() {
			return errors.New("server exited during start")
		}
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Origin", "http://"+s.AdminAddr)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v (last: %v)", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitTLS waits until addr completes a TLS handshake (the certificate is not
// checked: it comes from the server's own internal CA).
func (s *Server) waitTLS(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second},
			Config: &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1"}}
		c, err := d.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if !s.Alive() {
			return errors.New("server exited during start")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s no TLS handshake after %v: %w", addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after 3 s) and removes its directory.
func (s *Server) Stop() {
	if s.cmd != nil && s.Alive() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(3 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	if os.Getenv("BENCH_KEEP_SERVER_DIRS") == "" {
		os.RemoveAll(s.dir)
	}
}

// LogTail is the end of the server's output.
func (s *Server) LogTail(lines int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// LogErrors counts the server's log lines that look like errors or panics.
func (s *Server) LogErrors() (n int, sample string) {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return 0, ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, "panic") || strings.Contains(l, "fatal") {
			n++
			if sample == "" {
				sample = line
			}
		}
	}
	return n, sample
}

// Subscriber is how this server's clients connect.
func (s *Server) Subscriber() ConnSpec {
	if s.Kind == KindMercure {
		return ConnSpec{Dialect: DialectMercure, Path: "/.well-known/mercure", Topics: []string{"posts"}}
	}
	return ConnSpec{Dialect: DialectPocketBase, Path: "/api/realtime", Topics: []string{"posts/*"}}
}

// Publish is how events enter this server.
func (s *Server) Publish() PublishTarget {
	switch s.Kind {
	case KindOurs:
		return PublishTarget{Kind: KindOurs, Addr: s.AdminAddr, Path: "/realtime/events",
			Headers: "Origin: http://" + s.AdminAddr + "\r\n", Conns: 1, BatchMax: 500, MinTick: 5 * time.Millisecond}
	case KindMercure:
		return PublishTarget{Kind: KindMercure, Addr: s.Addr, Path: "/.well-known/mercure",
			Headers: "Authorization: Bearer " + mercureJWT(mercureSecret) + "\r\n", Conns: 2, BatchMax: 1}
	default:
		return PublishTarget{Kind: KindPocketBase, Addr: s.Addr, Path: "/api/collections/posts/records",
			Headers: "Authorization: " + s.superToken + "\r\n", Conns: 4, BatchMax: 1}
	}
}

// Stats is ours' GET /realtime/stats, raw.
func (s *Server) Stats() (map[string]any, error) {
	if s.Kind != KindOurs {
		return nil, nil
	}
	req, _ := http.NewRequest("GET", "http://"+s.AdminAddr+"/realtime/stats", nil)
	req.Header.Set("Origin", "http://"+s.AdminAddr)
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// CPUProfile saves a Caddy server's CPU profile of the next d to path
// (the admin endpoint's /debug/pprof/profile).
func (s *Server) CPUProfile(path string, d time.Duration) error {
	secs := max(int(d.Seconds()), 1)
	return adminSave(s.AdminAddr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), path,
		time.Duration(secs)*time.Second+30*time.Second)
}

// adminSave saves what a GET of a Caddy admin endpoint's path answers to file.
func adminSave(adminAddr, path, file string, timeout time.Duration) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := adminGet(adminAddr, path, f, timeout); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// adminGet copies what a GET of a Caddy admin endpoint's path answers to w;
// an answer other than 200 is an error.
func adminGet(adminAddr, path string, w io.Writer, timeout time.Duration) error {
	req, _ := http.NewRequest("GET", "http://"+adminAddr+path, nil)
	req.Header.Set("Origin", "http://"+adminAddr)
	c := http.Client{Timeout: timeout}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", req.URL, resp.StatusCode)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
