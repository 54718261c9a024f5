//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine describes where the run happened.
type Machine struct {
	NProc  int    `json:"nproc"`
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
	MemGB  int    `json:"mem_gb"`
	Go     string `json:"go"`
}

// Results is what a bench run writes to results.json.
type Results struct {
	Date         string                                 `json:"date"`
	Command      string                                 `json:"command"`
	Commit       string                                 `json:"commit"` // the tree measured; +dirty with uncommitted changes
	Mode         string                                 `json:"mode"`
	Runs         int                                    `json:"runs_per_server"`
	Machine      Machine                                `json:"machine"`
	Params       Params                                 `json:"params"`
	TotalSeconds float64                                `json:"total_seconds"`
	Rows         []Row                                  `json:"rows"`
	Medians      map[string]map[Kind]map[string]float64 `json:"medians"`
	Records      []RunRecord                            `json:"records"`
	Integrity    map[Kind]map[string]float64            `json:"integrity"`
}

// Row is one line of the results table.
type Row struct {
	Workload   string   `json:"workload"`
	Metric     string   `json:"metric"`
	Key        string   `json:"key"`
	Ours       *float64 `json:"ours"`
	PocketBase *float64 `json:"pocketbase"`
	Mercure    *float64 `json:"mercure"`
	Ratio      *float64 `json:"ratio"` // ours / PocketBase, or as RatioOf says
	RatioOf    string   `json:"ratio_of"`
	Target     string   `json:"target"`
	Met        *bool    `json:"met"`
	Headline   bool     `json:"headline"` // plotted
	// goal is the ratio target; lower says smaller ratios are better.
	goal  float64
	lower bool
}

// rowSpec says how to build a row from the medians.
type rowSpec struct {
	w, metric, key string
	goal           float64 // 0 = no target
	lower          bool    // the ratio must be <= goal
	headline       bool
}

func rowSpecs(p Params) []rowSpec {
	var rs []rowSpec
	for _, n := range p.IdleSizes {
		rs = append(rs, rowSpec{"a", fmt.Sprintf("RSS per connection, KB (%d conns)", n), fmt.Sprintf("rss_per_conn_kb@%d", n), 0.2, true, n == 10000 || n == p.IdleSizes[len(p.IdleSizes)-1]})
	}
	for i, n := range p.FanoutSizes {
		last := i == len(p.FanoutSizes)-1
		goal := 0.0
		if last {
			goal = 1.0 / 3
		}
		rs = append(rs,
			rowSpec{"b", fmt.Sprintf("time to last delivery p50, ms (%d subs)", n), fmt.Sprintf("last_delivery_p50_ms@%d", n), 0, true, false},
			rowSpec{"b", fmt.Sprintf("time to last delivery p99, ms (%d subs)", n), fmt.Sprintf("last_delivery_p99_ms@%d", n), goal, true, last})
	}
	sustained := func(n int, rates []float64) {
		for i, r := range rates {
			at := fmt.Sprintf("@%dx%g", n, r)
			top := i == len(rates)-1
			goal := 0.0
			if top {
				goal = 6
			}
			rs = append(rs,
				rowSpec{"c", fmt.Sprintf("delivered msg/s (%d subs, %g ev/s = %s offered)", n, r, si(float64(n)*r)), "delivered_msg_per_s" + at, goal, false, top},
				rowSpec{"c", fmt.Sprintf("server CPU-us per msg (%d subs, %g ev/s)", n, r), "server_cpu_us_per_msg" + at, 1.0 / 6, true, top},
				rowSpec{"c", fmt.Sprintf("server write syscalls per msg (%d subs, %g ev/s)", n, r), "server_writes_per_msg" + at, 0, true, false},
				rowSpec{"c", fmt.Sprintf("latency p99, ms (%d subs, %g ev/s)", n, r), "latency_p99_ms" + at, 0, true, false})
			if top {
				rs = append(rs, rowSpec{"c", fmt.Sprintf("load generator CPU, %% of a core (%d subs, %g ev/s)", n, r), "client_cpu_pct" + at, 0, true, false})
			}
		}
	}
	sustained(p.SustainedBig, p.SustainedRates)
	sustained(p.SustainedSmall, p.SmallRates)
	rs = append(rs,
		rowSpec{"d", fmt.Sprintf("subscription POSTs/s (%d conns)", p.ChurnConns), "requests_per_s", 2, false, true},
		rowSpec{"d", "subscription POST p99, ms", "p99_ms", 0.5, true, false},
		rowSpec{"d", "server CPU-us per POST", "server_cpu_us_per_req", 0, true, false},
		rowSpec{"e", fmt.Sprintf("connect+subscribe rate, conns/s (%d conns)", p.StormConns), "connect_per_s", 1, false, true},
		rowSpec{"e", fmt.Sprintf("reconnect storm completion, s (%d at once)", p.StormConns), "storm_s", 1, true, true},
		rowSpec{"e", "reconnect storm failures", "storm_failed", 0, true, false},
	)
	rs = append(rs,
		rowSpec{"f", fmt.Sprintf("healthy p99, ms, no stalled clients (%d subs, %g ev/s, %d B records)", p.StallConns, p.StallRate, p.StallPad), "latency_p99_ms@baseline", 0, true, false},
		rowSpec{"f", fmt.Sprintf("healthy p99, ms, %d more clients stalled", max(p.StallConns/100, 1)), "latency_p99_ms@stalled", 0, true, false},
		rowSpec{"f", "healthy p99 with stalled ÷ without", "p99_ratio", 1.1, true, true},
		rowSpec{"f", fmt.Sprintf("stalled clients evicted (of %d)", max(p.StallConns/100, 1)), "stalled_evicted", 0, false, false},
		rowSpec{"f", "all stalled clients evicted after, s", "all_evicted_s", 0, true, false},
		rowSpec{"f", "server RSS growth while stalled, MB", "rss_growth_mb", 0, true, false},
		rowSpec{"f", "delivered msg/s to healthy clients while stalled", "delivered_msg_per_s@stalled", 0, false, false},
	)
	hat := fmt.Sprintf("@%dx%g", p.AuthConns, p.AuthRate)
	rs = append(rs,
		rowSpec{"h", fmt.Sprintf("delivered msg/s (%d authed subs, %d users, %g ev/s)", p.AuthConns, p.AuthUsers, p.AuthRate), "delivered_msg_per_s" + hat, 10, false, true},
		rowSpec{"h", "server CPU-us per msg", "server_cpu_us_per_msg" + hat, 0, true, false},
		rowSpec{"h", "latency p99, ms", "latency_p99_ms" + hat, 0, true, false},
	)
	return rs
}

// BuildResults computes medians, the integrity totals (g) and the table.
func BuildResults(recs []RunRecord, p Params, runs int, mode string) *Results {
	r := &Results{
		Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Mode: mode, Runs: runs,
		Machine: machine(), Params: p, Records: recs,
		Medians:   map[string]map[Kind]map[string]float64{},
		Integrity: map[Kind]map[string]float64{},
	}
	samples := map[string]map[Kind]map[string][]float64{}
	for _, rec := range recs {
		if samples[rec.Workload] == nil {
			samples[rec.Workload] = map[Kind]map[string][]float64{}
		}
		if samples[rec.Workload][rec.Server] == nil {
			samples[rec.Workload][rec.Server] = map[string][]float64{}
		}
		for k, v := range rec.Metrics {
			samples[rec.Workload][rec.Server][k] = append(samples[rec.Workload][rec.Server][k], v)
		}
		// g: every delivery problem seen in any run of b-h, summed.
		if rec.Workload == "a" {
			continue
		}
		if r.Integrity[rec.Server] == nil {
			r.Integrity[rec.Server] = map[string]float64{}
		}
		for k, v := range rec.Metrics {
			for _, name := range []string{"inversions", "lost", "dup", "closed_by_server"} {
				if strings.HasPrefix(k, name+"@") {
					r.Integrity[rec.Server][name] += v
				}
			}
		}
	}
	for w, byKind := range samples {
		r.Medians[w] = map[Kind]map[string]float64{}
		for k, byKey := range byKind {
			r.Medians[w][k] = map[string]float64{}
			for key, vs := range byKey {
				r.Medians[w][k][key] = median(vs)
			}
		}
	}
	for _, s := range rowSpecs(p) {
		if _, ok := r.Medians[s.w]; !ok {
			continue
		}
		row := Row{Workload: s.w, Metric: s.metric, Key: s.key, Headline: s.headline, goal: s.goal, lower: s.lower, RatioOf: "ours / PocketBase"}
		row.Ours = r.median(s.w, KindOurs, s.key)
		row.PocketBase = r.median(s.w, KindPocketBase, s.key)
		row.Mercure = r.median(s.w, KindMercure, s.key)
		if row.Ours != nil && row.PocketBase != nil && *row.PocketBase != 0 {
			row.Ratio = ptr(*row.Ours / *row.PocketBase)
		}
		if s.key == "p99_ratio" {
			// f is judged on ours alone: the same load with and without stalled clients.
			row.RatioOf = "ours, with ÷ without"
			row.Ratio = row.Ours
		}
		if s.goal > 0 {
			row.Target = targetText(s.goal, s.lower)
			if row.Ratio != nil {
				met := *row.Ratio >= s.goal
				if s.lower {
					met = *row.Ratio <= s.goal
				}
				row.Met = &met
			}
		}
		r.Rows = append(r.Rows, row)
	}
	for _, name := range []string{"inversions", "lost", "dup", "closed_by_server"} {
		row := Row{Workload: "g", Metric: integrityLabel[name], Key: name, Target: "ours = 0", RatioOf: "-"}
		for _, k := range allKinds {
			if m, ok := r.Integrity[k]; ok {
				v := m[name]
				switch k {
				case KindOurs:
					row.Ours = &v
				case KindPocketBase:
					row.PocketBase = &v
				case KindMercure:
					row.Mercure = &v
				}
			}
		}
		if row.Ours != nil {
			met := *row.Ours == 0
			row.Met = &met
		}
		r.Rows = append(r.Rows, row)
	}
	return r
}

var integrityLabel = map[string]string{
	"inversions":       "order inversions, all runs of b-h (total)",
	"lost":             "lost frames, all runs of b-h (total)",
	"dup":              "duplicated frames, all runs of b-h (total)",
	"closed_by_server": "healthy streams closed by the server (total)",
}

func (r *Results) median(w string, k Kind, key string) *float64 {
	v, ok := r.Medians[w][k][key]
	if !ok {
		return nil
	}
	return &v
}

func targetText(goal float64, lower bool) string {
	if lower {
		return "≤ " + trimFloat(goal)
	}
	return "≥ " + trimFloat(goal)
}

func trimFloat(f float64) string {
	s := fmt.Sprintf("%.2f", f)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

func ptr(f float64) *float64 { return &f }

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// si writes 10000 as 10k and 1500000 as 1.5M.
func si(f float64) string {
	switch {
	case f >= 1e6:
		return trimFloat(f/1e6) + "M"
	case f >= 1e3:
		return trimFloat(f/1e3) + "k"
	}
	return trimFloat(f)
}

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU(), Go: runtime.Version()}
	if out, err := exec.Command("uname", "-srm").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m.MemGB = int(math.Round(float64(kb) / (1 << 20)))
	}
	return m
}

// Write writes results.json, RESULTS.md and plot.svg into dir.
func (r *Results) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(r.Markdown()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "plot.svg"), []byte(r.PlotSVG()), 0o644)
}

// Markdown is RESULTS.md: the stamp, one table, and the notes of the runs.
func (r *Results) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark results: caddy-realtime vs PocketBase v0.40.4 (and Mercure v0.24.2)\n\n")
	fmt.Fprintf(&b, "- Date: %s; mode: %s; %d alternating run(s) per server and workload, medians shown; total %s\n",
		r.Date, r.Mode, r.Runs, (time.Duration(r.TotalSeconds) * time.Second).String())
	fmt.Fprintf(&b, "- Machine: nproc %d, %s, %s, %d GiB RAM, %s; load generator, publisher and server share the cores, loopback only\n",
		r.Machine.NProc, r.Machine.Kernel, r.Machine.CPU, r.Machine.MemGB, r.Machine.Go)
	fmt.Fprintf(&b, "- Command: `%s`; tree measured: %s\n\n", r.Command, r.Commit)
	b.WriteString("| workload | metric | ours | PocketBase | Mercure | ratio | target | met? |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---|---|\n")
	for _, row := range r.Rows {
		ratio := "-"
		if row.Ratio != nil {
			ratio = fmtNum(*row.Ratio)
			if row.RatioOf != "ours / PocketBase" {
				ratio += " (" + row.RatioOf + ")"
			}
		}
		met := ""
		if row.Met != nil {
			met = "no"
			if *row.Met {
				met = "yes"
			}
		}
		target := row.Target
		if target == "" {
			target = "-"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Workload, row.Metric,
			fmtPtr(row.Ours), fmtPtr(row.PocketBase), fmtPtr(row.Mercure), ratio, target, met)
	}
	b.WriteString("\nRatio = ours ÷ PocketBase unless stated; targets from shared/BENCH.md, written on that ratio " +
		"(≤ for costs and latencies, ≥ for rates). Empty cells: the server does not take part (Mercure: a, b, c only) " +
		"or the metric does not apply.\n")
	b.WriteString("\n## How each number is made\n\n")
	for _, line := range methodNotes(r.Params) {
		b.WriteString("- " + line + "\n")
	}
	b.WriteString("\n## What the runs noticed\n\n")
	any := false
	for _, rec := range r.Records {
		if rec.Error == "" && len(rec.Notes) == 0 {
			continue
		}
		any = true
		fmt.Fprintf(&b, "- %s, %s, run %d:", rec.Workload, rec.Server, rec.Run)
		if rec.Error != "" {
			fmt.Fprintf(&b, " ERROR %s;", oneLine(rec.Error))
		}
		for _, n := range rec.Notes {
			fmt.Fprintf(&b, " %s;", oneLine(n))
		}
		b.WriteString("\n")
	}
	if !any {
		b.WriteString("- nothing: no errors, failed connections, losses, duplicates or inversions.\n")
	}
	return b.String()
}

func methodNotes(p Params) []string {
	return []string{
		"Servers start fresh for each run on free 127.0.0.1 ports (ours: `realtime /api/realtime { heartbeat 15s; idle_timeout 10m; max_subscriptions 1000 }`, admin log level ERROR). " +
			"Subscribers are raw non-blocking sockets on GOMAXPROCS epoll loops in the bench process; subscription POSTs are pipelined on 4 keep-alive sockets per loop.",
		"Events: ours through POST /realtime/events on the admin API (one connection, up to 500 events per POST, batched every 5 ms at high rates); " +
			"PocketBase through POST /api/collections/posts/records as superuser (4 pipelined connections, one record each); Mercure through a form POST with an HS256 JWT (2 connections). " +
			"The publisher is open-loop: a fixed schedule, never waiting for answers; each record carries pub, seq and ts (send time, unix ns).",
		"a: RSS per connection = (RSS after N subscribed and 2 s idle − RSS of the fresh server) / N, connections added step by step on one server.",
		fmt.Sprintf("b: %d trials per size, one event each, 200 ms apart; time to last delivery = last subscriber's receive time − publish time. PocketBase's includes its SQLite insert.", p.FanoutTrials),
		fmt.Sprintf("c: each rate runs %v; rates and CPU are measured over the window after a 1 s warm-up; latency covers the window and the drain after it. CPU from /proc/PID/stat (utime+stime), write syscalls from /proc/PID/io syscw.", p.SustainedDur),
		fmt.Sprintf("d: closed loop, %d POSTs in flight per loop, each re-POSTing a subscribed client's set, alternating between one and two topics.", p.ChurnWindow),
		fmt.Sprintf("e: %d connections with at most %d connecting at once (GET, PB_CONNECT, POST, 204); then all are closed and %d reconnect at once; storm completion = first connect to last 204.", p.StormConns, p.StormInflight, p.StormConns),
		fmt.Sprintf("f: on one server, %d subscribers at %g ev/s with %d-byte records for %v, then %d more subscribers that stop reading once subscribed (SO_RCVBUF 4 KiB) and the same load for %v. "+
			"Records are padded because the kernel grows a stalled socket's send buffer to megabytes (tcp_wmem max 4 MiB here): with small records no server would notice a stalled client within a run. "+
			"Evicted = the server's side of a stalled stream is no longer ESTABLISHED in /proc/net/tcp6 (closed with data still queued: FIN_WAIT1), polled every 0.5 s; the client cannot see it, its window being shut. "+
			"RSS growth = peak RSS while stalled − RSS before. The ratio is ours alone, with ÷ without stalled clients, over windows of %v and %v.",
			p.StallConns, p.StallRate, p.StallPad, p.StallBaseline, max(p.StallConns/100, 1), p.StallDur, p.StallBaseline-time.Second, p.StallDur-time.Second),
		"g: sums over every run of b, c, f (healthy clients) and h; lost = acknowledged events a healthy connection never received (checked after draining), inversions = a publisher's seq lower than one already received on that connection.",
		fmt.Sprintf("h: %d subscribers as %d users (%d connections each, the same on both servers) with list/view rule `%s` on posts; each event's author cycles through the users, so each event goes to %d connections. "+
			"Ours asks the bench's auth endpoint (`auth { url ... record_path record }`); PocketBase has real users created through its API with tokens from impersonation.",
			p.AuthConns, p.AuthUsers, p.AuthConns/max(p.AuthUsers, 1), OwnerRule, p.AuthConns/max(p.AuthUsers, 1)),
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func fmtPtr(f *float64) string {
	if f == nil {
		return ""
	}
	return fmtNum(*f)
}

func fmtNum(f float64) string {
	a := math.Abs(f)
	switch {
	case f == 0:
		return "0"
	case f == math.Trunc(f) && a < 1e15: // counts
		return fmt.Sprintf("%.0f", f)
	case a >= 1000:
		return fmt.Sprintf("%.0f", f)
	case a >= 100:
		return fmt.Sprintf("%.0f", f)
	case a >= 10:
		return fmt.Sprintf("%.1f", f)
	case a >= 1:
		return fmt.Sprintf("%.2f", f)
	}
	return fmt.Sprintf("%.3g", f)
}

// ReadResults loads an earlier results.json and rebuilds its medians and
// table from the recorded runs (to re-render after a change of the report).
func ReadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var old Results
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	r := BuildResults(old.Records, old.Params, old.Runs, old.Mode)
	r.Date, r.Command, r.Commit, r.Machine, r.TotalSeconds = old.Date, old.Command, old.Commit, old.Machine, old.TotalSeconds
	return r, nil
}
