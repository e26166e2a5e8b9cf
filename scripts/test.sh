#!/usr/bin/env bash
# The whole test suite: formatting, lints, every shipped config validated by the binary, and
# every test of the workspace. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_build_tools
ensure_rust_components
# promtool and a real Prometheus server for the metrics tests; the OpenSSL command line for
# checking the TLS 1.3 policy as an operator would (`openssl s_client -tls1_2`); strace, to
# inject a failing fsync under the running router (router/tests/it/admin_storage_faults.rs).
ensure_packages promtool prometheus openssl openssl strace strace
# A real etcd cluster for fleet mode (router/tests/it/fleet.rs).
ensure_etcd

echo "== third_party: each vendored crate is its release plus its reviewed diff"
scripts/check-third-party.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== validate shipped configs with the binary"
cargo build --locked --quiet -p residency-router
for config in config/examples/*.toml; do
    ./target/debug/residency-router validate --config "$config"
done
echo "== deploy/: hadolint, kubectl kustomize + kubernetes-validate, systemd-analyze"
# (The configs shipped in deploy/ need their Secrets' files beside them: they are validated
# by the binary in router/tests/it/deploy.rs.)
scripts/check-deploy.sh
echo "== cargo test"
cargo test --workspace --locked
echo "== admin API conformance: schemathesis, every check, against docs/openapi.yaml"
scripts/conformance.sh
