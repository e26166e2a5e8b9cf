#!/usr/bin/env bash
# Builds and runs `residency-router demo`: four site backends and the router on 127.0.0.1:8080.
# With --fleet: a 3-member etcd cluster on loopback and two routers sharing its registry
# (the us edge on 127.0.0.1:8080, the eu edge on 127.0.0.1:8081).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
for arg in "$@"; do
    if [ "$arg" = "--fleet" ]; then
        ensure_etcd
    fi
done
exec cargo run --locked --quiet -p residency-router -- demo "$@"
