#!/usr/bin/env bash
# TLS 1.3 handshake and request rates, the router next to nginx with the same certificate,
# measured by h2load in one run. Installs nginx and h2load if needed; bounded by its counts
# (defaults: 3 rounds x 4 scenarios x 2 targets, about a minute).
#
#   load-tests/tls-bench.sh [--requests N] [--connections C] [--handshakes H] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
ensure_packages nginx nginx h2load nghttp2-client taskset util-linux
cargo build --release --locked --quiet -p residency-router -p load-tests
exec ./target/release/tls-bench "$@"
