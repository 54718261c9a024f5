//go:build linux

// Command resume measures the resume storm of BENCH.md workload j against our
// Caddy: clients that all come back at once with Last-Event-ID after missing
// events, beside the same storm without resume, plus the replay log's memory
// per MiB of events held; it writes RESUME.md and resume.json.
//
//	go run ./bench/cmd/resume -out bench/results                 # 10,000 clients x 1,000 missed events
//	go run ./bench/cmd/resume -short -out bench/.work/resume     # 500 x 100, seconds
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddy-realtime/realtime/bench"
)

func main() {
	out := flag.String("out", "bench/results", "directory for RESUME.md and resume.json")
	short := flag.Bool("short", false, "500 clients x 100 missed events instead of 10,000 x 1,000")
	runs := flag.Int("runs", 0, "runs of each mode, alternating (default 1)")
	params := flag.String("set", "", "override sizes, e.g. -set Clients=2000,Missed=500 (see bench.ResumeParams)")
	skipBuild := flag.Bool("skip-build", false, "use bench/.work/caddy as built last time")
	profile := flag.String("server-cpuprofile", "", "save the server's CPU profile of the first resume storm here")
	profileFor := flag.Duration("profile-for", 20*time.Second, "length of -server-cpuprofile")
	heap := flag.Bool("heap", true, "also run BenchmarkMemoryTransportHeap (./broker) for the log's memory per MiB")
	flag.Parse()

	root, work, err := bench.Setup()
	if err != nil {
		fail(err)
	}
	p, mode := bench.ResumeFull(), "full"
	if *short {
		p, mode = bench.ResumeShort(), "short"
	}
	if err := p.Set(*params); err != nil {
		fail(err)
	}
	if *runs > 0 {
		p.Runs = *runs
	}
	load := bench.LoadAvg()
	start := time.Now()
	rb := &bench.ResumeBench{P: p, WorkDir: filepath.Join(work, "run"), Log: os.Stderr,
		Bins: bench.Bins{Caddy: filepath.Join(work, "caddy")}, ServerProfile: *profile, ProfileFor: *profileFor}
	if !*skipBuild {
		if err := bench.BuildCaddy(root, rb.Bins.Caddy, os.Stderr); err != nil {
			fail(err)
		}
	}

	rb.RunAll()

	res := bench.NewResumeResults(rb.Records, p, mode)
	res.Command = strings.TrimSpace("go run ./bench/cmd/resume " + strings.Join(os.Args[1:], " "))
	res.Commit = bench.TreeState(root)
	res.LoadBefore = load
	if *heap {
		fmt.Fprintln(os.Stderr, "go test -run '^$' -bench MemoryTransportHeap -benchtime 1x ./broker/ ...")
		var buf bytes.Buffer
		if err := bench.RunIn(root, &buf, "go", "test", "-run", "^$", "-bench", "MemoryTransportHeap", "-benchtime", "1x", "./broker/"); err != nil {
			res.LogHeapError = fmt.Sprintf("%v: %s", err, strings.TrimSpace(buf.String()))
		}
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Benchmark") {
				res.LogHeap = append(res.LogHeap, sc.Text())
			}
		}
	}
	res.TotalSeconds = time.Since(start).Seconds()
	dir := bench.OutDir(*out)
	if err := res.Write(dir); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s in %v\n", dir, time.Since(start).Round(time.Second))
	fmt.Print(res.Markdown())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "resume:", err)
	os.Exit(1)
}
