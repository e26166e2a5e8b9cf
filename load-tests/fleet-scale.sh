#!/usr/bin/env bash
# Fleet mode at scale against a real 3-member etcd cluster on loopback: import, cold start and
# memory next to a file registry, the request path of both under wrk, write-to-apply latency.
#   load-tests/fleet-scale.sh [--tenants N] [--moves M] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
ensure_etcd
ensure_packages wrk wrk
cargo build --release --locked --quiet -p residency-router -p load-tests --bin residency-router --bin fleet-scale
exec ./target/release/fleet-scale "$@"
