#!/usr/bin/env bash
# Builds nats-server (the version in go.mod, v2.15.3) into e2e/.bin/nats-server for the
# cluster target of the SDK suite (E2E_TARGET=cluster). ~10 s warm.
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$E2E_DIR/.." && pwd)"
mkdir -p "$E2E_DIR/.bin"
cd "$REPO_DIR"
go build -o "$E2E_DIR/.bin/nats-server" github.com/nats-io/nats-server/v2
echo "built $E2E_DIR/.bin/nats-server"
