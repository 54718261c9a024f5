//go:build linux

// Command bench builds our Caddy, PocketBase and Mercure, runs the workloads
// of shared/BENCH.md against them with alternating runs, and writes
// results.json, RESULTS.md and plot.svg.
//
//	go run ./bench/cmd/bench -out bench/results          # full run, under 20 minutes
//	go run ./bench/cmd/bench -quick -out bench/.work/quick  # about 2 minutes
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/caddy-realtime/realtime/bench"
)

func main() {
	out := flag.String("out", "bench/results", "directory for results.json, RESULTS.md and plot.svg")
	quick := flag.Bool("quick", false, "small sizes and short durations (about 2 minutes)")
	runs := flag.Int("runs", 0, "runs per server and workload (default 2, quick 1)")
	only := flag.String("only", "", "comma-separated workload ids to run (a,b,c,d,e,f,h; g is derived)")
	servers := flag.String("servers", "", "comma-separated servers (ours,pocketbase,mercure); default all")
	params := flag.String("set", "", "override sizes, e.g. -set StallDur=30s,IdleSizes=1000/5000 (see bench.Params)")
	cpuProfile := flag.String("cpuprofile", "", "write the bench process's CPU profile here (to check the client is not the bottleneck)")
	render := flag.String("render", "", "rebuild RESULTS.md and plot.svg (and results.json) in -out from an earlier results.json, without running")
	skipBuild := flag.Bool("skip-build", false, "use the binaries already in bench/.work and e2e/.peer")
	flag.Parse()

	root, work, err := bench.Setup()
	if err != nil {
		fail(err)
	}

	b := &bench.Bench{P: bench.FullParams(), Runs: 2, WorkDir: filepath.Join(work, "run"), Log: os.Stderr,
		Only: set(*only), Kinds: map[bench.Kind]bool{}}
	mode := "full"
	if *quick {
		b.P, b.Runs, mode = bench.QuickParams(), 1, "quick"
	}
	if err := b.P.Set(*params); err != nil {
		fail(err)
	}
	if *runs > 0 {
		b.Runs = *runs
	}
	for k := range set(*servers) {
		b.Kinds[bench.Kind(k)] = true
	}

	if *render != "" {
		res, err := bench.ReadResults(*render)
		if err != nil {
			fail(err)
		}
		if err := res.Write(bench.OutDir(*out)); err != nil {
			fail(err)
		}
		fmt.Print(res.Markdown())
		return
	}

	start := time.Now()
	if *skipBuild {
		b.Bins = bench.Bins{Caddy: filepath.Join(work, "caddy"), PocketBase: filepath.Join(root, "e2e", ".peer", "base"),
			Mercure: filepath.Join(work, "mercure-caddy")}
	} else if b.Bins, err = bench.Build(root, work, os.Stderr); err != nil {
		fail(err)
	}
	built := time.Since(start)
	fmt.Fprintf(os.Stderr, "binaries ready in %v; GOMAXPROCS %d\n", built.Round(time.Second), runtime.GOMAXPROCS(0))

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	b.RunAll()

	res := bench.BuildResults(b.Records, b.P, b.Runs, mode)
	res.Command = "go run ./bench/cmd/bench " + strings.Join(os.Args[1:], " ")
	res.TotalSeconds = time.Since(start).Seconds()
	res.Commit = bench.TreeState(root)
	dir := bench.OutDir(*out)
	if err := res.Write(dir); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s in %v (builds %v)\n", dir, time.Since(start).Round(time.Second), built.Round(time.Second))
	fmt.Print(res.Markdown())
}

func set(csv string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(csv, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
