#!/usr/bin/env bash
# Builds the release router and the load harness, installs wrk if needed, and runs the
# harness. Bounded: rounds x 3 targets x duration seconds (defaults: 2 x 3 x 5 s).
#
#   load-tests/run.sh [--duration S] [--connections N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
ensure_packages wrk wrk
cargo build --release --locked --quiet -p residency-router -p load-tests
exec ./target/release/load-harness "$@"
