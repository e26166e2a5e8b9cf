#!/usr/bin/env bash
# Builds and runs `residency-router demo`: four site backends and the router on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
exec cargo run --locked --quiet -p residency-router -- demo "$@"
