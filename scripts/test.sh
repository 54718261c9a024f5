#!/usr/bin/env bash
# Runs every test of caddy-realtime on a fresh machine: Go unit and Caddy tests
# with -race, short fuzz runs, the PocketBase JS SDK suite against our Caddy and
# against a real PocketBase, the differential suite (PocketBase as the oracle
# for our rules and deliveries), several Caddy nodes on a NATS JetStream
# cluster (Go tests and the SDK suite through a load balancer), and the
# Chromium tests of the demo page.
# It installs what they need (npm packages, Debian's chromium, PocketBase built
# from the Go module proxy). Set SKIP_E2E=1 or SKIP_BROWSER=1 to leave parts out.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted"
	exit 1
fi
go vet ./...

step "cross-compile (bench/ is Linux-only)"
for os in windows darwin freebsd; do
	echo "-- GOOS=$os"
	GOOS=$os go build ./...
done

step "go test -race (unit, Caddy in a real process, Caddyfile adapt)"
# e2e/cluster (Caddy processes on an in-process NATS cluster) runs in its own step below.
go test -race -count=1 -timeout 15m $(go list ./... | grep -v '/e2e/cluster$')
# The handler suite again, with HTTP/1.1 streams served by the broker's writer pool,
# plain and over TLS (TLS streams are written by a goroutine per batch).
go test -race -count=1 -timeout 5m ./handler/ -hijack
go test -race -count=1 -timeout 5m ./handler/ -hijack -tls

# Fuzz budgets are execution counts, not durations: with -fuzztime=10s, Go
# 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" at the deadline on a loaded machine, having found nothing
# (golang/go#75804, fixed in Go 1.27). A count has no deadline to race.
# FUZZ_EXECS=5000000 for a long local run.
step "fuzzing (${FUZZ_EXECS:=100000} executions per target)"
for target in $(grep -l '^func Fuzz' $(git ls-files '*_test.go' 2>/dev/null || find . -name '*_test.go')); do
	pkg="./$(dirname "$target")"
	for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$target" | cut -d' ' -f2); do
		echo "-- $fn ($pkg)"
		if ! out=$(go test -run='^$' -fuzz="^${fn}\$" -fuzztime="${FUZZ_EXECS}x" "$pkg" 2>&1); then
			printf '%s\n' "$out"
			exit 1
		fi
	done
done

step "benchmarks compile and run once"
if ! out=$(go test -run='^$' -bench=. -benchtime=1x ./rules/ ./broker/ 2>&1); then
	printf '%s\n' "$out"
	exit 1
fi

if [ "${SKIP_E2E:-}" != 1 ]; then
	step "PocketBase JS SDK suite: our Caddy and a real PocketBase"
	e2e/run.sh all
	step "differential suite: the same rules and events on PocketBase and on our Caddy"
	E2E_SKIP_BUILD=1 e2e/run.sh diff
	step "several nodes: 3 Caddy nodes on a 3-server NATS JetStream cluster behind a Caddy load balancer"
	# CLUSTER_CHAOS=full for the long chaos loop.
	CADDY_BIN="$PWD/e2e/.bin/caddy" go test -count=1 -timeout 10m ./e2e/cluster/
	step "PocketBase JS SDK suite through the load balancer in front of the 3 nodes"
	e2e/scripts/build-nats-server.sh
	# Round robin: every subscription POST and admin client call may land on a node that does
	# not hold the stream and is forwarded; events are published on the three nodes in turn.
	E2E_SKIP_BUILD=1 E2E_CLUSTER_LB=round_robin e2e/run.sh cluster
	step "caddy realtime import-pocketbase against the PocketBase built above"
	CADDY_BIN="$PWD/e2e/.bin/caddy" POCKETBASE_BIN="$PWD/e2e/.peer/base" go test -count=1 -run '^TestImportPocketBase$' .
	step "PocketBase with integrations/pocketbase/pb_hooks feeding our Caddy (imported rules, SDK on both)"
	E2E_SKIP_BUILD=1 e2e/run.sh hook
fi

if [ "${SKIP_BROWSER:-}" != 1 ]; then
	step "Chromium tests: the demo page, native EventSource resume"
	DEMO_SCREENSHOT="${TMPDIR:-/tmp}/caddy-realtime-demo.png" e2e/browser/run.sh
fi

step "all tests passed"
