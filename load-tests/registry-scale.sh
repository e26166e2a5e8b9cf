#!/usr/bin/env bash
# The registry at scale: load time, memory per tenant, lookup + decision time, allocations.
#   load-tests/registry-scale.sh [--tenants N] [--runs R]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
cargo build --release --locked --quiet -p load-tests --features count-allocations --bin registry-scale
exec ./target/release/registry-scale "$@"
