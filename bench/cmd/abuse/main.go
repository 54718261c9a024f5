//go:build linux

// Command abuse replays the attacks of issue 9 against our Caddy (and
// PocketBase where they apply), each beside the same load without the attack,
// and writes ABUSE.md and abuse.json.
//
//	go run ./bench/cmd/abuse -out bench/results          # full: about 12 minutes
//	go run ./bench/cmd/abuse -quick -out bench/.work/abuse  # about 6 minutes
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddy-realtime/realtime/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-flood-child" {
		if err := bench.RunFloodChild(os.Args[2:]); err != nil {
			fail(err)
		}
		return
	}
	out := flag.String("out", "bench/results", "directory for ABUSE.md and abuse.json")
	quick := flag.Bool("quick", false, "smaller attacks and shorter phases")
	only := flag.String("only", "", "comma-separated attack ids (filters,refilter,huge-body,trickle,topic-bytes,spellings,stalled,auth-flood,conn-flood)")
	servers := flag.String("servers", "", "comma-separated servers (ours,pocketbase); default both where the attack applies")
	params := flag.String("set", "", "override sizes, e.g. -set AttackDur=10s,StallConns=1000 (see bench.AbuseParams)")
	caddy := flag.String("caddy", "", "use this caddy binary instead of building the working tree (and -commit to name it)")
	commit := flag.String("commit", "", "the tree measured, for the report (default: HEAD of the working tree, +dirty)")
	skipBuild := flag.Bool("skip-build", false, "use bench/.work/caddy as built last time")
	compare := flag.String("compare", "", "an earlier abuse.json (e.g. bench/results/abuse-before/abuse.json) to add a before -> after table")
	render := flag.String("render", "", "rewrite ABUSE.md in -out from an earlier abuse.json, without running")
	flag.Parse()

	if *render != "" {
		res, err := bench.ReadAbuseResults(*render)
		if err != nil {
			fail(err)
		}
		if *compare != "" {
			if res.Before, err = bench.ReadAbuseResults(*compare); err != nil {
				fail(err)
			}
		}
		if err := res.Write(bench.OutDir(*out)); err != nil {
			fail(err)
		}
		fmt.Print(res.Markdown())
		return
	}

	root, work, err := bench.Setup()
	if err != nil {
		fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	load := bench.LoadAvg()
	start := time.Now()
	ab := &bench.AbuseBench{P: bench.AbuseFull(), WorkDir: filepath.Join(work, "run"), Log: os.Stderr, Self: self,
		Only: set(*only), Kinds: map[bench.Kind]bool{}}
	mode := "full"
	if *quick {
		ab.P, mode = bench.AbuseQuick(), "quick"
	}
	if err := ab.P.Set(*params); err != nil {
		fail(err)
	}
	for k := range set(*servers) {
		ab.Kinds[bench.Kind(k)] = true
	}

	ab.Bins = bench.Bins{Caddy: filepath.Join(work, "caddy"), PocketBase: filepath.Join(root, "e2e", ".peer", "base")}
	stamp := bench.TreeState(root)
	switch {
	case *caddy != "":
		abs, err := filepath.Abs(*caddy)
		if err != nil {
			fail(err)
		}
		ab.Bins.Caddy, stamp = abs, "binary "+*caddy
	case !*skipBuild:
		if err := bench.BuildCaddy(root, ab.Bins.Caddy, os.Stderr); err != nil {
			fail(err)
		}
	}
	if *commit != "" {
		stamp = *commit
	}
	if _, err := os.Stat(ab.Bins.PocketBase); err != nil && (len(ab.Kinds) == 0 || ab.Kinds[bench.KindPocketBase]) {
		fmt.Fprintln(os.Stderr, "building pocketbase (e2e/scripts/build-pocketbase.sh)...")
		if err := bench.RunIn(root, os.Stderr, "bash", filepath.Join(root, "e2e", "scripts", "build-pocketbase.sh")); err != nil {
			fail(fmt.Errorf("building pocketbase: %w", err))
		}
	}

	ab.RunAll()

	res := bench.NewAbuseResults(ab.Records, ab.P, mode)
	res.Command = "go run ./bench/cmd/abuse " + strings.Join(os.Args[1:], " ")
	res.Commit = stamp
	res.LoadBefore = load
	res.TotalSeconds = time.Since(start).Seconds()
	if *compare != "" {
		if res.Before, err = bench.ReadAbuseResults(*compare); err != nil {
			fmt.Fprintln(os.Stderr, "abuse: -compare:", err)
		}
	}
	dir := bench.OutDir(*out)
	if err := res.Write(dir); err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "wrote %s in %v\n", dir, time.Since(start).Round(time.Second))
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
	fmt.Fprintln(os.Stderr, "abuse:", err)
	os.Exit(1)
}
