#!/usr/bin/env bash
# Builds the reference PocketBase (examples/base) into e2e/.peer/base, once.
# PocketBase v0.40.4 needs Go 1.27; the Go module proxy serves that toolchain.
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEER_DIR="$E2E_DIR/.peer"
PB_VERSION="${PB_VERSION:-v0.40.4}"
PB_TOOLCHAIN="${PB_TOOLCHAIN:-go1.27.4}"
STAMP="$PEER_DIR/base.version"

if [[ -x "$PEER_DIR/base" && -f "$STAMP" && "$(cat "$STAMP")" == "$PB_VERSION" ]]; then
	echo "pocketbase $PB_VERSION already built: $PEER_DIR/base"
	exit 0
fi

mkdir -p "$PEER_DIR"
echo "building pocketbase $PB_VERSION with $PB_TOOLCHAIN (takes a few minutes on a cold cache)..."
# Run outside the repo so our go.mod does not take part.
cd "$PEER_DIR"
GOTOOLCHAIN="$PB_TOOLCHAIN" GOBIN="$PEER_DIR" \
	go install "github.com/pocketbase/pocketbase/examples/base@$PB_VERSION"
echo "$PB_VERSION" >"$STAMP"
echo "built $PEER_DIR/base"
