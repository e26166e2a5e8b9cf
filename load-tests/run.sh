#!/usr/bin/env bash
# The router side by side with nginx and HAProxy doing the same job, and bare Pingora and
# hyper forwarders, in one run. Installs what it needs, builds in release mode and runs the
# harness on core 1 (the proxies it starts run on core 0; with --workers above 1 everything
# shares both cores). Bounded: rounds x runs x duration (defaults: 3 rounds x 33 runs x 4 s,
# about 7 minutes of load).
#
#   load-tests/run.sh [--duration S] [--rounds R] [--large N] [--only SCENARIO] [--workers N]
#                     [--external NAME=COMMAND --external-path PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
ensure_packages wrk wrk h2load nghttp2-client nginx nginx haproxy haproxy \
    gnuplot gnuplot-nox taskset util-linux valgrind valgrind
cargo build --release --locked --quiet -p residency-router -p load-tests
cores=1
for ((i = 1; i <= $#; i++)); do
    if [[ ${!i} == --workers ]]; then
        next=$((i + 1))
        [[ ${!next:-1} == 1 ]] || cores=0-1
    elif [[ ${!i} == --workers=* ]]; then
        arg=${!i}
        [[ ${arg#--workers=} == 1 ]] || cores=0-1
    fi
done
exec taskset -c "$cores" ./target/release/load-harness "$@"
