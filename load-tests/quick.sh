#!/usr/bin/env bash
# A first throughput figure: wrk against the router (residency logic on) in front of one demo
# site backend, and the same wrk straight at that backend, in one run. Prints both and the
# ratio. Bounded: two runs of DURATION seconds each (default 10).
#
#   load-tests/quick.sh [DURATION] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
ensure_packages wrk wrk

duration=${1:-10}
connections=${2:-64}
results=load-tests/results
mkdir -p "$results"

cargo build --release --locked --quiet -p residency-router
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn ./target/release/residency-router demo --listen "127.0.0.1:$port" > "$results/demo.log" 2>&1 &
demo=$!
trap 'kill $demo 2>/dev/null; wait $demo 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "site backend virginia" "$results/demo.log" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
backend=$(grep -o 'virginia .* on http://[0-9.:]*' "$results/demo.log" | grep -o 'http://.*')

run() { # name url [wrk args...]
    local name=$1 url=$2; shift 2
    wrk -t1 -c"$connections" -d"${duration}s" --latency "$@" "$url" > "$results/$name.txt"
    awk '/Requests\/sec/ {print $2}' "$results/$name.txt"
}
direct=$(run backend-direct "$backend/hello")
routed=$(run router "http://127.0.0.1:$port/hello" -H 'x-tenant-id: acme')
echo "| target | requests/s |"
echo "|---|---|"
echo "| backend direct | $direct |"
echo "| router -> backend (acme, us) | $routed |"
python3 -c "print(f'| ratio router / direct | {float(\"$routed\")/float(\"$direct\"):.2f} |')"
echo "(wrk -t1 -c$connections -d${duration}s; raw output in $results/)"
