#!/usr/bin/env bash
# Builds our Caddy (standard modules + the realtime module) into e2e/.bin/caddy.
# A cold build takes ~2.5 min on 2 cores; warm rebuilds ~12 s.
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$E2E_DIR/.." && pwd)"
mkdir -p "$E2E_DIR/.bin"
cd "$REPO_DIR"
echo "building caddy from $REPO_DIR/cmd/caddy..."
go build -o "$E2E_DIR/.bin/caddy" ./cmd/caddy
echo "built $E2E_DIR/.bin/caddy"
