#!/usr/bin/env bash
# Browser tests of the demo page: installs what is missing, then runs them.
#   e2e/browser/run.sh                          all tests
#   e2e/browser/run.sh --test-name-pattern=50   some of them
# Env: CADDY_BIN=path (skip the build), CHROMIUM_BIN (default /usr/bin/chromium),
#      SHOTS_DIR=dir (extra screenshots: dark mode, narrow window), KEEP_TMP=1 (keep Caddy's temp dir and log).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

chromium="${CHROMIUM_BIN:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
	echo "installing Debian's chromium..."
	sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi

# npm ci when playwright-core is missing or not the locked version.
want="$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')"
have="$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')"
if [ "$want" != "$have" ]; then
	npm ci --no-audit --no-fund
fi

if [ -z "${CADDY_BIN:-}" ]; then
	echo "building caddy..."
	(cd ../.. && go build -o e2e/browser/.bin/caddy ./cmd/caddy)
	export CADDY_BIN="$PWD/.bin/caddy"
fi

exec node --test --test-concurrency=1 "$@" test/
