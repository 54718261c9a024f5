//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// HTTPSResults is what cmd/https writes: https.json and HTTPS.md.
type HTTPSResults struct {
	Mode         string                      `json:"mode"` // full or quick
	Command      string                      `json:"command"`
	Commit       string                      `json:"commit"`
	Date         string                      `json:"date"`
	LoadBefore   string                      `json:"load_before"`
	Machine      Machine                     `json:"machine"`
	Params       HTTPSParams                 `json:"params"`
	Records      []RunRecord                 `json:"records"`
	Medians      map[string]map[Kind]Metrics `json:"medians"` // mode -> server -> median over the runs without error
	Failed       map[string]map[Kind]Metrics `json:"failed,omitempty"`
	TotalSeconds float64                     `json:"total_seconds"`
}

// NewHTTPSResults takes the medians of each mode and server over the runs
// that did not fail; where every run failed, the failed runs' medians go in
// Failed instead, so the report can show them marked.
func NewHTTPSResults(records []RunRecord, p HTTPSParams, mode string) *HTTPSResults {
	r := &HTTPSResults{Mode: mode, Params: p, Records: records, Date: time.Now().UTC().Format(time.RFC3339),
		Machine: machine(), Medians: map[string]map[Kind]Metrics{}, Failed: map[string]map[Kind]Metrics{}}
	for _, md := range p.Modes {
		r.Medians[md], r.Failed[md] = map[Kind]Metrics{}, map[Kind]Metrics{}
		for _, k := range p.Servers {
			ok, bad := map[string][]float64{}, map[string][]float64{}
			for _, rec := range records {
				if rec.Workload != md || rec.Server != k {
					continue
				}
				into := ok
				if rec.Error != "" {
					into = bad
				}
				for key, v := range rec.Metrics {
					into[key] = append(into[key], v)
				}
			}
			if len(ok) > 0 {
				r.Medians[md][k] = medians(ok)
			} else if len(bad) > 0 {
				r.Failed[md][k] = medians(bad)
			}
		}
	}
	return r
}

func medians(vals map[string][]float64) Metrics {
	m := Metrics{}
	for k, v := range vals {
		m[k] = quantile(v, 0.5)
	}
	return m
}

// Write puts https.json and HTTPS.md in dir.
func (r *HTTPSResults) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "https.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "HTTPS.md"), []byte(r.Markdown()), 0o644)
}

var httpsModeTitles = map[string]string{
	HTTPSModeH1:    "HTTP/1.1 over TLS, one connection per stream",
	HTTPSModeH2:    "HTTP/2 over TLS, one connection per stream",
	HTTPSModeH2x6:  "HTTP/2 over TLS, 6 streams per connection (tabs sharing one connection)",
	HTTPSModeH2Mix: "HTTP/2 over TLS, connections alternately carrying 1 and 6 streams (the mixed run)",
	HTTPSModePlain: "plain HTTP/1.1, no TLS (the baseline; ours takes the hijacked-socket path)",
}

// metric is a server's figure for mode, and whether it comes from failed runs only.
func (r *HTTPSResults) metric(mode string, k Kind, key string) (v float64, ok, failed bool) {
	if v, ok := r.Medians[mode][k][key]; ok {
		return v, true, false
	}
	v, ok = r.Failed[mode][k][key]
	return v, ok, ok
}

// Markdown is HTTPS.md.
func (r *HTTPSResults) Markdown() string {
	var b strings.Builder
	p := r.Params
	b.WriteString("# HTTPS streams (issue 13): server memory per idle subscribed stream, ours vs Mercure\n\n")
	fmt.Fprintf(&b, "%s run of %s, tree %s, `%s`; load average before: %s; %d run(s) per mode and server, alternating, medians; %.0f s in all.\n",
		r.Mode, r.Date, r.Commit, r.Command, r.LoadBefore, max(p.Runs, 1), r.TotalSeconds)
	fmt.Fprintf(&b, "Machine: %s, %d cores, shared with other work (the load average of each run is under Runs). Both servers are Caddy v2.11.9 with the same configuration apart from the handler.\n\n",
		r.Machine.CPU, r.Machine.NProc)

	if p.OursExtra != "" {
		fmt.Fprintf(&b, "Ours ran with extra realtime subdirectives: `%s`.\n\n", p.OursExtra)
	}
	anyFailed := false
	cell := func(mode string, k Kind, key string, digits int) string {
		v, ok, failed := r.metric(mode, k, key)
		if !ok {
			return "-"
		}
		s := fmt.Sprintf("%.*f", digits, v)
		if failed {
			anyFailed = true
			s += " ✗"
		}
		return s
	}
	largest := 0
	if len(p.Sizes) > 0 {
		largest = p.Sizes[len(p.Sizes)-1]
	}
	floor := slices.Contains(p.Servers, KindFloor)
	for _, mode := range p.Modes {
		fmt.Fprintf(&b, "## %s: %s\n\n", mode, httpsModeTitles[mode])
		b.WriteString("| streams | ours KB/stream | Mercure KB/stream | ours/Mercure | ours heap KB/stream | ours stack KB/stream | Mercure heap KB/stream | Mercure stack KB/stream | ours goroutines/stream | Mercure goroutines/stream |")
		if floor {
			b.WriteString(" Caddy floor KB/stream (heap / stack) | floor goroutines/stream |")
		}
		b.WriteString(" live heap KB/stream after a GC (ours / Mercure")
		if floor {
			b.WriteString(" / floor")
		}
		b.WriteString(") | target | met? |\n|---|---|---|---|---|---|---|---|---|---|---|")
		if floor {
			b.WriteString("---|---|")
		}
		b.WriteString("---|---|\n")
		for _, n := range p.Sizes {
			at := fmt.Sprintf("@%d", n)
			ratio, target, met := "-", "-", "-"
			o, okO, _ := r.metric(mode, KindOurs, "kb_per_stream"+at)
			mc, okM, _ := r.metric(mode, KindMercure, "kb_per_stream"+at)
			if okO && okM && mc > 0 {
				ratio = fmt.Sprintf("%.2fx", o/mc)
			}
			if n == p.Target && (mode == HTTPSModeH1 || mode == HTTPSModeH2) {
				target = fmt.Sprintf("≤ %gx Mercure", p.TargetRatio)
				switch {
				case r.Failed[mode][KindOurs] != nil || r.Failed[mode][KindMercure] != nil:
					met = "run failed"
				case !okO || !okM || mc <= 0:
					met = "not measured"
				case o/mc <= p.TargetRatio:
					met = "met"
				default:
					met = "missed"
				}
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |", n,
				cell(mode, KindOurs, "kb_per_stream"+at, 1), cell(mode, KindMercure, "kb_per_stream"+at, 1), ratio,
				cell(mode, KindOurs, "heap_kb_per_stream"+at, 1), cell(mode, KindOurs, "stack_kb_per_stream"+at, 1),
				cell(mode, KindMercure, "heap_kb_per_stream"+at, 1), cell(mode, KindMercure, "stack_kb_per_stream"+at, 1),
				cell(mode, KindOurs, "goroutines_per_stream"+at, 2), cell(mode, KindMercure, "goroutines_per_stream"+at, 2))
			if floor {
				fmt.Fprintf(&b, " %s (%s / %s) | %s |", cell(mode, KindFloor, "kb_per_stream"+at, 1),
					cell(mode, KindFloor, "heap_kb_per_stream"+at, 1), cell(mode, KindFloor, "stack_kb_per_stream"+at, 1),
					cell(mode, KindFloor, "goroutines_per_stream"+at, 2))
			}
			live := cell(mode, KindOurs, "live_kb_per_stream"+at, 1) + " / " + cell(mode, KindMercure, "live_kb_per_stream"+at, 1)
			if floor {
				live += " / " + cell(mode, KindFloor, "live_kb_per_stream"+at, 1)
			}
			fmt.Fprintf(&b, " %s | %s | %s |\n", live, target, met)
		}
		at := fmt.Sprintf("@%d", largest)
		fmt.Fprintf(&b, "\nAt %d streams: server RSS ours %s MB, Mercure %s MB (at rest: %s and %s MB); threads %s and %s; "+
			"one published event reached ours %s and Mercure %s of %d streams; connects/s at the last step %s and %s.\n",
			largest, cell(mode, KindOurs, "rss_mb"+at, 0), cell(mode, KindMercure, "rss_mb"+at, 0),
			cell(mode, KindOurs, "rss_base_mb", 0), cell(mode, KindMercure, "rss_base_mb", 0),
			cell(mode, KindOurs, "threads"+at, 0), cell(mode, KindMercure, "threads"+at, 0),
			cell(mode, KindOurs, "delivered"+at, 0), cell(mode, KindMercure, "delivered"+at, 0), largest,
			cell(mode, KindOurs, "connect_per_s"+at, 0), cell(mode, KindMercure, "connect_per_s"+at, 0))
		if floor {
			fmt.Fprintf(&b, "The Caddy floor: RSS %s MB (at rest %s MB), threads %s.\n",
				cell(mode, KindFloor, "rss_mb"+at, 0), cell(mode, KindFloor, "rss_base_mb", 0), cell(mode, KindFloor, "threads"+at, 0))
		}
		b.WriteString("\n")
	}
	if anyFailed {
		b.WriteString("✗: every run of that mode and server failed (see Runs); the figure is what the failed run measured.\n\n")
	}

	b.WriteString("## How\n\n")
	fmt.Fprintf(&b, `Each run starts a fresh Caddy (ours; Caddy with Mercure v0.24.2's module: transport local, anonymous
subscribers; or the Caddy floor, Caddy with a handler that writes a PB_CONNECT-shaped frame, answers POSTs
with 204 and otherwise only holds the stream open: what an idle stream costs in Caddy, net/http, x/net/http2
and crypto/tls alone, floor.go) on free 127.0.0.1 ports: site `+"`https://127.0.0.1:PORT`"+` with `+"`tls internal`"+` (a certificate for
127.0.0.1 from Caddy's internal CA), `+"`auto_https disable_redirects`, `skip_install_trust`, `servers { protocols h1 h2 }`"+`,
persist_config off, logs at ERROR; mode plain serves `+"`http://127.0.0.1:PORT`"+` with auto_https off. Ours is
`+"`realtime /api/realtime { heartbeat 15s; idle_timeout 10m; max_subscriptions 1000; max_clients_per_ip 0; max_clients 0 }`"+`.

The client runs in the bench process (a separate process from the server): a goroutine per stream, crypto/tls
with InsecureSkipVerify and ServerName 127.0.0.1 (the certificate is the server's own; verifying it would only
cost client CPU), ALPN "http/1.1" for h1 and "h2" for h2/h2x6 (checked). h1 and plain write a raw GET and parse
the chunked SSE response incrementally (httpparse.go, sse.go); h2 and h2x6 use golang.org/x/net/http2's
ClientConn on the TLS connection (h2x6: 6 streams per connection). A stream of ours (or the floor) is subscribed once its
PB_CONNECT's clientId was POSTed as {"clientId":..,"subscriptions":["posts/*"]} through one shared HTTP/1.1
keep-alive client (over HTTPS in the TLS modes; its idle connections are closed before each reading); Mercure
streams GET /.well-known/mercure?topic=posts and count once the response head arrives. %d connections are opened
at a time.

Streams are opened size by size (%s), never closed in between. Before the first, one second after the server
started (and completed one TLS handshake), the bench reads the server's RSS from /proc and
go_memstats_heap_inuse_bytes, go_memstats_stack_inuse_bytes and go_goroutines from the admin /metrics; after
each size it waits %v and reads them again. KB/stream is (RSS - RSS at rest) / streams; heap, stack and
goroutines per stream likewise. Then it forces a garbage collection in the server (GET /debug/pprof/heap?gc=1 on
the admin endpoint) and reads go_memstats_heap_alloc_bytes: the live heap per stream, without the garbage that
setting the streams up left for the next collection (the heap figure before it includes that garbage, and so
does RSS: Go keeps the memory). At the largest size one event is published (ours: POST /realtime/events on the
admin endpoint; Mercure: the form POST with a publisher JWT) and the bench counts the streams that got it within
30 s. A run where a stream failed to connect, a subscribed stream ended, or the event did not reach every stream
is marked failed and left out of the medians (the floor publishes nothing, so it has no liveness check).
`, p.Inflight, joinInts(p.Sizes), p.Settle)
	if p.Target > 0 {
		fmt.Fprintf(&b, "\nTarget (issue 13): ours ≤ %gx Mercure's KB/stream over HTTPS (h1 and h2) at %d streams.\n", p.TargetRatio, p.Target)
	}

	b.WriteString("\n## Runs\n\n")
	for _, rec := range r.Records {
		fmt.Fprintf(&b, "- %s %s run %d (%.0f s, load %.2f before)", rec.Workload, rec.Server, rec.Run, rec.Seconds, rec.Metrics["load1_before"])
		if rec.Error != "" {
			fmt.Fprintf(&b, ": FAILED: %s", rec.Error)
		}
		b.WriteString("\n")
		for _, n := range rec.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	return b.String()
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
