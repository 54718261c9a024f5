//go:build linux

package bench

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Params size the workloads; Quick shrinks them for development.
type Params struct {
	IdleSizes []int // a

	FanoutSizes  []int // b
	FanoutTrials int

	SustainedBig   int       // c: subscribers of the low-rate phase
	SustainedRates []float64 // events/s with SustainedBig subscribers
	SustainedSmall int       // c: subscribers of the high-rate phase
	SmallRates     []float64
	SustainedDur   time.Duration

	ChurnConns  int // d
	ChurnDur    time.Duration
	ChurnWindow int // requests in flight per loop

	StormConns    int // e
	StormInflight int // connects at once in the connect-rate phase

	StallConns    int // f: subscribers, plus 1% more that stall
	StallRate     float64
	StallPad      int           // bytes of padding per record, so stalled sockets fill within the run
	StallBaseline time.Duration // the same load without stalled clients first
	StallDur      time.Duration

	AuthConns int // h
	AuthUsers int
	AuthRate  float64
	AuthDur   time.Duration
}

// FullParams are the sizes of BENCH.md.
func FullParams() Params {
	return Params{
		IdleSizes:   []int{1000, 5000, 10000, 19000},
		FanoutSizes: []int{1000, 10000}, FanoutTrials: 20,
		SustainedBig: 10000, SustainedRates: []float64{5, 20, 50},
		SustainedSmall: 1000, SmallRates: []float64{100, 1000},
		SustainedDur: 6 * time.Second,
		ChurnConns:   1000, ChurnDur: 5 * time.Second, ChurnWindow: 32,
		StormConns: 10000, StormInflight: 1000,
		StallConns: 1000, StallRate: 100, StallPad: 2048, StallBaseline: 6 * time.Second, StallDur: 30 * time.Second,
		AuthConns: 1000, AuthUsers: 100, AuthRate: 2000, AuthDur: 6 * time.Second,
	}
}

// QuickParams run every workload at small scale in about two minutes.
func QuickParams() Params {
	return Params{
		IdleSizes:   []int{500, 1000},
		FanoutSizes: []int{200, 1000}, FanoutTrials: 10,
		SustainedBig: 1000, SustainedRates: []float64{20, 100},
		SustainedSmall: 200, SmallRates: []float64{500},
		SustainedDur: 2500 * time.Millisecond,
		ChurnConns:   500, ChurnDur: 2 * time.Second, ChurnWindow: 32,
		StormConns: 1000, StormInflight: 500,
		StallConns: 1000, StallRate: 100, StallPad: 2048, StallBaseline: 2500 * time.Millisecond, StallDur: 5 * time.Second,
		AuthConns: 200, AuthUsers: 20, AuthRate: 500, AuthDur: 2500 * time.Millisecond,
	}
}

// Workload is one of BENCH.md's workloads.
type Workload struct {
	ID, Name string
	Kinds    []Kind
	run      func(b *Bench, k Kind, m Metrics) error
}

// Workloads in the order they run; g is derived from the others in the report.
var Workloads = []Workload{
	{"a", "idle subscribed connections", allKinds, (*Bench).idle},
	{"b", "one event to N subscribers", allKinds, (*Bench).fanout},
	{"c", "sustained events", allKinds, (*Bench).sustained},
	{"d", "subscription POST churn", pbKinds, (*Bench).churn},
	{"e", "connect rate and reconnect storm", pbKinds, (*Bench).storm},
	{"f", "sustained events with 1% stalled clients", pbKinds, (*Bench).stalled},
	{"h", "owner rule, authenticated subscribers", pbKinds, (*Bench).authed},
}

var (
	allKinds = []Kind{KindOurs, KindPocketBase, KindMercure}
	pbKinds  = []Kind{KindOurs, KindPocketBase}
)

// Metrics of one run: name@parameters -> value.
type Metrics map[string]float64

// RunRecord is one run of one workload against one server.
type RunRecord struct {
	Workload string   `json:"workload"`
	Server   Kind     `json:"server"`
	Run      int      `json:"run"`
	Seconds  float64  `json:"seconds"`
	Metrics  Metrics  `json:"metrics"`
	Notes    []string `json:"notes,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Bench runs the workloads.
type Bench struct {
	P       Params
	Runs    int
	Bins    Bins
	WorkDir string
	Only    map[string]bool // workload ids; empty = all
	Kinds   map[Kind]bool   // servers; empty = all
	Log     io.Writer

	Records []RunRecord
	notes   *[]string // of the run in progress
	pubBase int       // next publisher id of the session in progress
}

func (b *Bench) logf(format string, args ...any) {
	fmt.Fprintf(b.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (b *Bench) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	*b.notes = append(*b.notes, msg)
	b.logf("  note: %s", msg)
}

// RunAll runs the selected workloads, alternating servers run by run.
func (b *Bench) RunAll() {
	for _, w := range Workloads {
		if len(b.Only) > 0 && !b.Only[w.ID] {
			continue
		}
		for run := 1; run <= b.Runs; run++ {
			for _, k := range w.Kinds {
				if len(b.Kinds) > 0 && !b.Kinds[k] {
					continue
				}
				b.runOne(w, k, run)
			}
		}
	}
}

func (b *Bench) runOne(w Workload, k Kind, run int) {
	rec := RunRecord{Workload: w.ID, Server: k, Run: run, Metrics: Metrics{}}
	b.notes = &rec.Notes
	b.logf("%s (%s) run %d: %s", w.ID, w.Name, run, k)
	start := time.Now()
	if err := w.run(b, k, rec.Metrics); err != nil {
		rec.Error = err.Error()
		b.logf("  error: %v", err)
	}
	rec.Seconds = time.Since(start).Seconds()
	b.logf("  %.1fs: %s", rec.Seconds, metricLine(rec.Metrics))
	b.Records = append(b.Records, rec)
}

// metricLine is a run's metrics on one line, sorted by name, for the log.
func metricLine(m Metrics) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%.4g", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// session is one fresh server with a sampler and a load generator on it.
type session struct {
	b       *Bench
	srv     *Server
	lg      *LoadGen
	sampler *Sampler
	auth    *AuthServer
	base    ProcSample // the server at rest, before any client
	pad     int        // padding bytes per published record
}

func (b *Bench) open(k Kind, opts ServerOptions) (*session, error) {
	s := &session{b: b}
	b.pubBase = 0
	srv, err := StartServer(k, b.Bins, b.WorkDir, opts)
	if err != nil {
		return nil, err
	}
	s.srv = srv
	lg, err := NewLoadGen(srv.Addr, 4)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	s.lg = lg
	s.sampler = StartSampler(srv.PID, 250*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	s.base, err = ReadProc(srv.PID)
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// close tears the session down and notes what the server did wrong.
func (s *session) close() {
	if !s.srv.Alive() {
		s.b.note("%s exited during the run: %s", s.srv.Kind, s.srv.LogTail(5))
	}
	if n, sample := s.srv.LogErrors(); n > 0 {
		s.b.note("%s logged %d error lines, e.g. %s", s.srv.Kind, n, truncate(sample, 300))
	}
	s.lg.Close()
	s.sampler.Stop()
	s.srv.Stop()
	if s.auth != nil {
		s.auth.Close()
	}
}

// connect opens n subscribers and waits for them, noting failures.
func (s *session) connect(spec ConnSpec, n int, timeout time.Duration) (*ConnGroup, error) {
	g := s.lg.Connect(&spec, n)
	err := g.Wait(timeout)
	st := g.Stats()
	if st.Failed > 0 {
		s.b.note("%d of %d connections failed: %s", st.Failed, n, topReasons(st.Failures))
	}
	if err != nil {
		return g, err
	}
	if st.Subscribed < n/2 {
		return g, fmt.Errorf("only %d of %d connections subscribed: %s", st.Subscribed, n, topReasons(st.Failures))
	}
	return g, nil
}

func (s *session) publisher(authorOf func(int, int64) string) (*Publisher, error) {
	t := s.srv.Publish()
	t.PubBase = s.b.pubBase
	t.Pad = s.pad
	s.b.pubBase += t.Conns
	return NewPublisher(t, authorOf)
}

func (s *session) goroutines() float64 {
	if s.srv.AdminAddr == "" {
		return -1
	}
	n, err := Goroutines(s.srv.AdminAddr)
	if err != nil {
		return -1
	}
	return float64(n)
}

// ---- a: idle connections ----

func (b *Bench) idle(k Kind, m Metrics) error {
	s, err := b.open(k, ServerOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	m["rss_base_mb"] = mb(s.base.RSS)
	have := 0
	for _, n := range b.P.IdleSizes {
		g, err := s.connect(s.srv.Subscriber(), n-have, 120*time.Second)
		if err != nil {
			return fmt.Errorf("connecting %d: %w", n, err)
		}
		have = n
		time.Sleep(2 * time.Second)
		p, err := ReadProc(s.srv.PID)
		if err != nil {
			return err
		}
		at := fmt.Sprintf("@%d", n)
		m["rss_mb"+at] = mb(p.RSS)
		m["rss_per_conn_kb"+at] = float64(p.RSS-s.base.RSS) / float64(n) / 1024
		m["threads"+at] = float64(p.Threads)
		if gr := s.goroutines(); gr >= 0 {
			m["goroutines"+at] = gr
		}
		m["connect_per_s"+at] = float64(g.Stats().Subscribed) / g.Stats().Elapsed.Seconds()
	}
	return nil
}

// ---- b: one event to N subscribers ----

func (b *Bench) fanout(k Kind, m Metrics) error {
	s, err := b.open(k, ServerOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	have := 0
	var groups []*ConnGroup
	for _, n := range b.P.FanoutSizes {
		g, err := s.connect(s.srv.Subscriber(), n-have, 120*time.Second)
		if err != nil {
			return fmt.Errorf("connecting %d: %w", n, err)
		}
		groups = append(groups, g)
		have = n
		time.Sleep(time.Second)
		pub, err := s.publisher(nil)
		if err != nil {
			return err
		}
		s.lg.TrackEvents(true)
		s.lg.ResetLatency()
		c0 := s.lg.Counters()
		var lastDelivery []float64
		incomplete := 0
		for range b.P.FanoutTrials {
			key, err := pub.SendOne()
			if err != nil {
				pub.Close()
				return err
			}
			st, ok := waitEvent(s.lg, key, int64(n), 10*time.Second)
			if !ok {
				incomplete++
			}
			lastDelivery = append(lastDelivery, float64(st.MaxLatency)/1e6)
			time.Sleep(200 * time.Millisecond)
		}
		s.lg.TrackEvents(false)
		pub.Drain(5 * time.Second)
		pub.Close()
		drainDeliveries(s.lg, time.Second, 5*time.Second)
		at := fmt.Sprintf("@%d", n)
		m["last_delivery_p50_ms"+at] = quantile(lastDelivery, 0.5)
		m["last_delivery_p99_ms"+at] = quantile(lastDelivery, 0.99)
		lat := s.lg.Latency()
		m["delivery_p50_ms"+at] = ms(lat.Quantile(0.5))
		m["delivery_p99_ms"+at] = ms(lat.Quantile(0.99))
		m["incomplete_trials"+at] = float64(incomplete)
		b.integrity(s, m, at, c0, pub, nil, groups...)
	}
	return nil
}

// waitEvent polls until key reached want subscribers or timeout.
func waitEvent(lg *LoadGen, key EventKey, want int64, timeout time.Duration) (EventStat, bool) {
	deadline := time.Now().Add(timeout)
	for {
		st := lg.EventStats()[key]
		if st.Deliveries >= want {
			return st, true
		}
		if time.Now().After(deadline) {
			return st, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// drainDeliveries waits until no frame arrived for quiet, at most max.
func drainDeliveries(lg *LoadGen, quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	last := lg.Counters().Delivered
	still := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n := lg.Counters().Delivered
		if n != last {
			last, still = n, time.Now()
			continue
		}
		if time.Since(still) >= quiet {
			return
		}
	}
}

// integrity records losses, duplicates and order inversions since c0 (workload g).
func (b *Bench) integrity(s *session, m Metrics, at string, c0 Counters, pub *Publisher,
	expect func(user, pub int, seq int64) bool, groups ...*ConnGroup) {
	c1 := s.lg.Counters()
	v := s.lg.Verify(pub.Acked(), expect, groups...)
	ps := pub.Stats()
	m["lost"+at] = float64(v.Missing)
	m["dup"+at] = float64(c1.Dups - c0.Dups)
	m["inversions"+at] = float64(c1.Inversions - c0.Inversions)
	m["closed_by_server"+at] = float64(v.ClosedHealthy)
	m["published"+at] = float64(ps.Acked)
	if v.Missing > 0 {
		b.note("%s: %d deliveries of %d expected never arrived on %d of %d connections", at, v.Missing, v.Expected, v.ConnsMissing, v.Checked)
	}
	if v.ClosedHealthy > 0 {
		b.note("%s: the server closed %d healthy subscribed connections", at, v.ClosedHealthy)
	}
	if c1.Foreign > c0.Foreign || c1.ReqRetries > c0.ReqRetries {
		b.note("%s: %d events without a stamp, %d subscription POSTs re-sent after a keep-alive socket closed", at, c1.Foreign-c0.Foreign, c1.ReqRetries-c0.ReqRetries)
	}
	if c1.Dups > c0.Dups || c1.Inversions > c0.Inversions {
		b.note("%s: %d duplicate and %d out-of-order deliveries", at, c1.Dups-c0.Dups, c1.Inversions-c0.Inversions)
	}
	answered := 0
	for _, n := range ps.Statuses {
		answered += n
	}
	if unanswered := ps.Requests - int64(answered); unanswered > 0 {
		b.note("%s: %d of %d publish requests still unanswered when the publisher closed (the server fell behind)", at, unanswered, ps.Requests)
	}
	if ok := ps.Statuses[200] + ps.Statuses[201] + ps.Statuses[204]; ok < answered || len(ps.Errors) > 0 {
		b.note("%s: publish answers %v, errors %s", at, ps.Statuses, topReasons(ps.Errors))
	}
}

// ---- c: sustained events ----

func (b *Bench) sustained(k Kind, m Metrics) error {
	if err := b.sustainedPhase(k, m, b.P.SustainedBig, b.P.SustainedRates); err != nil {
		return err
	}
	return b.sustainedPhase(k, m, b.P.SustainedSmall, b.P.SmallRates)
}

func (b *Bench) sustainedPhase(k Kind, m Metrics, n int, rates []float64) error {
	s, err := b.open(k, ServerOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	g, err := s.connect(s.srv.Subscriber(), n, 120*time.Second)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	for _, rate := range rates {
		at := fmt.Sprintf("@%dx%g", n, rate)
		if err := b.steady(s, m, at, rate, b.P.SustainedDur, nil, nil, float64(n), g); err != nil {
			return err
		}
	}
	return nil
}

// steady publishes rate events/s for d and measures the window after a
// one-second warm-up: deliveries/s, server CPU and syscalls per delivery,
// latency (window and drain), then integrity. fanout is the deliveries one event should make.
func (b *Bench) steady(s *session, m Metrics, at string, rate float64, d time.Duration,
	authorOf func(int, int64) string, expect func(int, int, int64) bool, fanout float64, groups ...*ConnGroup) error {
	pub, err := s.publisher(authorOf)
	if err != nil {
		return err
	}
	c0 := s.lg.Counters()
	done := make(chan struct{})
	go func() { pub.Run(rate, d); close(done) }()
	warm := time.Second
	time.Sleep(warm)
	s.lg.ResetLatency()
	s.sampler.ResetPeak()
	w0, p0, self0 := s.lg.Counters(), mustProc(s.srv.PID), mustProc(selfPID)
	t0 := time.Now()
	time.Sleep(d - warm)
	w1, p1, self1 := s.lg.Counters(), mustProc(s.srv.PID), mustProc(selfPID)
	window := time.Since(t0).Seconds()
	<-done
	pub.Drain(3 * time.Second)
	pub.Close()
	drainDeliveries(s.lg, time.Second, 10*time.Second)
	lat := s.lg.Latency()
	peakRSS, peakThreads := s.sampler.Peak()

	delivered := float64(w1.Delivered - w0.Delivered)
	m["offered_msg_per_s"+at] = rate * fanout
	m["delivered_msg_per_s"+at] = delivered / window
	m["events_acked_per_s"+at] = float64(pub.Stats().Acked) / d.Seconds()
	m["server_cpu_pct"+at] = 100 * (p1.CPU - p0.CPU).Seconds() / window
	m["server_sys_pct"+at] = 100 * (p1.SysCPU - p0.SysCPU).Seconds() / window
	m["client_cpu_pct"+at] = 100 * (self1.CPU - self0.CPU).Seconds() / window
	if delivered > 0 {
		m["server_cpu_us_per_msg"+at] = float64((p1.CPU - p0.CPU).Microseconds()) / delivered
		m["server_writes_per_msg"+at] = float64(p1.SysW-p0.SysW) / delivered
		m["client_reads_per_msg"+at] = float64(w1.Reads-w0.Reads) / delivered
	}
	m["latency_p50_ms"+at] = ms(lat.Quantile(0.5))
	m["latency_p99_ms"+at] = ms(lat.Quantile(0.99))
	m["latency_max_ms"+at] = ms(lat.Max())
	m["rss_peak_mb"+at] = mb(peakRSS)
	m["threads_peak"+at] = float64(peakThreads)
	if gr := s.goroutines(); gr >= 0 {
		m["goroutines_end"+at] = gr
	}
	b.integrity(s, m, at, c0, pub, expect, groups...)
	return nil
}

var selfPID = os.Getpid()

func mustProc(pid int) ProcSample {
	p, _ := ReadProc(pid)
	return p
}

// ---- d: subscription churn ----

func (b *Bench) churn(k Kind, m Metrics) error {
	s, err := b.open(k, ServerOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	g, err := s.connect(s.srv.Subscriber(), b.P.ChurnConns, 60*time.Second)
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	p0, self0 := mustProc(s.srv.PID), mustProc(selfPID)
	res := s.lg.Churn(g, b.P.ChurnDur, b.P.ChurnWindow)
	p1, self1 := mustProc(s.srv.PID), mustProc(selfPID)
	m["server_cpu_pct"] = 100 * (p1.CPU - p0.CPU).Seconds() / res.Elapsed.Seconds()
	m["client_cpu_pct"] = 100 * (self1.CPU - self0.CPU).Seconds() / res.Elapsed.Seconds()
	m["requests_per_s"] = float64(res.OK) / res.Elapsed.Seconds()
	m["p50_ms"] = ms(res.Latency.Quantile(0.5))
	m["p99_ms"] = ms(res.Latency.Quantile(0.99))
	m["failed"] = float64(res.Failed)
	if res.OK > 0 {
		m["server_cpu_us_per_req"] = float64((p1.CPU - p0.CPU).Microseconds()) / float64(res.OK)
	}
	if res.Failed > 0 {
		b.note("churn: %d of %d POSTs failed: %s", res.Failed, res.Requests, topReasons(res.Errors))
	}
	return nil
}

// ---- e: connect rate and reconnect storm ----

func (b *Bench) storm(k Kind, m Metrics) error {
	s, err := b.open(k, ServerOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	n := b.P.StormConns
	spec := s.srv.Subscriber()
	spec.MaxInflight = b.P.StormInflight
	g, err := s.connect(spec, n, 120*time.Second)
	if err != nil {
		return err
	}
	st := g.Stats()
	m["connect_per_s"] = float64(st.Subscribed) / st.Elapsed.Seconds()
	m["connect_p99_ms"] = float64(st.P99) / 1e6
	time.Sleep(time.Second)

	s.lg.CloseAll()
	spec = s.srv.Subscriber()
	spec.MaxInflight = n
	g2 := s.lg.Connect(&spec, n)
	werr := g2.Wait(90 * time.Second)
	st2 := g2.Stats()
	m["storm_s"] = st2.Elapsed.Seconds()
	m["storm_connect_p50_ms"] = float64(st2.ConnectP50) / 1e6
	m["storm_connect_p99_ms"] = float64(st2.P99) / 1e6
	m["storm_failed"] = float64(st2.Failed)
	m["storm_subscribed"] = float64(st2.Subscribed)
	if st2.Failed > 0 {
		b.note("storm: %d of %d reconnects failed: %s", st2.Failed, n, topReasons(st2.Failures))
	}
	if werr != nil {
		m["storm_s"] = 90
		b.note("storm: %v", werr)
	}
	return nil
}

// ---- f: 1% of clients stop reading ----

// stalled runs the same load twice on one server: first with healthy
// clients only, then with 1% more clients that subscribe and stop reading.
// Records are padded so that a stalled client's socket buffers (which the
// kernel grows to megabytes) fill within the run.
func (b *Bench) stalled(k Kind, m Metrics) error {
	s, err := b.open(k, ServerOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	s.pad = b.P.StallPad
	n, nStalled := b.P.StallConns, max(b.P.StallConns/100, 1)
	healthy, err := s.connect(s.srv.Subscriber(), n, 120*time.Second)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	if err := b.steady(s, m, "@baseline", b.P.StallRate, b.P.StallBaseline, nil, nil, float64(n), healthy); err != nil {
		return err
	}

	spec := s.srv.Subscriber()
	spec.Stall = true
	spec.RcvBuf = 4096
	stalled, err := s.connect(spec, nStalled, 60*time.Second)
	if err != nil {
		return err
	}
	rss0 := mustProc(s.srv.PID).RSS
	// Watch the server's side of the stalled sockets while the load runs.
	port := s.srv.Port()
	stalledAt := time.Now()
	stop := make(chan struct{})
	watched := make(chan [3]float64)
	go func() {
		first, all, last := -1.0, -1.0, 0
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				watched <- [3]float64{first, all, float64(last)}
				return
			case <-t.C:
			}
			n := evictedCount(s.lg, stalled, port)
			since := time.Since(stalledAt).Seconds()
			if n > 0 && first < 0 {
				first = since
			}
			if n >= nStalled && all < 0 {
				all = since
			}
			last = n
		}
	}()
	err = b.steady(s, m, "@stalled", b.P.StallRate, b.P.StallDur, nil, nil, float64(n), healthy)
	close(stop)
	ev := <-watched
	if err != nil {
		return err
	}
	m["rss_growth_mb"] = m["rss_peak_mb@stalled"] - mb(rss0)
	m["p99_ratio"] = m["latency_p99_ms@stalled"] / max(m["latency_p99_ms@baseline"], 1e-3)
	m["stalled"] = float64(nStalled)
	m["stalled_evicted"] = float64(evictedCount(s.lg, stalled, port))
	if ev[0] >= 0 {
		m["first_eviction_s"] = ev[0]
	}
	if ev[1] >= 0 {
		m["all_evicted_s"] = ev[1]
	}
	if stats, err := s.srv.Stats(); err == nil && stats != nil {
		if ev, ok := stats["evictions"].(map[string]any); ok {
			for reason, v := range ev {
				f, _ := v.(float64)
				m["server_evictions_"+reason] = f
			}
		}
	}
	return nil
}

// ---- h: owner rule with authenticated subscribers ----

func (b *Bench) authed(k Kind, m Metrics) error {
	users := b.P.AuthUsers
	opts := ServerOptions{OwnerRule: true}
	var auth *AuthServer
	if k == KindOurs {
		var err error
		if auth, err = StartAuthServer(users); err != nil {
			return err
		}
		opts.AuthURL = auth.URL
	} else {
		opts.Users = users
	}
	setup := time.Now()
	s, err := b.open(k, opts)
	if err != nil {
		if auth != nil {
			auth.Close()
		}
		return err
	}
	s.auth = auth
	defer s.close()
	m["setup_s"] = time.Since(setup).Seconds()
	ids, tokens := s.srv.UserIDs, s.srv.UserTokens
	if auth != nil {
		ids, tokens = auth.UserIDs, auth.Tokens
	}
	spec := s.srv.Subscriber()
	spec.Tokens = tokens
	spec.UserOf = func(i int) int { return i % users }
	g, err := s.connect(spec, b.P.AuthConns, 60*time.Second)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	authorIdx := func(pub int, seq int64) int { return int((seq + int64(pub)*31) % int64(users)) }
	authorOf := func(pub int, seq int64) string { return ids[authorIdx(pub, seq)] }
	expect := func(user, pub int, seq int64) bool { return authorIdx(pub, seq) == user }
	at := fmt.Sprintf("@%dx%g", b.P.AuthConns, b.P.AuthRate)
	perEvent := float64(b.P.AuthConns) / float64(users)
	return b.steady(s, m, at, b.P.AuthRate, b.P.AuthDur, authorOf, expect, perEvent, g)
}

// ---- helpers ----

func mb(b int64) float64  { return float64(b) / (1 << 20) }
func ms(ns int64) float64 { return float64(ns) / 1e6 }
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// quantile of a small sample: the ceil(q*n)-th smallest value.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func topReasons(m map[string]int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i, e := range all {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more kinds", len(all)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%dx %s", e.v, truncate(e.k, 200)))
	}
	return strings.Join(parts, "; ")
}
