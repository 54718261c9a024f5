//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ResumeParams size the resume storm (BENCH.md workload j).
type ResumeParams struct {
	Clients     int           // subscribers that leave and come back at once
	Missed      int           // events published while they are away
	Warm        int           // events each gets before leaving, so that its Last-Event-ID is a position
	Pad         int           // bytes of padding per record
	Inflight    int           // connects at once when the clients first subscribe (the storm itself sends all at once)
	Runs        int           // runs of each mode, alternating resume and fresh
	Timeout     time.Duration // for one storm to complete
	ResumeBytes int           // the Caddyfile's resume_bytes: Missed records must fit
}

// ResumeFull is BENCH.md's size: 10,000 clients, 1,000 missed events each.
func ResumeFull() ResumeParams {
	return ResumeParams{Clients: 10000, Missed: 1000, Warm: 3, Inflight: 1000, Runs: 1,
		Timeout: 4 * time.Minute, ResumeBytes: 64 << 20}
}

// ResumeShort runs in seconds: 500 clients, 100 missed events each.
func ResumeShort() ResumeParams {
	return ResumeParams{Clients: 500, Missed: 100, Warm: 3, Inflight: 500, Runs: 1,
		Timeout: time.Minute, ResumeBytes: 64 << 20}
}

// Set overrides fields from "Name=value,..." as Params.Set does.
func (p *ResumeParams) Set(spec string) error { return setParams(p, spec) }

// The two storms compared.
const (
	ModeResume = "resume" // back with Last-Event-ID: PB_CONNECT "resumed":true, then the missed events
	ModeFresh  = "fresh"  // back without it: new clients that GET and POST their subscription again
)

// ResumeBench runs the resume storm and the same storm without resume, each
// on a fresh server of ours.
type ResumeBench struct {
	P       ResumeParams
	Bins    Bins
	WorkDir string
	Log     io.Writer
	// ServerProfile, when set, is where the first resume storm's CPU profile
	// of the server goes (its admin /debug/pprof/profile, ProfileFor long).
	ServerProfile string
	ProfileFor    time.Duration
	Records       []RunRecord // Workload is the mode
}

// RunAll runs P.Runs of each mode, alternating.
func (rb *ResumeBench) RunAll() {
	for run := 1; run <= rb.P.Runs; run++ {
		for _, mode := range []string{ModeResume, ModeFresh} {
			rb.Records = append(rb.Records, rb.runOne(mode, run))
		}
	}
}

func (rb *ResumeBench) runOne(mode string, run int) RunRecord {
	b := &Bench{Bins: rb.Bins, WorkDir: rb.WorkDir, Log: rb.Log}
	rec := RunRecord{Workload: mode, Server: KindOurs, Run: run, Metrics: Metrics{}}
	b.notes = &rec.Notes
	b.logf("resume storm run %d: %s, %d clients x %d missed events", run, mode, rb.P.Clients, rb.P.Missed)
	start := time.Now()
	if err := rb.storm(b, mode == ModeResume, rec.Metrics); err != nil {
		rec.Error = err.Error()
		b.logf("  error: %v", err)
	}
	rec.Seconds = time.Since(start).Seconds()
	b.logf("  %.1fs: %s", rec.Seconds, metricLine(rec.Metrics))
	return rec
}

// storm: Clients subscribe to posts/* and each receives Warm events; they
// all close; Missed events are published; then all of them reconnect at once.
// Completion runs from the first reconnect GET to, with resume, the last
// client's Missed-th replayed event, and without it, the last subscription
// POST answered (fresh clients get none of the missed events).
func (rb *ResumeBench) storm(b *Bench, resume bool, m Metrics) error {
	p := rb.P
	s, err := b.open(KindOurs, ServerOptions{
		Realtime: fmt.Sprintf("\t\tresume_window 2m\n\t\tresume_bytes %d\n", p.ResumeBytes),
	})
	if err != nil {
		return err
	}
	defer s.close()
	s.pad = p.Pad
	n := p.Clients

	spec := s.srv.Subscriber()
	spec.KeepLastID = true
	spec.MaxInflight = p.Inflight
	first, err := s.connect(spec, n, 120*time.Second)
	if err != nil {
		return err
	}
	if err := rb.publish(s, p.Warm); err != nil {
		return fmt.Errorf("warm-up events: %w", err)
	}
	if got, ok := waitDelivered(s.lg, int64(first.Stats().Subscribed*p.Warm), 30*time.Second); !ok {
		b.note("warm-up: %d of %d deliveries arrived", got, first.Stats().Subscribed*p.Warm)
	}
	ids := s.lg.LastEventIDs(first)
	positioned := 0
	for _, id := range ids {
		if strings.Contains(id, ".") {
			positioned++
		}
	}
	m["clients_positioned"] = float64(positioned)

	s.lg.CloseAll()
	if left, err := waitServerClients(s.srv, 0, 30*time.Second); err != nil {
		return fmt.Errorf("waiting for the server to see the clients go (%d left): %w", left, err)
	}
	pub, err := s.publisher(nil)
	if err != nil {
		return err
	}
	defer pub.Close()
	if err := pub.conns[0].publish(p.Missed); err != nil {
		return fmt.Errorf("missed events: %w", err)
	}
	pub.Drain(30 * time.Second)
	acked := pub.Stats().Acked
	m["published"] = float64(acked)
	if acked != int64(p.Missed) {
		return fmt.Errorf("the server acknowledged %d of %d missed events", acked, p.Missed)
	}
	time.Sleep(500 * time.Millisecond)

	storm := s.srv.Subscriber()
	storm.MaxInflight = n
	if resume {
		storm.LastEventIDs = ids
		storm.WantEvents = int64(p.Missed)
	}
	fine := StartSampler(s.srv.PID, 50*time.Millisecond)
	c0, p0, self0 := s.lg.Counters(), mustProc(s.srv.PID), mustProc(selfPID)
	profiled := make(chan error, 1)
	if resume && rb.ServerProfile != "" {
		path := rb.ServerProfile
		rb.ServerProfile = ""
		go func() { profiled <- s.srv.CPUProfile(path, rb.ProfileFor) }()
	} else {
		profiled <- nil
	}
	g := s.lg.Connect(&storm, n)
	finished := waitStorm(g, resume, p.Timeout)
	p1, self1 := mustProc(s.srv.PID), mustProc(selfPID)
	peak, _ := fine.Peak()
	fine.Stop()
	st := g.Stats()

	completion := st.Elapsed
	if resume {
		completion = st.Completed
	}
	if !finished {
		completion = p.Timeout
		b.note("storm did not finish in %v: %d subscribed, %d failed, %d resumed, %d complete", p.Timeout,
			st.Subscribed, st.Failed, st.Resumed, st.Complete)
	}
	m["completion_s"] = completion.Seconds()
	m["all_connected_s"] = st.Elapsed.Seconds()
	m["connect_p50_ms"] = float64(st.ConnectP50) / 1e6
	m["connect_p99_ms"] = float64(st.P99) / 1e6
	m["server_cpu_s"] = (p1.CPU - p0.CPU).Seconds()
	m["server_sys_cpu_s"] = (p1.SysCPU - p0.SysCPU).Seconds()
	m["client_cpu_s"] = (self1.CPU - self0.CPU).Seconds()
	m["rss_before_mb"] = mb(p0.RSS)
	m["rss_peak_mb"] = mb(peak)
	m["subscribed"] = float64(st.Subscribed)
	m["failed"] = float64(st.Failed)
	if st.Failed > 0 {
		b.note("%d of %d reconnects failed: %s", st.Failed, n, topReasons(st.Failures))
	}
	if resume {
		m["resumed"] = float64(st.Resumed)
		m["resets"] = float64(st.Resets)
		m["complete"] = float64(st.Complete)
		if st.Resets > 0 {
			b.note("%d of %d clients were told \"resumed\":false", st.Resets, n)
		}
	}

	if err := <-profiled; err != nil {
		b.note("server CPU profile: %v", err)
	}
	// Whatever else arrives (it should be nothing) counts as extra deliveries.
	drainDeliveries(s.lg, time.Second, 10*time.Second)
	c1 := s.lg.Counters()
	m["rss_after_mb"] = mb(mustProc(s.srv.PID).RSS)
	delivered := c1.Delivered - c0.Delivered
	m["delivered"] = float64(delivered)
	m["wire_mb"] = mb(c1.Bytes - c0.Bytes)
	if delivered > 0 {
		m["wire_bytes_per_delivery"] = float64(c1.Bytes-c0.Bytes) / float64(delivered)
	}
	m["dup"] = float64(c1.Dups - c0.Dups)
	m["inversions"] = float64(c1.Inversions - c0.Inversions)
	if completion > 0 {
		m["delivered_per_s"] = float64(delivered) / completion.Seconds()
	}
	if resume {
		v := s.lg.Verify(pub.Acked(), nil, g)
		m["expected"] = float64(v.Expected)
		m["lost"] = float64(v.Missing)
		m["extra"] = float64(delivered - (v.Expected - v.Missing))
		m["closed_by_server"] = float64(v.ClosedHealthy)
		if v.Missing > 0 {
			b.note("%d of %d replayed deliveries never arrived, on %d of %d clients", v.Missing, v.Expected, v.ConnsMissing, v.Checked)
		}
	}
	return nil
}

// publish sends n events at once on a new publisher and waits for the answers.
func (rb *ResumeBench) publish(s *session, n int) error {
	pub, err := s.publisher(nil)
	if err != nil {
		return err
	}
	defer pub.Close()
	if err := pub.conns[0].publish(n); err != nil {
		return err
	}
	pub.Drain(30 * time.Second)
	if acked := pub.Stats().Acked; acked != int64(n) {
		return fmt.Errorf("the server acknowledged %d of %d events", acked, n)
	}
	return nil
}

// waitDelivered waits until the load generator counted want deliveries.
func waitDelivered(lg *LoadGen, want int64, timeout time.Duration) (int64, bool) {
	deadline := time.Now().Add(timeout)
	for {
		got := lg.Counters().Delivered
		if got >= want {
			return got, true
		}
		if time.Now().After(deadline) {
			return got, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitServerClients polls /realtime/stats until the server holds want clients.
func waitServerClients(srv *Server, want int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := srv.Stats()
		n, _ := st["clients"].(float64)
		if err == nil && int(n) == want {
			return want, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("still %d clients after %v", int(n), timeout)
			}
			return int(n), err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStorm waits until every connection subscribed or failed and, with
// resume, every resumed one got its missed events.
func waitStorm(g *ConnGroup, resume bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		settled := g.subscribed.Load()+g.failed.Load() == int64(g.n)
		if settled && (!resume || g.complete.Load() >= g.resumed.Load()) {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// ResumeResults is what cmd/resume writes: resume.json and RESUME.md.
type ResumeResults struct {
	Mode         string             `json:"mode"` // full or short
	Command      string             `json:"command"`
	Commit       string             `json:"commit"`
	Date         string             `json:"date"`
	LoadBefore   string             `json:"load_before"`
	Params       ResumeParams       `json:"params"`
	Records      []RunRecord        `json:"records"`
	Medians      map[string]Metrics `json:"medians"`
	LogHeap      []string           `json:"log_heap,omitempty"` // BenchmarkMemoryTransportHeap's result lines
	LogHeapError string             `json:"log_heap_error,omitempty"`
	TotalSeconds float64            `json:"total_seconds"`
}

// NewResumeResults takes the medians of the runs of each mode.
func NewResumeResults(records []RunRecord, p ResumeParams, mode string) *ResumeResults {
	r := &ResumeResults{Mode: mode, Params: p, Records: records, Date: time.Now().UTC().Format(time.RFC3339),
		Medians: map[string]Metrics{}}
	for _, m := range []string{ModeResume, ModeFresh} {
		vals := map[string][]float64{}
		for _, rec := range records {
			if rec.Workload != m || rec.Error != "" {
				continue
			}
			for k, v := range rec.Metrics {
				vals[k] = append(vals[k], v)
			}
		}
		med := Metrics{}
		for k, v := range vals {
			med[k] = quantile(v, 0.5)
		}
		r.Medians[m] = med
	}
	return r
}

// Write puts resume.json and RESUME.md in dir.
func (r *ResumeResults) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "resume.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "RESUME.md"), []byte(r.Markdown()), 0o644)
}

// Markdown is RESUME.md.
func (r *ResumeResults) Markdown() string {
	var b strings.Builder
	p := r.Params
	res, fresh := r.Medians[ModeResume], r.Medians[ModeFresh]
	fmt.Fprintf(&b, "# Resume storm (BENCH.md j): %d clients back at once after %d missed events each\n\n", p.Clients, p.Missed)
	fmt.Fprintf(&b, "%s run of %s, tree %s, `%s`; load average before: %s; %d run(s) of each mode, medians; %.0f s in all.\n",
		r.Mode, r.Date, r.Commit, r.Command, r.LoadBefore, p.Runs, r.TotalSeconds)
	fmt.Fprintf(&b, "The load generator (one epoll loop per core) shares the machine's 2 cores with the server.\n\n")

	row := func(name, unit, key string, digits int) {
		a, okA := res[key]
		f, okF := fresh[key]
		cell := func(v float64, ok bool) string {
			if !ok {
				return "-"
			}
			return fmt.Sprintf("%.*f", digits, v)
		}
		ratio := "-"
		if okA && okF && f != 0 {
			ratio = fmt.Sprintf("%.2fx", a/f)
		}
		fmt.Fprintf(&b, "| %s%s | %s | %s | %s |\n", name, unit, cell(a, okA), cell(f, okF), ratio)
	}
	b.WriteString("| metric | resume (Last-Event-ID) | no resume (fresh clients) | ratio |\n|---|---|---|---|\n")
	row("completion", " s", "completion_s", 2)
	row("all connected (last PB_CONNECT resumed / last POST answered)", " s", "all_connected_s", 2)
	row("server CPU", " s", "server_cpu_s", 2)
	row("server CPU in the kernel", " s", "server_sys_cpu_s", 2)
	row("load generator CPU", " s", "client_cpu_s", 2)
	row("server RSS before the storm", " MB", "rss_before_mb", 0)
	row("server peak RSS", " MB", "rss_peak_mb", 0)
	row("server RSS after the storm", " MB", "rss_after_mb", 0)
	row("events delivered", "", "delivered", 0)
	row("deliveries/s (delivered / completion)", "", "delivered_per_s", 0)
	row("bytes received by the clients", " MB", "wire_mb", 1)
	row("bytes per delivery on the wire (chunked SSE frame)", "", "wire_bytes_per_delivery", 0)
	row("connect p50", " ms", "connect_p50_ms", 1)
	row("connect p99", " ms", "connect_p99_ms", 1)
	row("clients subscribed", "", "subscribed", 0)
	row("clients resumed", "", "resumed", 0)
	row("clients reset (\"resumed\":false)", "", "resets", 0)
	row("lost (missed events a resumed client never got)", "", "lost", 0)
	row("duplicated", "", "dup", 0)
	row("out of order", "", "inversions", 0)
	row("extra deliveries", "", "extra", 0)

	b.WriteString("\nTargets (BENCH.md j): ")
	ratio := res["completion_s"] / max(fresh["completion_s"], 1e-9)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	fmt.Fprintf(&b, "completion <= 2x the storm without resume: %.2fx, %s; 0 lost: %.0f, %s; 0 duplicated: %.0f, %s.\n",
		ratio, verdict(ratio <= 2), res["lost"], verdict(res["lost"] == 0 && res["expected"] > 0),
		res["dup"], verdict(res["dup"] == 0))

	b.WriteString("\n## How\n\n")
	fmt.Fprintf(&b, `Each run starts a fresh Caddy of ours (resume_window 2m, resume_bytes %d, max_clients(_per_ip) 0, the bench's
other settings). %d load-generator clients GET /api/realtime and POST posts/*, then each receives %d events, so its
last frame id is a position; they all close, the bench waits until /realtime/stats shows 0 clients, and %d
events are published (admin API, batches of 500, %d bytes of padding per record). Then all %d reconnect at
once: with resume, GET with Last-Event-ID set to the id of the last frame the client got, expecting PB_CONNECT
"resumed":true and the %d missed events; without resume, a plain GET and a new subscription POST (those
clients never get the missed events: that is what resume buys). Completion runs from the first GET of the
storm to the last client's last replayed event (resume) or the last subscription answered (fresh). Server
CPU is utime+stime of the Caddy process over the same span, RSS is sampled every 50 ms; lost, duplicated and
out-of-order are checked per connection against the events the server acknowledged.
`, p.ResumeBytes, p.Clients, p.Warm, p.Missed, p.Pad, p.Clients, p.Missed)

	b.WriteString("\n## Memory of the replay log per MiB of events held\n\n")
	if r.LogHeapError != "" {
		fmt.Fprintf(&b, "not measured: %s\n", r.LogHeapError)
	} else if len(r.LogHeap) > 0 {
		b.WriteString("`go test -run '^$' -bench MemoryTransportHeap -benchtime 1x ./broker/`: a broker logs 4 MiB of record JSON\n" +
			"(records like the bench's, padded to the size shown), each event carrying the payload fan-out renders for\n" +
			"a plain subscriber; heap-B/MiB is the heap growth per MiB of record JSON held, est-B/MiB the log's own\n" +
			"estimate (what resume_bytes caps), heap/est how much more memory stays alive than the cap counts.\n\n```\n")
		for _, l := range r.LogHeap {
			b.WriteString(l + "\n")
		}
		b.WriteString("```\n")
	}

	b.WriteString("\n## Runs\n\n")
	for _, rec := range r.Records {
		fmt.Fprintf(&b, "- %s run %d (%.0f s)", rec.Workload, rec.Run, rec.Seconds)
		if rec.Error != "" {
			fmt.Fprintf(&b, ": error: %s", rec.Error)
		}
		b.WriteString("\n")
		for _, n := range rec.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	return b.String()
}
