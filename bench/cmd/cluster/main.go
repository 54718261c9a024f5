//go:build linux

// Command cluster measures BENCH.md workload k's delivery figures: the same
// workload against one Caddy node with the memory transport and against three
// nodes sharing a three-server NATS JetStream cluster (replicas 3), for the
// publish-to-delivery latency NATS adds, deliveries/s and server CPU per
// delivery; it writes CLUSTER.md and cluster.json. The nats-servers run
// in-process in a child (this binary again, -nats-child) so their CPU is
// measured apart from the load generator's.
//
//	go run ./bench/cmd/cluster -out bench/results              # 1,000 subscribers, 20 events/s for 15 s
//	go run ./bench/cmd/cluster -short -out bench/.work/cluster # 100 subscribers for 5 s
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/caddy-realtime/realtime/bench"
)

func main() {
	out := flag.String("out", "bench/results", "directory for CLUSTER.md and cluster.json")
	short := flag.Bool("short", false, "100 subscribers for 5 s instead of 1,000 for 15 s")
	runs := flag.Int("runs", 0, "runs of each mode, alternating (default 1)")
	subs := flag.Int("subscribers", 0, "override the number of subscribers")
	rate := flag.Float64("rate", 0, "override events/s")
	dur := flag.Duration("duration", 0, "override the publishing time")
	skipBuild := flag.Bool("skip-build", false, "use bench/.work/caddy as built last time")
	natsChild := flag.String("nats-child", "", "(internal) run the NATS cluster with its stores in this directory")
	natsNodes := flag.Int("nats-nodes", 3, "(internal, with -nats-child) servers in the NATS cluster")
	flag.Parse()

	if *natsChild != "" {
		stop := make(chan struct{})
		go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
		if err := bench.ServeNATSCluster(*natsChild, *natsNodes, os.Stdout, stop); err != nil {
			fail(err)
		}
		return
	}

	root, work, err := bench.Setup()
	if err != nil {
		fail(err)
	}
	p, mode := bench.ClusterFull(), "full"
	if *short {
		p, mode = bench.ClusterShort(), "short"
	}
	if *runs > 0 {
		p.Runs = *runs
	}
	if *subs > 0 {
		p.Subscribers = *subs
	}
	if *rate > 0 {
		p.Rate = *rate
	}
	if *dur > 0 {
		p.Duration = *dur
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	load := bench.LoadAvg()
	start := time.Now()
	cb := &bench.ClusterBench{P: p, WorkDir: filepath.Join(work, "cluster"), Log: os.Stderr,
		Bins: bench.Bins{Caddy: filepath.Join(work, "caddy")},
		NATS: func(dir string) (*bench.NATSChild, error) {
			return bench.StartNATSChild(self, []string{"-nats-child", dir, "-nats-nodes", fmt.Sprint(p.Nodes)},
				filepath.Join(dir, "nats.log"))
		}}
	if !*skipBuild {
		if err := bench.BuildCaddy(root, cb.Bins.Caddy, os.Stderr); err != nil {
			fail(err)
		}
	}

	cb.RunAll()

	res := &bench.ClusterResults{Mode: mode, Params: p, Runs: cb.Runs, Cores: runtime.NumCPU(),
		Command: strings.TrimSpace("go run ./bench/cmd/cluster " + strings.Join(os.Args[1:], " ")),
		Commit:  bench.TreeState(root), LoadBefore: load, LoadAfter: bench.LoadAvg(),
		TotalSeconds: time.Since(start).Seconds()}
	dir := bench.OutDir(*out)
	if err := res.Write(dir); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s in %v\n", dir, time.Since(start).Round(time.Second))
	fmt.Print(res.Markdown())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cluster:", err)
	os.Exit(1)
}
