//go:build linux

package bench

// The abuse suite (issue 9, BENCH.md workload i): each attack of the issue is
// replayed against a fresh server while healthy subscribers receive a fixed
// publish rate, right after the same load ran without the attack on the same
// server. See abuse_attacks.go for the attacks and abuse_report.go for ABUSE.md.

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// AbuseParams size the abuse suite.
type AbuseParams struct {
	Healthy     int           // healthy subscribers on posts/*
	HealthyIPs  int           // spread over this many source addresses 127.0.1.x (per-IP budgets must not hit them)
	Rate        float64       // events/s of the publisher (both phases)
	Baseline    time.Duration // the no-attack phase
	AttackDur   time.Duration // the attack phase
	RSSBudgetMB float64       // allowed growth of peak RSS over the no-attack phase
	MaxRSSMB    float64       // safety: stop the attacker when the server passes this (the machine is shared)

	FilterStreams, FilterTopics, FilterClauses int // 1a: guest streams x topics x "title~'..'||" clauses
	RefilterTopics, RefilterDepth              int // 1b: fresh filters per POST, parentheses deep
	RefilterEvery                              time.Duration

	HugeBodyMB, HugeBodyConc int // 2a: {"subscriptions":["","",...]} bodies, at once
	TrickleConns             int // 2b: bodies sent but for their last bytes, then one byte per TrickleEvery
	TrickleMB                int
	TrickleEvery             time.Duration

	MemClients, MemTopics, MemTopicBytes int // 3a: clients from one IP x topics x bytes
	SpellingStreams, Spellings           int // 3b: streams x spellings of posts/*

	StallConns int     // 4: streams that never read
	StallIPs   int     // from this many addresses 127.0.5.x
	StallPad   int     // bytes of padding per event in attack 4 (both phases)
	StallRate  float64 // events/s in attack 4 (both phases)

	AuthPosts, AuthConc, AuthStreams int           // 5: POSTs with random tokens, in flight, streams they name
	AuthDelay                        time.Duration // the auth endpoint's answer time

	FloodConns, FloodChildren int // 6: connections, spread over child processes (each has its own file limit)
}

// AbuseFull are the sizes of issue 9, scaled to a 2-core machine with 20,000 open files.
func AbuseFull() AbuseParams {
	return AbuseParams{
		Healthy: 200, HealthyIPs: 4, Rate: 20, Baseline: 8 * time.Second, AttackDur: 20 * time.Second,
		RSSBudgetMB: 512, MaxRSSMB: 8192,
		FilterStreams: 5, FilterTopics: 1000, FilterClauses: 80,
		RefilterTopics: 1000, RefilterDepth: 401, RefilterEvery: 1200 * time.Millisecond,
		HugeBodyMB: 32, HugeBodyConc: 8, TrickleConns: 40, TrickleMB: 31, TrickleEvery: 5 * time.Second,
		MemClients: 300, MemTopics: 1000, MemTopicBytes: 2500,
		SpellingStreams: 50, Spellings: 1000,
		StallConns: 3000, StallIPs: 100, StallPad: 20000, StallRate: 50,
		AuthPosts: 15000, AuthConc: 3000, AuthStreams: 100, AuthDelay: 50 * time.Millisecond,
		FloodConns: 20500, FloodChildren: 3,
	}
}

// AbuseQuick shrinks the attacks and phases (about 5 minutes in all).
func AbuseQuick() AbuseParams {
	p := AbuseFull()
	p.Healthy, p.Baseline, p.AttackDur = 100, 4*time.Second, 8*time.Second
	p.FilterTopics = 300
	p.RefilterTopics = 300
	p.HugeBodyConc, p.TrickleConns = 4, 10
	p.MemClients = 60
	p.SpellingStreams, p.Spellings = 20, 300
	p.StallConns = 1000
	p.AuthPosts, p.AuthConc, p.AuthStreams = 4000, 1000, 50
	p.FloodConns, p.FloodChildren = 20500, 3
	return p
}

// Set overrides fields from "Name=value,..." as Params.Set does.
func (p *AbuseParams) Set(spec string) error { return setParams(p, spec) }

// Attack is one replay of issue 9.
type Attack struct {
	ID, Name string
	Kinds    []Kind
	// setup (optional) prepares what the server needs (an auth endpoint) before it starts.
	setup func(r *abuseRun) (ServerOptions, error)
	// load (optional) changes the publisher for both phases: rate and padding.
	load func(p AbuseParams) (rate float64, pad int)
	// start launches the attacker and returns at once; finish stops it and
	// records what it got in r.att and r.seen.
	start func(r *abuseRun) (finish func())
}

// AbuseBench runs the attacks.
type AbuseBench struct {
	P       AbuseParams
	Bins    Bins
	WorkDir string
	Only    map[string]bool
	Kinds   map[Kind]bool
	Log     io.Writer
	Self    string // this executable, re-run as -flood-child

	Records []AbuseRecord
}

// AbuseRecord is one attack against one server: both phases and the attacker's outcome.
type AbuseRecord struct {
	Attack   string             `json:"attack"`
	Server   Kind               `json:"server"`
	Seconds  float64            `json:"seconds"`
	Load     string             `json:"load"` // the 1-minute load average of the machine before the run
	Baseline Phase              `json:"baseline"`
	Attacked Phase              `json:"attacked"`
	Attacker map[string]float64 `json:"attacker"`
	Seen     map[string]int     `json:"seen,omitempty"` // statuses and errors the attacker saw
	Notes    []string           `json:"notes,omitempty"`
	Error    string             `json:"error,omitempty"`
}

// Phase is what the healthy side saw in one phase.
type Phase struct {
	P50ms, P99ms, MaxMs float64
	Offered             float64 // events/s
	PubRate             float64 // events/s acknowledged within the window
	PubP99ms            float64 // publish request -> answer
	Delivered           int64   // healthy deliveries (window and drain)
	Lost                int64   // acknowledged events a healthy stream never got
	ClosedHealthy       int     // healthy streams the server closed
	Unanswered          int64   // publish requests without an answer at the end
	RSSBaseMB           float64 // at the start of the phase
	RSSPeakMB           float64
	FDPeak              int     // server's open files
	CPUPct              float64 // server
	ClientCPUPct        float64 // the bench process (load generators, publisher, attackers), on the same cores
}

type abuseRun struct {
	ab      *AbuseBench
	p       AbuseParams
	kind    Kind
	srv     *Server
	lg      *LoadGen // healthy side
	healthy *ConnGroup
	alg     *LoadGen // the attacker's, when it uses the load generator
	auth    *slowAuth
	pubBase int
	rate    float64
	pad     int

	mu    sync.Mutex
	att   map[string]float64
	seen  map[string]int
	notes []string

	stopOnce sync.Once
	stopped  chan struct{} // closed when the attacker must stop
	finish   func()
}

func (r *abuseRun) set(k string, v float64) {
	r.mu.Lock()
	r.att[k] = v
	r.mu.Unlock()
}

func (r *abuseRun) add(k string, v float64) {
	r.mu.Lock()
	r.att[k] += v
	r.mu.Unlock()
}

func (r *abuseRun) saw(what string) {
	r.mu.Lock()
	if len(r.seen) < 40 || r.seen[what] > 0 {
		r.seen[what]++
	}
	r.mu.Unlock()
}

func (r *abuseRun) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.notes = append(r.notes, msg)
	r.mu.Unlock()
	r.ab.logf("  note: %s", msg)
}

// halt tells the attacker to stop (at the end of the phase, or when the server grew past MaxRSSMB).
func (r *abuseRun) halt() { r.stopOnce.Do(func() { close(r.stopped) }) }

func (r *abuseRun) halted() bool {
	select {
	case <-r.stopped:
		return true
	default:
		return false
	}
}

// sleep waits d or until the attacker is halted; false when halted.
func (r *abuseRun) sleep(d time.Duration) bool {
	select {
	case <-r.stopped:
		return false
	case <-time.After(d):
		return true
	}
}

func (ab *AbuseBench) logf(format string, args ...any) {
	fmt.Fprintf(ab.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// RunAll runs every selected attack, ours then PocketBase.
func (ab *AbuseBench) RunAll() {
	for _, a := range Attacks {
		if len(ab.Only) > 0 && !ab.Only[a.ID] {
			continue
		}
		for _, k := range a.Kinds {
			if len(ab.Kinds) > 0 && !ab.Kinds[k] {
				continue
			}
			ab.runOne(a, k)
		}
	}
}

func (ab *AbuseBench) runOne(a Attack, k Kind) {
	rec := AbuseRecord{Attack: a.ID, Server: k, Load: loadAvg()}
	ab.logf("%s (%s): %s; load %s", a.ID, a.Name, k, rec.Load)
	start := time.Now()
	r := &abuseRun{ab: ab, p: ab.P, kind: k, att: map[string]float64{}, seen: map[string]int{}, stopped: make(chan struct{}),
		rate: ab.P.Rate}
	if a.load != nil {
		r.rate, r.pad = a.load(ab.P)
	}
	err := r.run(a, &rec)
	if err != nil {
		rec.Error = err.Error()
		ab.logf("  error: %v", err)
	}
	rec.Seconds = time.Since(start).Seconds()
	rec.Attacker, rec.Seen, rec.Notes = r.att, r.seen, r.notes
	ab.logf("  %.0fs: p99 %.1f -> %.1f ms, publish %.1f -> %.1f/s, RSS %.0f -> %.0f MB, files %d -> %d; attacker %s",
		rec.Seconds, rec.Baseline.P99ms, rec.Attacked.P99ms, rec.Baseline.PubRate, rec.Attacked.PubRate,
		rec.Baseline.RSSPeakMB, rec.Attacked.RSSPeakMB, rec.Baseline.FDPeak, rec.Attacked.FDPeak, fmtAttacker(rec.Attacker))
	if len(rec.Seen) > 0 {
		ab.logf("  attacker saw: %s", topReasons(rec.Seen))
	}
	ab.Records = append(ab.Records, rec)
}

func (r *abuseRun) run(a Attack, rec *AbuseRecord) error {
	opts := ServerOptions{}
	if a.setup != nil {
		var err error
		if opts, err = a.setup(r); err != nil {
			return err
		}
	}
	defer func() {
		if r.auth != nil {
			r.auth.Close()
		}
	}()
	opts.Defaults = true // every budget as a user who configured none gets it
	srv, err := StartServer(r.kind, r.ab.Bins, r.ab.WorkDir, opts)
	if err != nil {
		return err
	}
	r.srv = srv
	defer func() {
		if !srv.Alive() {
			state := ""
			if srv.cmd != nil && srv.cmd.ProcessState != nil {
				state = srv.cmd.ProcessState.String()
			}
			r.note("%s exited during the run (%s): %s", srv.Kind, state, srv.LogTail(5))
		}
		if n, sample := srv.LogErrors(); n > 0 {
			r.note("%s logged %d error lines, e.g. %s", srv.Kind, n, truncate(sample, 300))
		}
		if r.lg != nil {
			r.lg.Close()
		}
		srv.Stop()
	}()
	if r.lg, err = NewLoadGen(srv.Addr, 4); err != nil {
		return err
	}
	spec := srv.Subscriber()
	for i := range max(r.p.HealthyIPs, 1) {
		spec.SourceIPs = append(spec.SourceIPs, [4]byte{127, 0, 1, byte(1 + i)})
	}
	r.healthy = r.lg.Connect(&spec, r.p.Healthy)
	if err := r.healthy.Wait(60 * time.Second); err != nil {
		return fmt.Errorf("healthy subscribers: %w", err)
	}
	if st := r.healthy.Stats(); st.Failed > 0 {
		return fmt.Errorf("%d of %d healthy subscribers failed: %s", st.Failed, st.N, topReasons(st.Failures))
	}
	time.Sleep(500 * time.Millisecond)

	rec.Baseline = r.measure(r.p.Baseline, nil)
	closedBefore := rec.Baseline.ClosedHealthy

	r.finish = a.start(r)
	rec.Attacked = r.measure(r.p.AttackDur, func() {
		r.halt()
		r.finish()
	})
	if rec.Attacked.ClosedHealthy > closedBefore {
		r.note("the server closed %d healthy streams during the attack", rec.Attacked.ClosedHealthy-closedBefore)
	}
	if st, err := srv.Stats(); err == nil && st != nil {
		for _, kind := range []string{"evictions", "refused"} {
			if ev, ok := st[kind].(map[string]any); ok {
				for reason, v := range ev {
					if f, _ := v.(float64); f > 0 {
						r.set("server_"+kind+"_"+reason, f)
					}
				}
			}
		}
	} else if err != nil && r.kind == KindOurs {
		r.note("admin /realtime/stats after the attack: %v", err)
	}
	return nil
}

// measure runs the publisher for d at r.rate and reports the healthy side;
// the attacker (when running) is stopped by end once the window closed and
// before the drain, so that the drain measures what the attack delayed.
func (r *abuseRun) measure(d time.Duration, end func()) Phase {
	ph := Phase{Offered: r.rate}
	t := r.srv.Publish()
	t.PubBase, t.Pad = r.pubBase, r.pad
	r.pubBase += t.Conns
	pub, err := NewPublisher(t, nil)
	if err != nil {
		r.note("publisher: %v", err)
		if end != nil {
			end()
		}
		return ph
	}
	fs := startFDSampler(r.srv.PID, 250*time.Millisecond, r.p.MaxRSSMB, func(rss float64) {
		r.note("server RSS %.0f MB passed MaxRSSMB %.0f: attacker stopped early", rss, r.p.MaxRSSMB)
		r.halt()
	})
	ph.RSSBaseMB = mb(mustProc(r.srv.PID).RSS)
	done := make(chan struct{})
	go func() { pub.Run(r.rate, d); close(done) }()
	warm := time.Second
	time.Sleep(warm)
	r.lg.ResetLatency()
	a0, p0, self0, t0 := pub.Stats().Acked, mustProc(r.srv.PID), mustProc(selfPID), time.Now()
	time.Sleep(d - warm)
	a1, p1, self1 := pub.Stats().Acked, mustProc(r.srv.PID), mustProc(selfPID)
	window := time.Since(t0).Seconds()
	<-done
	if end != nil {
		end()
	}
	pub.Drain(5 * time.Second)
	pub.Close()
	drainDeliveries(r.lg, time.Second, 10*time.Second)
	fs.stop()
	lat := r.lg.Latency()
	ps := pub.Stats()
	v := r.lg.Verify(pub.Acked(), nil, r.healthy)
	ph.P50ms, ph.P99ms, ph.MaxMs = ms(lat.Quantile(0.5)), ms(lat.Quantile(0.99)), ms(lat.Max())
	ph.PubRate = float64(a1-a0) / window
	ph.PubP99ms = ms(ps.Latency.Quantile(0.99))
	ph.Delivered = int64(lat.Count())
	ph.Lost, ph.ClosedHealthy = v.Missing, v.ClosedHealthy
	answered := 0
	for _, n := range ps.Statuses {
		answered += n
	}
	ph.Unanswered = ps.Requests - int64(answered)
	ph.RSSPeakMB, ph.FDPeak = fs.peak()
	ph.CPUPct = 100 * (p1.CPU - p0.CPU).Seconds() / window
	ph.ClientCPUPct = 100 * (self1.CPU - self0.CPU).Seconds() / window
	if ok := ps.Statuses[200] + ps.Statuses[201] + ps.Statuses[204]; ok < answered || len(ps.Errors) > 0 {
		r.note("publish answers %v, errors %s", ps.Statuses, topReasons(ps.Errors))
	}
	return ph
}

// fdSampler keeps the peak RSS and open-file count of a process.
type fdSampler struct {
	pid     int
	quit    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	rss     int64
	fds     int
	tripped bool
}

func startFDSampler(pid int, every time.Duration, maxRSSMB float64, over func(rssMB float64)) *fdSampler {
	s := &fdSampler{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.sample(maxRSSMB, over)
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *fdSampler) sample(maxRSSMB float64, over func(float64)) {
	p, err := ReadProc(s.pid)
	n := openFiles(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.rss = max(s.rss, p.RSS)
		if maxRSSMB > 0 && mb(p.RSS) > maxRSSMB && !s.tripped {
			s.tripped = true
			go over(mb(p.RSS))
		}
	}
	s.fds = max(s.fds, n)
}

func (s *fdSampler) stop() {
	close(s.quit)
	<-s.done
}

func (s *fdSampler) peak() (rssMB float64, fds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mb(s.rss), s.fds
}

// openFiles counts /proc/PID/fd.
func openFiles(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(4096)
		n += len(names)
		if err != nil || len(names) == 0 {
			return n
		}
	}
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func fmtAttacker(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+fmtNum(m[k]))
	}
	return strings.Join(parts, " ")
}

// RaiseFileLimit lifts the soft open-files limit to the hard one.
func RaiseFileLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

// dialFrom is dial with an optional local address to bind first.
func dialFrom(addr *syscall.SockaddrInet4, rcvbuf int, src *[4]byte) (int, error) {
	if src == nil {
		return dial(addr, rcvbuf)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	if rcvbuf > 0 {
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: *src}); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Connect(fd, addr); err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	return fd, nil
}

// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT) defers the port choice to connect,
// so bound sockets share the ephemeral range by destination.
const ipBindAddressNoPort = 24

// src is the local address connection c binds, if its spec names some.
func (c *subConn) src() *[4]byte {
	ips := c.g.spec.SourceIPs
	if len(ips) == 0 {
		return nil
	}
	return &ips[c.index%len(ips)]
}

// requestFrom sends q on this loop's request socket bound to q.src.
func (l *loop) requestFrom(q *request) {
	if l.srcReqs == nil {
		l.srcReqs = map[[4]byte]*reqConn{}
	}
	r := l.srcReqs[*q.src]
	if r == nil {
		r = &reqConn{l: l, src: q.src}
		l.srcReqs[*q.src] = r
	}
	r.send(q)
}
