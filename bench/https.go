//go:build linux

package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// The HTTPS streams bench's modes: how each stream reaches the server.
const (
	HTTPSModeH1    = "h1"    // HTTP/1.1 over TLS, one connection per stream
	HTTPSModeH2    = "h2"    // HTTP/2 over TLS, one connection per stream
	HTTPSModeH2x6  = "h2x6"  // HTTP/2 over TLS, 6 streams per connection (browser tabs sharing one)
	HTTPSModeH2Mix = "h2mix" // HTTP/2 over TLS, connections alternately carrying 1 and 6 streams
	HTTPSModePlain = "plain" // HTTP/1.1 without TLS, one connection per stream: the baseline
)

// HTTPSModes are all modes, in the order they run.
var HTTPSModes = []string{HTTPSModeH1, HTTPSModeH2, HTTPSModeH2x6, HTTPSModeH2Mix, HTTPSModePlain}

// HTTPSParams size the HTTPS streams bench (issue 13, workload a over TLS).
type HTTPSParams struct {
	Sizes       []int // streams open at each measurement, opened incrementally
	Runs        int
	Modes       []string
	Servers     []Kind
	Inflight    int           // connects in progress at once
	Settle      time.Duration // wait after the streams of a size are open, before reading the server
	Target      int           // the size whose ratio is checked against TargetRatio (h1, h2)
	TargetRatio float64       // ours/Mercure KB per stream at Target
	OursExtra   string        // extra subdirectives in ours' realtime block, ";"-separated ("" = the bench's usual config)
}

// HTTPSFull are the sizes.
func HTTPSFull() HTTPSParams {
	return HTTPSParams{Sizes: []int{1000, 5000, 10000}, Runs: 1, Modes: HTTPSModes,
		Servers: []Kind{KindOurs, KindMercure, KindFloor}, Inflight: 128, Settle: 3 * time.Second, Target: 5000, TargetRatio: 0.5}
}

// HTTPSQuick is for development: seconds per mode.
func HTTPSQuick() HTTPSParams {
	p := HTTPSFull()
	p.Sizes = []int{500, 1000}
	return p
}

// streamsPerConn is how many streams share the i-th connection in mode.
func streamsPerConn(mode string, i int) int {
	switch {
	case mode == HTTPSModeH2x6, mode == HTTPSModeH2Mix && i%2 == 1:
		return 6
	}
	return 1
}

// HTTPSBench runs the HTTPS streams bench: idle subscribed streams against
// ours and Mercure, both Caddy, over HTTP/1.1 and HTTP/2 with TLS and over
// plain HTTP/1.1.
type HTTPSBench struct {
	P          HTTPSParams
	Bins       Bins
	WorkDir    string
	ProfileDir string // heap and goroutine profiles of each server at the largest size; "" = none
	Log        io.Writer

	Records []RunRecord // Workload is the mode
}

func (hb *HTTPSBench) logf(format string, args ...any) {
	fmt.Fprintf(hb.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// RunAll runs every mode against every server, alternating the servers'
// order from run to run.
func (hb *HTTPSBench) RunAll() {
	for run := 1; run <= max(hb.P.Runs, 1); run++ {
		for _, mode := range hb.P.Modes {
			kinds := slices.Clone(hb.P.Servers)
			if run%2 == 0 {
				slices.Reverse(kinds)
			}
			for _, k := range kinds {
				hb.runOne(mode, k, run)
			}
		}
	}
}

func (hb *HTTPSBench) runOne(mode string, k Kind, run int) {
	rec := RunRecord{Workload: mode, Server: k, Run: run, Metrics: Metrics{}}
	hb.logf("%s run %d: %s", mode, run, k)
	start := time.Now()
	if err := hb.streams(mode, k, run, &rec); err != nil {
		rec.Error = err.Error()
		hb.logf("  error: %v", err)
	}
	rec.Seconds = time.Since(start).Seconds()
	hb.logf("  %.1fs: %s", rec.Seconds, metricLine(rec.Metrics))
	hb.Records = append(hb.Records, rec)
}

// streams is one run: a fresh server, streams opened size by size, the
// server read after each, one event published at the largest size.
func (hb *HTTPSBench) streams(mode string, k Kind, run int, rec *RunRecord) error {
	m := rec.Metrics
	note := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		rec.Notes = append(rec.Notes, msg)
		hb.logf("  note: %s", msg)
	}
	if l, err := loadAverage(); err == nil {
		m["load1_before"] = l
	}
	useTLS := mode != HTTPSModePlain
	opts := ServerOptions{TLS: useTLS}
	for _, line := range strings.Split(hb.P.OursExtra, ";") {
		if line = strings.TrimSpace(line); line != "" {
			opts.Realtime += "\t\t" + line + "\n"
		}
	}
	srv, err := StartServer(k, hb.Bins, hb.WorkDir, opts)
	if err != nil {
		return err
	}
	c := newStreamClient(mode, srv, useTLS)
	defer func() {
		c.closeAll()
		if !srv.Alive() {
			note("%s exited during the run: %s", k, srv.LogTail(5))
		}
		if n, sample := srv.LogErrors(); n > 0 {
			note("%s logged %d error lines, e.g. %s", k, n, truncate(sample, 300))
		}
		srv.Stop()
	}()

	time.Sleep(time.Second)
	base, err := readServer(srv)
	if err != nil {
		return err
	}
	m["rss_base_mb"] = mb(base.proc.RSS)
	m["heap_base_mb"] = mb(int64(base.heap))
	m["stack_base_mb"] = mb(int64(base.stack))
	m["goroutines_base"] = base.goroutines
	m["threads_base"] = float64(base.proc.Threads)
	baseLive, err := liveHeap(srv)
	if err != nil {
		return err
	}
	m["live_base_mb"] = mb(int64(baseLive))

	have := 0
	for _, n := range hb.P.Sizes {
		at := fmt.Sprintf("@%d", n)
		t0, before := time.Now(), c.connected.Load()
		c.connect(n-have, hb.P.Inflight)
		have = n
		connected := int(c.connected.Load())
		m["connected"+at] = float64(connected)
		m["connect_per_s"+at] = float64(int64(connected)-before) / time.Since(t0).Seconds()
		c.post.CloseIdleConnections() // only the streams stay open while the server is read
		time.Sleep(hb.P.Settle)
		r, err := readServer(srv)
		if err != nil {
			return err
		}
		per := func(v, b float64) float64 { return (v - b) / float64(n) / 1024 }
		m["rss_mb"+at] = mb(r.proc.RSS)
		m["kb_per_stream"+at] = per(float64(r.proc.RSS), float64(base.proc.RSS))
		m["heap_kb_per_stream"+at] = per(r.heap, base.heap)
		m["stack_kb_per_stream"+at] = per(r.stack, base.stack)
		m["goroutines_per_stream"+at] = (r.goroutines - base.goroutines) / float64(n)
		m["threads"+at] = float64(r.proc.Threads)
		// What the streams hold, without the garbage their setup left for the next GC.
		live, err := liveHeap(srv)
		if err != nil {
			return err
		}
		m["live_kb_per_stream"+at] = per(live, baseLive)
		if connected < n {
			return fmt.Errorf("only %d of %d streams connected at %d: %s", connected, n, n, c.failureSummary())
		}
		if err := c.droppedError(m, at); err != nil {
			return err
		}
	}

	n := have
	at := fmt.Sprintf("@%d", n)
	delivered := n
	if k != KindFloor { // the floor has no way to publish
		delivered, err = c.liveness(n, 30*time.Second)
		m["delivered"+at] = float64(delivered)
		m["delivered_ratio"+at] = float64(delivered) / float64(n)
		if err != nil {
			return fmt.Errorf("liveness at %d: %w", n, err)
		}
	}
	if hb.ProfileDir != "" {
		prefix := filepath.Join(hb.ProfileDir, fmt.Sprintf("%s-%s-run%d-%d", mode, k, run, n))
		for path, file := range map[string]string{"/debug/pprof/heap": prefix + "-heap.pprof",
			"/debug/pprof/goroutine?debug=1": prefix + "-goroutine.txt"} {
			if err := adminDownload(srv.AdminAddr, path, file); err != nil {
				note("profile %s: %v", path, err)
			}
		}
	}
	if err := c.droppedError(m, at); err != nil {
		return err
	}
	if delivered < n {
		return fmt.Errorf("liveness at %d: %d of %d streams got the event", n, delivered, n)
	}
	return nil
}

// serverReading is the server's process and Go runtime figures.
type serverReading struct {
	proc                    ProcSample
	heap, stack, goroutines float64
}

func readServer(srv *Server) (serverReading, error) {
	var r serverReading
	p, err := ReadProc(srv.PID)
	if err != nil {
		return r, err
	}
	r.proc = p
	g, err := adminMetrics(srv.AdminAddr, "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines")
	if err != nil {
		return r, err
	}
	r.heap, r.stack, r.goroutines = g[0], g[1], g[2]
	return r, nil
}

// liveHeap forces a garbage collection in the server (its admin endpoint's
// /debug/pprof/heap?gc=1) and returns the heap then allocated: what is live.
func liveHeap(srv *Server) (float64, error) {
	if err := adminGet(srv.AdminAddr, "/debug/pprof/heap?gc=1", io.Discard, 60*time.Second); err != nil {
		return 0, err
	}
	v, err := adminMetrics(srv.AdminAddr, "go_memstats_heap_alloc_bytes")
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// adminMetrics reads the named unlabelled metrics from a Caddy admin endpoint's /metrics.
func adminMetrics(adminAddr string, names ...string) ([]float64, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := make([]float64, len(names))
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if i := slices.Index(names, name); ok && i >= 0 {
			if out[i], err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			found++
		}
	}
	if found < len(names) {
		return nil, fmt.Errorf("%s/metrics lacks some of %v", adminAddr, names)
	}
	return out, sc.Err()
}

// adminDownload saves a GET of a Caddy admin endpoint path to file.
func adminDownload(adminAddr, path, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return adminSave(adminAddr, path, file, 60*time.Second)
}

func loadAverage() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.Fields(string(b))[0], 64)
}

// ---- the client: a goroutine per stream, crypto/tls and x/net/http2 ----

// streamClient holds the streams of one run. Certificates are not verified
// (InsecureSkipVerify, ServerName 127.0.0.1): they come from the server's
// own internal CA, and verification would only add client work.
type streamClient struct {
	mode   string
	srv    *Server
	useTLS bool
	scheme string
	h2     *http2.Transport
	post   *http.Transport // subscription POSTs and Mercure's publish: HTTP/1.1 keep-alive
	ctx    context.Context
	cancel context.CancelFunc

	opened int // connections started by connect (h2mix alternates 1 and 6 streams on them)

	mu        sync.Mutex
	conns     []net.Conn
	fails     map[string]int
	lifetimes []float64 // seconds from subscribed to ended, of the dropped streams
	closed    bool
	wg        sync.WaitGroup // stream readers

	connected atomic.Int64 // streams subscribed
	failed    atomic.Int64
	dropped   atomic.Int64 // subscribed streams that ended before closeAll
	received  atomic.Int64 // streams that got at least one event after subscribing
}

func newStreamClient(mode string, srv *Server, useTLS bool) *streamClient {
	c := &streamClient{mode: mode, srv: srv, useTLS: useTLS, scheme: "http", fails: map[string]int{},
		h2: &http2.Transport{DisableCompression: true}}
	if useTLS {
		c.scheme = "https"
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.post = &http.Transport{
		TLSClientConfig:     c.tlsConfig("http/1.1"),
		MaxIdleConnsPerHost: 32, MaxConnsPerHost: 32,
		DisableCompression: true,
	}
	return c
}

func (c *streamClient) tlsConfig(proto string) *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1", NextProtos: []string{proto}}
}

func (c *streamClient) fail(why string) {
	c.failed.Add(1)
	c.mu.Lock()
	c.fails[why]++
	c.mu.Unlock()
}

// droppedError records the subscribed streams that ended so far; any is an
// error: the figures of this size counted streams that were no longer open.
func (c *streamClient) droppedError(m Metrics, at string) error {
	d := c.dropped.Load()
	if d == 0 {
		return nil
	}
	c.mu.Lock()
	lived := quantile(c.lifetimes, 0.5)
	c.mu.Unlock()
	// This size's figures counted streams already gone: drop them.
	for _, key := range []string{"rss_mb", "kb_per_stream", "heap_kb_per_stream", "stack_kb_per_stream", "goroutines_per_stream", "threads"} {
		delete(m, key+at)
	}
	m["dropped"+at] = float64(d)
	m["dropped_lifetime_s"+at] = lived
	return fmt.Errorf("%d subscribed streams ended before the run closed them (at %s streams; median %.1f s after subscribing): %s",
		d, at[1:], lived, c.failureSummary())
}

func (c *streamClient) failureSummary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.fails) == 0 {
		return "no failure recorded"
	}
	return topReasons(copyMap(c.fails))
}

// connect opens n more streams, inflight connections at a time, and
// returns when each is subscribed or failed.
func (c *streamClient) connect(n, inflight int) {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range max(inflight, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				c.openConn(k)
			}
		}()
	}
	for n > 0 {
		k := min(streamsPerConn(c.mode, c.opened), n)
		c.opened++
		jobs <- k
		n -= k
	}
	close(jobs)
	wg.Wait()
}

// streamTimeout bounds each step of opening a stream.
const streamTimeout = 20 * time.Second

// openConn opens one connection carrying k streams and subscribes them.
func (c *streamClient) openConn(k int) {
	conn, err := c.dial()
	if err != nil {
		for range k {
			c.fail(reason("dial", err))
		}
		return
	}
	if !c.track(conn) {
		return
	}
	var cc *http2.ClientConn
	if c.mode == HTTPSModeH2 || c.mode == HTTPSModeH2x6 || c.mode == HTTPSModeH2Mix {
		if cc, err = c.h2.NewClientConn(conn); err != nil {
			conn.Close()
			for range k {
				c.fail(reason("h2 client conn", err))
			}
			return
		}
	}
	var wg sync.WaitGroup
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.openStream(conn, cc); err != nil {
				c.fail(err.Error())
				conn.Close() // a stream that failed part way leaves its connection unusable
				return
			}
			c.connected.Add(1)
		}()
	}
	wg.Wait()
}

// track records conn for closeAll; false if the run is already closing.
func (c *streamClient) track(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close()
		return false
	}
	c.conns = append(c.conns, conn)
	return true
}

func (c *streamClient) dial() (net.Conn, error) {
	d := net.Dialer{Timeout: streamTimeout}
	conn, err := d.DialContext(c.ctx, "tcp", c.srv.Addr)
	if err != nil || !c.useTLS {
		return conn, err
	}
	proto := "http/1.1"
	if c.mode != HTTPSModeH1 {
		proto = "h2"
	}
	tc := tls.Client(conn, c.tlsConfig(proto))
	ctx, cancel := context.WithTimeout(c.ctx, streamTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		tc.Close()
		return nil, fmt.Errorf("ALPN: server chose %q, not %q", got, proto)
	}
	return tc, nil
}

// sseStream is one stream's receiving side.
type sseStream struct {
	c       *streamClient
	parser  sseParser
	hello   chan string  // the clientId of PB_CONNECT
	ok      atomic.Bool  // subscribed
	since   atomic.Int64 // when it was subscribed, unix ns
	events  int
	counted bool
}

func (s *sseStream) onEvent(event, _, data []byte) {
	if string(event) == "PB_CONNECT" {
		var v struct {
			ClientID string `json:"clientId"`
		}
		json.Unmarshal(data, &v)
		select {
		case s.hello <- v.ClientID:
		default:
		}
		return
	}
	s.events++
	if !s.counted {
		s.counted = true
		s.c.received.Add(1)
	}
}

func (s *sseStream) body(p []byte) { s.parser.feed(p, s) }

// path is what a stream GETs.
func (c *streamClient) path() string {
	if c.srv.Kind == KindMercure {
		return "/.well-known/mercure?topic=posts"
	}
	return "/api/realtime"
}

// openStream starts one stream on conn (through cc for HTTP/2) and returns
// once it is subscribed: ours after PB_CONNECT and the subscription POST,
// Mercure once the response head arrived.
func (c *streamClient) openStream(conn net.Conn, cc *http2.ClientConn) error {
	s := &sseStream{c: c, hello: make(chan string, 1)}
	head := make(chan error, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var err error
		if cc != nil {
			err = c.readH2(cc, s, head)
		} else {
			err = c.readH1(conn, s, head)
		}
		select {
		case head <- err: // failed before the head
		default:
		}
		if s.ok.Load() && c.ctx.Err() == nil { // a subscribed stream ended during the run
			c.dropped.Add(1)
			c.mu.Lock()
			c.fails["stream ended: "+err.Error()]++
			c.lifetimes = append(c.lifetimes, time.Since(time.Unix(0, s.since.Load())).Seconds())
			c.mu.Unlock()
		}
	}()
	timer := time.NewTimer(streamTimeout)
	defer timer.Stop()
	select {
	case err := <-head:
		if err != nil {
			return err
		}
	case <-timer.C:
		return errors.New("no response head")
	}
	if c.srv.Kind != KindMercure {
		var id string
		select {
		case id = <-s.hello:
		case <-timer.C:
			return errors.New("no PB_CONNECT")
		}
		if err := c.subscribe(id); err != nil {
			return err
		}
	}
	s.since.Store(time.Now().UnixNano())
	s.ok.Store(true)
	return nil
}

// readH1 writes the GET on conn and reads the chunked SSE response until the
// connection ends; head gets nil once a 200 head arrived.
func (c *streamClient) readH1(conn net.Conn, s *sseStream, head chan<- error) error {
	req := "GET " + c.path() + " HTTP/1.1\r\nHost: " + c.srv.Addr + "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return errors.New(reason("write", err))
	}
	var h respHead
	var chunks chunkDecoder
	inBody := false
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		p := buf[:n]
		if !inBody && n > 0 {
			used, done, herr := h.feed(p)
			if herr != nil {
				return herr
			}
			p = p[used:]
			if done {
				if h.Status != 200 || !h.Chunked {
					return fmt.Errorf("GET answered %d (chunked %v)", h.Status, h.Chunked)
				}
				inBody = true
				head <- nil
			}
		}
		if inBody && len(p) > 0 {
			if _, end, cerr := chunks.feed(p, s); cerr != nil {
				return cerr
			} else if end {
				return errors.New("the server ended the response")
			}
		}
		if err != nil {
			return errors.New(reason("read", err))
		}
	}
}

// readH2 sends the GET as a stream of cc and reads its body until it ends.
func (c *streamClient) readH2(cc *http2.ClientConn, s *sseStream, head chan<- error) error {
	req, err := http.NewRequestWithContext(c.ctx, "GET", "https://"+c.srv.Addr+c.path(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return errors.New(reason("h2 GET", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET answered %d", resp.StatusCode)
	}
	head <- nil
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		s.parser.feed(buf[:n], s)
		if err != nil {
			return errors.New(reason("read", err))
		}
	}
}

// subscribe POSTs ours' subscription for clientID.
func (c *streamClient) subscribe(clientID string) error {
	if clientID == "" {
		return errors.New("PB_CONNECT without a clientId")
	}
	body := `{"clientId":"` + clientID + `","subscriptions":["posts/*"]}`
	req, _ := http.NewRequestWithContext(c.ctx, "POST", c.scheme+"://"+c.srv.Addr+"/api/realtime", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, "subscription POST")
}

func (c *streamClient) do(req *http.Request, what string) error {
	hc := http.Client{Transport: c.post, Timeout: streamTimeout}
	resp, err := hc.Do(req)
	if err != nil {
		return errors.New(reason(what, err))
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, bodySample))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %d: %s", what, resp.StatusCode, truncate(string(b), 100))
	}
	return nil
}

// liveness publishes one event and waits until want streams got it or
// timeout; it returns how many did.
func (c *streamClient) liveness(want int, timeout time.Duration) (int, error) {
	c0 := c.received.Load()
	var req *http.Request
	if c.srv.Kind == KindMercure {
		form := url.Values{"topic": {"posts"}, "data": {`{"id":"live1","collectionName":"posts","title":"liveness"}`}}
		req, _ = http.NewRequest("POST", c.scheme+"://"+c.srv.Addr+"/.well-known/mercure", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+mercureJWT(mercureSecret))
	} else {
		body := `[{"action":"create","record":{"id":"live1","collectionName":"posts","title":"liveness"}}]`
		req, _ = http.NewRequest("POST", "http://"+c.srv.AdminAddr+"/realtime/events", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "http://"+c.srv.AdminAddr)
	}
	if err := c.do(req, "publish"); err != nil {
		return int(c.received.Load() - c0), err
	}
	deadline := time.Now().Add(timeout)
	for {
		got := int(c.received.Load() - c0)
		if got >= want || time.Now().After(deadline) {
			return got, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// closeAll closes every connection and waits (a while) for the readers.
func (c *streamClient) closeAll() {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	c.cancel()
	for _, conn := range conns {
		conn.Close()
	}
	c.post.CloseIdleConnections()
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// reason is err as a failure category: the message without addresses.
func reason(what string, err error) string {
	msg := err.Error()
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		msg = op.Err.Error()
	}
	return what + ": " + msg
}
