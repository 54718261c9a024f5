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

// ClusterParams size the cluster comparison (BENCH.md k: b/c-style delivery).
type ClusterParams struct {
	Subscribers int           // over all nodes
	Rate        float64       // events/s, published through the first node's admin API
	Duration    time.Duration // of publishing; the first second is warm-up
	Runs        int           // of each mode, alternating
	Nodes       int           // Caddy nodes (and nats-servers) of the NATS mode
}

// ClusterFull is the documented run: 1,000 subscribers, 20 events/s for 15 s.
func ClusterFull() ClusterParams {
	return ClusterParams{Subscribers: 1000, Rate: 20, Duration: 15 * time.Second, Runs: 1, Nodes: 3}
}

// ClusterShort is the quick mode: 100 subscribers for 5 s.
func ClusterShort() ClusterParams {
	return ClusterParams{Subscribers: 100, Rate: 20, Duration: 5 * time.Second, Runs: 1, Nodes: 3}
}

// ClusterRun is one mode's measurements.
type ClusterRun struct {
	Mode         string   `json:"mode"` // "memory" or "nats"
	Run          int      `json:"run"`
	Nodes        int      `json:"nodes"`
	Subscribed   int      `json:"subscribed"`
	Published    int64    `json:"published"`
	P50ms        float64  `json:"latency_p50_ms"`
	P99ms        float64  `json:"latency_p99_ms"`
	Maxms        float64  `json:"latency_max_ms"`
	Deliveries   float64  `json:"delivered_per_s"`
	Offered      float64  `json:"offered_per_s"`
	CaddyCPUus   float64  `json:"caddy_cpu_us_per_delivery"` // summed over the Caddy nodes
	NATSCPUus    float64  `json:"nats_cpu_us_per_delivery"`  // the nats-server process (all servers)
	ClientCPUpct float64  `json:"client_cpu_pct"`
	PublishP50ms float64  `json:"publish_answer_p50_ms"` // admin POST -> answer
	Lost         int64    `json:"lost"`
	Dups         int64    `json:"dups"`
	Inversions   int64    `json:"inversions"`
	Error        string   `json:"error,omitempty"`
	Notes        []string `json:"notes,omitempty"`
}

// ClusterBench runs the comparison.
type ClusterBench struct {
	P       ClusterParams
	Bins    Bins
	WorkDir string
	Log     io.Writer
	// NATS starts the NATS cluster for the nats mode (a child process).
	NATS func(dir string) (*NATSChild, error)

	Runs []ClusterRun
}

func (cb *ClusterBench) logf(format string, args ...any) {
	fmt.Fprintf(cb.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// RunAll alternates memory and nats runs.
func (cb *ClusterBench) RunAll() {
	for run := range max(cb.P.Runs, 1) {
		for _, mode := range []string{"memory", "nats"} {
			cb.logf("run %d: %s", run+1, mode)
			r := cb.runMode(mode, run+1)
			if r.Error != "" {
				cb.logf("  error: %s", r.Error)
			} else {
				cb.logf("  p50 %.2f ms  p99 %.2f ms  %.0f deliveries/s  Caddy %.1f + NATS %.1f CPU-us/delivery  lost %d dup %d inv %d",
					r.P50ms, r.P99ms, r.Deliveries, r.CaddyCPUus, r.NATSCPUus, r.Lost, r.Dups, r.Inversions)
			}
			for _, n := range r.Notes {
				cb.logf("  note: %s", n)
			}
			cb.Runs = append(cb.Runs, r)
		}
	}
}

type clusterNode struct {
	srv *Server
	lg  *LoadGen
	g   *ConnGroup
}

func (cb *ClusterBench) runMode(mode string, run int) (r ClusterRun) {
	r = ClusterRun{Mode: mode, Run: run, Nodes: 1}
	note := func(format string, args ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, args...)) }
	if err := os.MkdirAll(cb.WorkDir, 0o755); err != nil {
		r.Error = err.Error()
		return r
	}
	var opts ServerOptions
	var nc *NATSChild
	if mode == "nats" {
		r.Nodes = cb.P.Nodes
		dir, err := os.MkdirTemp(cb.WorkDir, "nats-")
		if err != nil {
			r.Error = err.Error()
			return r
		}
		defer os.RemoveAll(dir)
		nc, err = cb.NATS(dir)
		if err != nil {
			r.Error = err.Error()
			return r
		}
		defer nc.Stop()
		opts.Realtime = NATSRealtime(nc.URLs, cb.P.Nodes)
	}
	var nodes []*clusterNode
	defer func() {
		for _, n := range nodes {
			if !n.srv.Alive() {
				note("node %s exited during the run: %s", n.srv.Addr, n.srv.LogTail(5))
			}
			if k, sample := n.srv.LogErrors(); k > 0 {
				note("node %s logged %d error lines, e.g. %s", n.srv.Addr, k, truncate(sample, 300))
			}
			if n.lg != nil {
				n.lg.Close()
			}
			n.srv.Stop()
		}
	}()
	for range r.Nodes {
		srv, err := StartServer(KindOurs, cb.Bins, cb.WorkDir, opts)
		if err != nil {
			r.Error = err.Error()
			return r
		}
		n := &clusterNode{srv: srv}
		nodes = append(nodes, n)
		if n.lg, err = NewLoadGen(srv.Addr, 2); err != nil {
			r.Error = err.Error()
			return r
		}
	}
	// Subscribers spread evenly over the nodes.
	for i, n := range nodes {
		k := cb.P.Subscribers / len(nodes)
		if i < cb.P.Subscribers%len(nodes) {
			k++
		}
		spec := n.srv.Subscriber()
		n.g = n.lg.Connect(&spec, k)
	}
	for _, n := range nodes {
		err := n.g.Wait(120 * time.Second)
		st := n.g.Stats()
		r.Subscribed += st.Subscribed
		if st.Failed > 0 {
			note("%d connections to %s failed: %s", st.Failed, n.srv.Addr, topReasons(st.Failures))
		}
		if err != nil {
			r.Error = err.Error()
			return r
		}
	}
	time.Sleep(time.Second)

	pub, err := NewPublisher(nodes[0].srv.Publish(), nil)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	cpu := func() (caddy, nats time.Duration) {
		for _, n := range nodes {
			caddy += mustProc(n.srv.PID).CPU
		}
		if nc != nil {
			nats = mustProc(nc.PID).CPU
		}
		return caddy, nats
	}
	delivered := func() (d, dups, inv int64) {
		for _, n := range nodes {
			c := n.lg.Counters()
			d, dups, inv = d+c.Delivered, dups+c.Dups, inv+c.Inversions
		}
		return d, dups, inv
	}
	done := make(chan struct{})
	go func() { pub.Run(cb.P.Rate, cb.P.Duration); close(done) }()
	warm := time.Second
	time.Sleep(warm)
	for _, n := range nodes {
		n.lg.ResetLatency()
	}
	d0, dup0, inv0 := delivered()
	c0, n0 := cpu()
	self0 := mustProc(selfPID)
	t0 := time.Now()
	time.Sleep(cb.P.Duration - warm)
	d1, _, _ := delivered()
	c1, n1 := cpu()
	self1 := mustProc(selfPID)
	window := time.Since(t0).Seconds()
	<-done
	pub.Drain(5 * time.Second)
	pub.Close()
	for _, n := range nodes {
		drainDeliveries(n.lg, time.Second, 10*time.Second)
	}
	_, dup2, inv2 := delivered()
	lat := NewHistogram()
	for _, n := range nodes {
		lat.Merge(n.lg.Latency())
	}
	ps := pub.Stats()
	r.Published = ps.Acked
	r.P50ms, r.P99ms, r.Maxms = ms(lat.Quantile(0.5)), ms(lat.Quantile(0.99)), ms(lat.Max())
	r.Deliveries = float64(d1-d0) / window
	r.Offered = cb.P.Rate * float64(r.Subscribed)
	if dn := float64(d1 - d0); dn > 0 {
		r.CaddyCPUus = float64((c1 - c0).Microseconds()) / dn
		r.NATSCPUus = float64((n1 - n0).Microseconds()) / dn
	}
	r.ClientCPUpct = 100 * (self1.CPU - self0.CPU).Seconds() / window
	r.PublishP50ms = ms(ps.Latency.Quantile(0.5))
	r.Dups, r.Inversions = dup2-dup0, inv2-inv0
	acked := pub.Acked()
	for _, n := range nodes {
		v := n.lg.Verify(acked, nil, n.g)
		r.Lost += v.Missing
		if v.ClosedHealthy > 0 {
			note("%s closed %d healthy connections", n.srv.Addr, v.ClosedHealthy)
		}
	}
	if ok := ps.Statuses[200]; ok != int(ps.Requests) || len(ps.Errors) > 0 {
		note("publish answers %v of %d requests, errors %s", ps.Statuses, ps.Requests, topReasons(ps.Errors))
	}
	if nc != nil && !nc.Alive() {
		note("the NATS cluster exited during the run")
	}
	return r
}

// ClusterResults is what the cluster command writes.
type ClusterResults struct {
	Mode         string        `json:"mode"`
	Params       ClusterParams `json:"params"`
	Command      string        `json:"command"`
	Commit       string        `json:"commit"`
	LoadBefore   string        `json:"load_before"`
	LoadAfter    string        `json:"load_after"`
	Cores        int           `json:"cores"`
	TotalSeconds float64       `json:"total_seconds"`
	Runs         []ClusterRun  `json:"runs"`
}

// median of f over the runs of mode without error.
func (res *ClusterResults) median(mode string, f func(ClusterRun) float64) (float64, bool) {
	var v []float64
	for _, r := range res.Runs {
		if r.Mode == mode && r.Error == "" {
			v = append(v, f(r))
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	return quantile(v, 0.5), true
}

// Markdown is CLUSTER.md.
func (res *ClusterResults) Markdown() string {
	var b strings.Builder
	p := res.Params
	fmt.Fprintf(&b, "# Cluster: 1 node (memory) vs %d nodes on NATS JetStream (BENCH.md k)\n\n", p.Nodes)
	fmt.Fprintf(&b, "`%s` — %s mode, tree %s. %d subscribers to `posts/*` (spread evenly over the nodes), "+
		"%g events/s published through the first node's admin API for %v (first second is warm-up), %d run(s) of each mode, alternating.\n\n",
		res.Command, res.Mode, res.Commit, p.Subscribers, p.Rate, p.Duration, max(p.Runs, 1))
	fmt.Fprintf(&b, "Machine: %d cores shared by the load generator, the nats-server process (%d clustered servers, "+
		"file storage, `replicas %d`) and every Caddy node, plus other users; load average before %s, after %s. "+
		"Latency is publish (the timestamp the publisher writes into each record) to the subscriber reading the frame, per delivery.\n\n",
		res.Cores, p.Nodes, p.Nodes, res.LoadBefore, res.LoadAfter)
	b.WriteString("| mode | nodes | p50 ms | p99 ms | max ms | deliveries/s (offered) | Caddy CPU-µs/delivery (sum of nodes) | NATS CPU-µs/delivery | publish answer p50 ms | lost / dup / inversions |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res.Runs {
		if r.Error != "" {
			fmt.Fprintf(&b, "| %s #%d | %d | error: %s |||||||| \n", r.Mode, r.Run, r.Nodes, strings.ReplaceAll(r.Error, "\n", " "))
			continue
		}
		fmt.Fprintf(&b, "| %s #%d | %d | %.2f | %.2f | %.1f | %.0f (%.0f) | %.1f | %.1f | %.2f | %d / %d / %d |\n",
			r.Mode, r.Run, r.Nodes, r.P50ms, r.P99ms, r.Maxms, r.Deliveries, r.Offered, r.CaddyCPUus, r.NATSCPUus, r.PublishP50ms, r.Lost, r.Dups, r.Inversions)
	}
	b.WriteString("\n")
	m50, ok1 := res.median("memory", func(r ClusterRun) float64 { return r.P50ms })
	n50, ok2 := res.median("nats", func(r ClusterRun) float64 { return r.P50ms })
	m99, _ := res.median("memory", func(r ClusterRun) float64 { return r.P99ms })
	n99, _ := res.median("nats", func(r ClusterRun) float64 { return r.P99ms })
	md, _ := res.median("memory", func(r ClusterRun) float64 { return r.Deliveries })
	nd, _ := res.median("nats", func(r ClusterRun) float64 { return r.Deliveries })
	if ok1 && ok2 {
		verdict := "met"
		if n50-m50 > 2 {
			verdict = "missed"
		}
		fmt.Fprintf(&b, "NATS adds **%.2f ms p50** (target ≤ 2 ms: %s) and %.2f ms p99; %d nodes deliver %.2fx one node's deliveries/s.\n",
			n50-m50, verdict, n99-m99, p.Nodes, nd/md)
	}
	for _, r := range res.Runs {
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "\n- %s #%d: %s", r.Mode, r.Run, n)
		}
	}
	b.WriteString("\n")
	return b.String()
}

// Write writes CLUSTER.md and cluster.json to dir.
func (res *ClusterResults) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "CLUSTER.md"), []byte(res.Markdown()), 0o644)
}
