#!/usr/bin/env bash
# End-to-end suite: the official PocketBase JS SDK against our Caddy module and/or a real PocketBase.
#   e2e/run.sh               # target from E2E_TARGET (default caddy)
#   e2e/run.sh caddy         # our module (builds e2e/.bin/caddy)
#   e2e/run.sh pocketbase    # the reference PocketBase v0.40.4 (builds e2e/.peer/base once)
#   e2e/run.sh all           # both; non-zero if either fails
#   e2e/run.sh cluster       # 3 Caddy nodes on a 3-server NATS JetStream cluster behind a Caddy
#                            # load balancer, round robin (builds e2e/.bin/nats-server too);
#                            # E2E_CLUSTER_LB=ip_hash keeps every request on one node (lib/targets.js)
#   e2e/run.sh diff          # differential suite: PocketBase as the oracle for our Caddy (diff/run.js;
#                            # DIFF_SEED, DIFF_CASES=3000 for a long run; see README)
#   e2e/run.sh hook          # PocketBase running integrations/pocketbase/pb_hooks feeds our Caddy; SDK
#                            # deliveries compared with PocketBase's own realtime (hook/)
# Extra arguments after the target are passed to `node --test` (e.g. test/auth.test.js).
# E2E_SKIP_BUILD=1 uses the binaries already there.
set -uo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$E2E_DIR"

target="${1:-${E2E_TARGET:-caddy}}"
[[ $# -gt 0 ]] && shift
case "$target" in
caddy | pocketbase | all | diff | hook | cluster) ;;
*)
	echo "usage: $0 [caddy|pocketbase|all|diff|hook|cluster] [test files...]" >&2
	exit 2
	;;
esac

if [[ ! -d node_modules ]]; then
	npm ci --no-audit --no-fund || exit 1
fi

if [[ -z "${E2E_SKIP_BUILD:-}" ]]; then
	if [[ "$target" == caddy || "$target" == all || "$target" == diff || "$target" == hook || "$target" == cluster ]]; then
		./scripts/build-caddy.sh || exit 1
	fi
	if [[ "$target" == cluster ]]; then
		./scripts/build-nats-server.sh || exit 1
	fi
	if [[ "$target" == pocketbase || "$target" == all || "$target" == diff || "$target" == hook ]]; then
		./scripts/build-pocketbase.sh || exit 1
	fi
fi

if [[ "$target" == diff ]]; then
	echo "=== differential suite: PocketBase v0.40.4 as the oracle for our Caddy ==="
	exec node diff/run.js "$@"
fi

if [[ "$target" == hook ]]; then
	# The cluster case runs three Caddy nodes on a nats-server, the module's own test dependency.
	if [[ -z "${E2E_SKIP_BUILD:-}" || ! -x .bin/nats-server ]]; then
		./scripts/build-nats-server.sh || exit 1
	fi
	echo "=== PocketBase v0.40.4 with realtime.pb.js feeding our Caddy (one node, three on NATS) ==="
	exec node --test --test-concurrency=1 --test-force-exit "${@:-hook/}"
fi

files=("$@")
[[ ${#files[@]} -eq 0 ]] && files=(test/)

run_one() {
	echo "=== e2e against $1 ==="
	E2E_TARGET="$1" node --test --test-concurrency=1 --test-force-exit "${files[@]}"
}

status=0
if [[ "$target" == all ]]; then
	run_one pocketbase || status=1
	run_one caddy || status=1
else
	run_one "$target" || status=1
fi
exit $status
