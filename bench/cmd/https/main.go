//go:build linux

// Command https measures BENCH.md workload a over TLS (issue 13): server
// memory per idle subscribed stream, our Caddy against Mercure (both Caddy
// with `tls internal`), over HTTP/1.1 and HTTP/2 with TLS, HTTP/2 with 6
// streams per connection, and plain HTTP/1.1; it writes HTTPS.md and https.json.
//
//	go run ./bench/cmd/https -out bench/results                 # 1,000 / 5,000 / 10,000 streams, all modes
//	go run ./bench/cmd/https -quick -out bench/.work/https      # 500 / 1,000 streams
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-realtime/realtime/bench"
)

func main() {
	out := flag.String("out", "bench/results", "directory for HTTPS.md and https.json")
	quick := flag.Bool("quick", false, "500 and 1,000 streams instead of 1,000, 5,000 and 10,000")
	runs := flag.Int("runs", 1, "runs of each mode and server, alternating the servers; medians are reported")
	modes := flag.String("modes", strings.Join(bench.HTTPSModes, ","), "modes to run: h1, h2, h2x6, h2mix, plain")
	sizes := flag.String("sizes", "", "stream counts, opened incrementally, e.g. 1000,5000 (default per -quick)")
	servers := flag.String("servers", "ours,mercure,caddy-floor", "servers to run: ours, mercure, caddy-floor (Caddy with a handler that only holds streams open)")
	inflight := flag.Int("inflight", 0, "connections opened at once (default 128)")
	oursExtra := flag.String("ours", "", `extra subdirectives for ours' realtime block, ";"-separated, e.g. "write_timeout 0"`)
	skipBuild := flag.Bool("skip-build", false, "use bench/.work/caddy and bench/.work/mercure-caddy as built last time")
	profile := flag.String("profile", "", "save each server's heap and goroutine profiles at the largest size in this directory")
	flag.Parse()

	root, work, err := bench.Setup()
	if err != nil {
		fail(err)
	}
	p, mode := bench.HTTPSFull(), "full"
	if *quick {
		p, mode = bench.HTTPSQuick(), "quick"
	}
	p.Runs = max(*runs, 1)
	p.OursExtra = *oursExtra
	if *inflight > 0 {
		p.Inflight = *inflight
	}
	p.Modes = nil
	for _, m := range split(*modes) {
		switch m {
		case bench.HTTPSModeH1, bench.HTTPSModeH2, bench.HTTPSModeH2x6, bench.HTTPSModeH2Mix, bench.HTTPSModePlain:
			p.Modes = append(p.Modes, m)
		default:
			fail(fmt.Errorf("unknown mode %q (want h1, h2, h2x6, h2mix or plain)", m))
		}
	}
	p.Servers = nil
	for _, s := range split(*servers) {
		switch k := bench.Kind(s); k {
		case bench.KindOurs, bench.KindMercure, bench.KindFloor:
			p.Servers = append(p.Servers, k)
		default:
			fail(fmt.Errorf("unknown server %q (want ours, mercure or caddy-floor)", s))
		}
	}
	if *sizes != "" {
		p.Sizes = nil
		for _, s := range split(*sizes) {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 || (len(p.Sizes) > 0 && n <= p.Sizes[len(p.Sizes)-1]) {
				fail(fmt.Errorf("-sizes wants increasing positive counts, got %q", *sizes))
			}
			p.Sizes = append(p.Sizes, n)
		}
	}
	if len(p.Modes) == 0 || len(p.Servers) == 0 || len(p.Sizes) == 0 {
		fail(fmt.Errorf("nothing to run"))
	}
	dir, prof := bench.OutDir(*out), ""
	if *profile != "" {
		prof = bench.OutDir(*profile)
	}

	load := bench.LoadAvg()
	start := time.Now()
	hb := &bench.HTTPSBench{P: p, WorkDir: filepath.Join(work, "run"), ProfileDir: prof, Log: os.Stderr,
		Bins: bench.Bins{Caddy: filepath.Join(work, "caddy"), Mercure: filepath.Join(work, "mercure-caddy"),
			Floor: filepath.Join(work, "caddy-floor")}}
	if !*skipBuild {
		if err := bench.BuildCaddy(root, hb.Bins.Caddy, os.Stderr); err != nil {
			fail(err)
		}
		if slices.Contains(p.Servers, bench.KindMercure) {
			fmt.Fprintln(os.Stderr, "building mercure in", filepath.Join(work, "mercure"), "...")
			if err := bench.BuildMercure(filepath.Join(work, "mercure"), hb.Bins.Mercure, os.Stderr); err != nil {
				fail(fmt.Errorf("building mercure: %w", err))
			}
		}
		if slices.Contains(p.Servers, bench.KindFloor) {
			fmt.Fprintln(os.Stderr, "building the caddy floor in", filepath.Join(work, "floor"), "...")
			if err := bench.BuildCaddyFloor(root, filepath.Join(work, "floor"), hb.Bins.Floor, os.Stderr); err != nil {
				fail(fmt.Errorf("building the caddy floor: %w", err))
			}
		}
	}

	hb.RunAll()

	res := bench.NewHTTPSResults(hb.Records, p, mode)
	res.Command = strings.TrimSpace("go run ./bench/cmd/https " + strings.Join(os.Args[1:], " "))
	res.Commit = bench.TreeState(root)
	res.LoadBefore = load
	res.TotalSeconds = time.Since(start).Seconds()
	if err := res.Write(dir); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s in %v\n", dir, time.Since(start).Round(time.Second))
	fmt.Print(res.Markdown())
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "https:", err)
	os.Exit(1)
}
