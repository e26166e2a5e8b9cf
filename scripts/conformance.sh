#!/usr/bin/env bash
# The admin API against docs/openapi.yaml, judged by an external tool: schemathesis with all
# its checks, against a real router on free loopback ports with a temporary config. Fails on
# any finding. Run by scripts/test.sh; takes well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_packages curl curl
ensure_schemathesis # sets $SCHEMATHESIS

cargo build --locked --quiet -p residency-router
bin=$PWD/target/debug/residency-router
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
hash=$(printf %s "$token" | "$bin" token hash)

# Writes the config for two free ports, starts the router and waits until the admin API is
# ready. Fails when the router exits first (e.g. a port was taken meanwhile).
start_router() {
http=$(free_port)
admin=$(free_port)
cat > "$dir/router.toml" <<TOML
[listen]
http  = "127.0.0.1:$http"
admin = "127.0.0.1:$admin"

[tenancy]
sources  = [ { header = "x-tenant-id" }, { path = "/t/{tenant}/" } ]
unknown  = "reject"
registry = "tenants.json"

[health]
check = "none"

[admin]
audit_log = "audit/audit.log"
[[admin.tokens]]
name   = "conformance"
role   = "operator"
sha256 = "$hash"

[[regions]]
name  = "us"
hosts = ["us.api.example.com"]
  [[regions.sites]]
  name = "virginia"
  lat = 38.9
  lon = -77.4
  backends = ["127.0.0.1:9"]

[[regions]]
name  = "eu"
hosts = ["eu.api.example.com"]
  [[regions.sites]]
  name = "frankfurt"
  lat = 50.1
  lon = 8.7
  backends = ["127.0.0.1:10"]
TOML
cat > "$dir/tenants.json" <<'JSON'
{ "tenants": [
  { "id": "acme",    "region": "us" },
  { "id": "globex",  "region": "eu", "replication": { "regions": ["us"], "mode": "read-replica" } },
  { "id": "initech", "region": "eu", "replication": { "regions": ["us"], "mode": "active", "expires_at": "2099-01-01T00:00:00Z" } }
] }
JSON

"$bin" run --config "$dir/router.toml" > "$dir/router.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$admin/readyz" > /dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { pid=; return 1; }
    sleep 0.1
done
kill "$pid"; wait "$pid" 2>/dev/null; pid=
return 1
}

started=
for _ in 1 2 3; do
    if start_router; then started=1; break; fi
done
[ -n "$started" ] || { echo "the router did not start:" >&2; cat "$dir/router.log" >&2; exit 1; }

# The token is random per run, so printing the command prints no secret worth keeping.
# Bounded by the examples per operation, and by `timeout` should the router hang.
# From the temporary directory, where schemathesis leaves its cache.
root=$PWD
(
    cd "$dir"
    set -x
    exec timeout 300 "$SCHEMATHESIS" --config-file "$root/scripts/schemathesis.toml" run "$root/docs/openapi.yaml" \
        --url "http://127.0.0.1:$admin" --checks all \
        -H "Authorization: Bearer $token" \
        --max-examples "${SCHEMATHESIS_EXAMPLES:-100}" --no-color
)
