//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"
)

// AbuseResults is abuse.json.
type AbuseResults struct {
	Date         string        `json:"date"`
	Command      string        `json:"command"`
	Commit       string        `json:"commit"`
	Mode         string        `json:"mode"`
	Machine      Machine       `json:"machine"`
	LoadBefore   string        `json:"load_before"` // uptime's load averages when the run began
	Params       AbuseParams   `json:"params"`
	TotalSeconds float64       `json:"total_seconds"`
	Records      []AbuseRecord `json:"records"`
	Before       *AbuseResults `json:"before,omitempty"` // an earlier run to compare with (-compare)
}

// NewAbuseResults stamps the records of a run.
func NewAbuseResults(recs []AbuseRecord, p AbuseParams, mode string) *AbuseResults {
	return &AbuseResults{Date: time.Now().UTC().Format(time.RFC3339), Mode: mode, Machine: machine(), Params: p, Records: recs}
}

// Targets of one record: healthy p99 <= 2x, publish rate >= 0.9x, RSS growth within the budget.
func (r AbuseRecord) Targets(p AbuseParams) (p99Ratio, pubRatio, rssGrowth float64, p99OK, pubOK, rssOK bool) {
	p99Ratio = r.Attacked.P99ms / max(r.Baseline.P99ms, 1e-3)
	pubRatio = r.Attacked.PubRate / max(r.Baseline.PubRate, 1e-9)
	rssGrowth = r.Attacked.RSSPeakMB - r.Baseline.RSSPeakMB
	healthyOK := r.Attacked.Lost == 0 && r.Attacked.ClosedHealthy == r.Baseline.ClosedHealthy
	return p99Ratio, pubRatio, rssGrowth, p99Ratio <= 2 && healthyOK, pubRatio >= 0.9, rssGrowth <= p.RSSBudgetMB
}

// controlRatio is r's attack-phase p99 over that of the same server's
// `none` run, when r's attack keeps the control's publisher load.
func (a *AbuseResults) controlRatio(r AbuseRecord) string {
	if r.Attack == "none" {
		return "-"
	}
	for _, at := range Attacks {
		if at.ID == r.Attack && at.load != nil {
			return "-"
		}
	}
	for _, c := range a.Records {
		if c.Attack == "none" && c.Server == r.Server && c.Error == "" && c.Attacked.P99ms > 0 {
			return fmt.Sprintf("%.2fx", r.Attacked.P99ms/c.Attacked.P99ms)
		}
	}
	return "-"
}

func metText(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// attackerText is a short account of what the attacker got.
func attackerText(r AbuseRecord) string {
	keys := make([]string, 0, len(r.Attacker))
	for k := range r.Attacker {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		v := r.Attacker[k]
		if strings.HasSuffix(k, "bytes") || strings.HasSuffix(k, "bytes_sent") {
			parts = append(parts, k+" "+si(v)+"B")
			continue
		}
		parts = append(parts, k+" "+fmtNum(v))
	}
	s := strings.Join(parts, ", ")
	if len(r.Seen) > 0 {
		s += "; saw " + topReasons(r.Seen)
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// Markdown is ABUSE.md.
func (a *AbuseResults) Markdown() string {
	var b strings.Builder
	p := a.Params
	fmt.Fprintf(&b, "# Abuse suite (issue 9, BENCH.md workload i)\n\n")
	fmt.Fprintf(&b, "- Date: %s; mode: %s; total %s; tree measured: `%s`\n", a.Date, a.Mode,
		(time.Duration(a.TotalSeconds) * time.Second).String(), a.Commit)
	fmt.Fprintf(&b, "- Command: `%s`\n", a.Command)
	fmt.Fprintf(&b, "- Machine: %d CPU (%s), %d GB, %s, %s; load average at the start: %s (shared with other engineers' tests)\n",
		a.Machine.NProc, a.Machine.CPU, a.Machine.MemGB, a.Machine.Kernel, a.Machine.Go, a.LoadBefore)
	fmt.Fprintf(&b, "- Healthy side in every run: %d subscribers on `posts/*` (from %d addresses 127.0.1.x), a publisher at %g events/s "+
		"(attack 4: %g events/s of %d-byte records, both phases); %v without the attack, then %v with it, on the same server.\n",
		p.Healthy, p.HealthyIPs, p.Rate, p.StallRate, p.StallPad, p.Baseline, p.AttackDur)
	fmt.Fprintf(&b, "- Targets (issue 9): healthy p99 <= 2x the no-attack phase (and no healthy stream lost an event or was closed), "+
		"publish rate >= 0.9x, peak RSS growth <= %g MB (RSSBudgetMB: the 256 MiB max_queued_bytes default plus as much again for everything else).\n\n", p.RSSBudgetMB)

	b.WriteString("- p99 x control: the attack phase's healthy p99 over the `none` run's second phase (same length, same load, no attacker), " +
		"for the attacks that keep the control's load; the control's own ratio shows what the phase alone does.\n\n")
	b.WriteString("| attack | server | healthy p99 ms: none → attack (x) | p99 x control | publish/s: none → attack (x) | peak RSS MB: none → attack | open files: none → attack | p99 <= 2x | publish >= 0.9x | RSS in budget | what the attacker got |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range a.Records {
		if r.Error != "" {
			fmt.Fprintf(&b, "| %s | %s | error: %s | | | | | | | | |\n", r.Attack, r.Server, strings.ReplaceAll(oneLine(truncate(r.Error, 200)), "|", "\\|"))
			continue
		}
		pr, ur, growth, pOK, uOK, rOK := r.Targets(p)
		fmt.Fprintf(&b, "| %s | %s | %s → %s (%.2fx) | %s | %.1f → %.1f (%.2fx) | %.0f → %.0f (+%.0f) | %d → %d | %s | %s | %s | %s |\n",
			r.Attack, r.Server, fmtNum(r.Baseline.P99ms), fmtNum(r.Attacked.P99ms), pr, a.controlRatio(r),
			r.Baseline.PubRate, r.Attacked.PubRate, ur,
			r.Baseline.RSSPeakMB, r.Attacked.RSSPeakMB, growth, r.Baseline.FDPeak, r.Attacked.FDPeak,
			metText(pOK), metText(uOK), metText(rOK), attackerText(r))
	}

	if a.Before != nil {
		b.WriteString(a.compareMarkdown())
	}
	b.WriteString("\n## Attacks\n\n")
	for _, at := range Attacks {
		fmt.Fprintf(&b, "- `%s` — %s\n", at.ID, at.Name)
	}
	fmt.Fprintf(&b, "\nSizes: %s\n", paramsText(p))

	b.WriteString("\n## Per run\n\n")
	for _, r := range a.Records {
		fmt.Fprintf(&b, "- **%s / %s** (%.0f s, load %s): no attack p50/p99/max %s/%s/%s ms, publish p99 %s ms, CPU server %.0f%% bench %.0f%%; "+
			"attack p50/p99/max %s/%s/%s ms, publish p99 %s ms, CPU server %.0f%% bench %.0f%%, healthy lost %d, closed %d, unanswered publishes %d.",
			r.Attack, r.Server, r.Seconds, r.Load,
			fmtNum(r.Baseline.P50ms), fmtNum(r.Baseline.P99ms), fmtNum(r.Baseline.MaxMs), fmtNum(r.Baseline.PubP99ms), r.Baseline.CPUPct, r.Baseline.ClientCPUPct,
			fmtNum(r.Attacked.P50ms), fmtNum(r.Attacked.P99ms), fmtNum(r.Attacked.MaxMs), fmtNum(r.Attacked.PubP99ms), r.Attacked.CPUPct, r.Attacked.ClientCPUPct,
			r.Attacked.Lost, r.Attacked.ClosedHealthy-r.Baseline.ClosedHealthy, r.Attacked.Unanswered)
		for _, n := range r.Notes {
			fmt.Fprintf(&b, " %s.", strings.TrimSuffix(oneLine(n), "."))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## How it is measured\n\n" + abuseMethod + "\n")
	return b.String()
}

func paramsText(p AbuseParams) string {
	v := reflect.ValueOf(p)
	var parts []string
	for i := range v.NumField() {
		parts = append(parts, fmt.Sprintf("%s=%v", v.Type().Field(i).Name, v.Field(i).Interface()))
	}
	return "`" + strings.Join(parts, " ") + "`"
}

const abuseMethod = `- Each attack runs on a fresh server: the healthy subscribers connect, the publisher runs the no-attack phase,
  then the attacker starts and the publisher runs the attack phase at the same rate. Each phase skips its first
  second, then measures: delivery latency of every healthy frame (receive time minus the send time stamped in
  the record, including frames that arrive while draining after the phase), the publish rate (events the server
  acknowledged within the window / window), publish request p99, and the server's peak RSS and open files
  (/proc/PID/stat and /proc/PID/fd every 250 ms). The attacker is stopped when the window closes.
- Healthy subscribers come from 127.0.1.x, attackers from 127.0.0.1 (one IP), "real user" probes from
  127.0.0.2; the stalled streams from StallIPs addresses 127.0.5.x and the connection flood from
  127.0.2.x-127.0.4.x in child processes (each has its own 20,000-file limit, so together they can reach the
  server's), so that max_clients_per_ip alone cannot stop those two. Attackers using the load generator (filters, topic-bytes,
  spellings, stalled) have their own, so their frames never count as healthy ones.
- "What the attacker got": subscribed/failed streams, frames and bytes it received, the answers it saw
  (status and message), and per attack: evicted stalled streams (server socket no longer established),
  upstream auth lookups and the most in flight, a real user's fresh token every second (OK / tries, worst
  ms), admin API probes every 500 ms on a new connection, new users connecting every 2 s.
- PocketBase has no admin API: the flood probes its /api/health. The auth flood runs against ours only
  (PocketBase verifies its tokens locally, without a lookup).
- One run per attack and server: the machine is shared, so read ratios near a target with the load average in mind.`

// Write writes abuse.json and ABUSE.md into dir.
func (a *AbuseResults) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "abuse.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "ABUSE.md"), []byte(a.Markdown()), 0o644)
}

// ReadAbuseResults reads an earlier abuse.json.
func ReadAbuseResults(path string) (*AbuseResults, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var a AbuseResults
	return &a, json.Unmarshal(b, &a)
}

// compareMarkdown is the before -> after table: per attack and server, the
// three ratios of the earlier run (a.Before) and of this one.
func (a *AbuseResults) compareMarkdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Before → after\n\nBefore: `%s` (%s, load %s); after: `%s` (this run). "+
		"Each cell: before → after; targets p99 <= 2x, publish >= 0.9x, RSS growth <= %g MB.\n\n",
		a.Before.Commit, a.Before.Date, a.Before.LoadBefore, a.Commit, a.Params.RSSBudgetMB)
	b.WriteString("| attack | server | healthy p99 (x no attack) | publish rate (x) | RSS growth MB | targets met |\n|---|---|---|---|---|---|\n")
	find := func(recs []AbuseRecord, id string, k Kind) *AbuseRecord {
		for i := range recs {
			if recs[i].Attack == id && recs[i].Server == k && recs[i].Error == "" {
				return &recs[i]
			}
		}
		return nil
	}
	count := func(r *AbuseRecord, p AbuseParams) string {
		if r == nil {
			return "-"
		}
		_, _, _, x, y, z := r.Targets(p)
		n := 0
		for _, ok := range []bool{x, y, z} {
			if ok {
				n++
			}
		}
		return fmt.Sprintf("%d/3", n)
	}
	cell := func(r *AbuseRecord, p AbuseParams, i int) string {
		if r == nil {
			return "-"
		}
		pr, ur, g, _, _, _ := r.Targets(p)
		return [...]string{fmt.Sprintf("%.2fx", pr), fmt.Sprintf("%.2fx", ur), fmt.Sprintf("%+.0f", g)}[i]
	}
	for _, r := range a.Records {
		if r.Error != "" {
			continue
		}
		old := find(a.Before.Records, r.Attack, r.Server)
		fmt.Fprintf(&b, "| %s | %s | %s → %s | %s → %s | %s → %s | %s → %s |\n", r.Attack, r.Server,
			cell(old, a.Before.Params, 0), cell(&r, a.Params, 0), cell(old, a.Before.Params, 1), cell(&r, a.Params, 1),
			cell(old, a.Before.Params, 2), cell(&r, a.Params, 2), count(old, a.Before.Params), count(&r, a.Params))
	}
	return b.String()
}
