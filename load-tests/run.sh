#!/usr/bin/env bash
# The router side by side with nginx and HAProxy doing the same job, and a bare Pingora
# forwarder, in one run. Installs what it needs, builds in release mode and runs the harness
# on core 1 (the proxies it starts run on core 0). Bounded: rounds x runs x duration
# (defaults: 3 rounds x 28 runs x 4 s, about 6 minutes of load).
#
#   load-tests/run.sh [--duration S] [--rounds R] [--large N] [--only SCENARIO]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
ensure_packages wrk wrk h2load nghttp2-client nginx nginx haproxy haproxy \
    gnuplot gnuplot-nox taskset util-linux
cargo build --release --locked --quiet -p residency-router -p load-tests
exec taskset -c 1 ./target/release/load-harness "$@"
