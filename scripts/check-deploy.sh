#!/usr/bin/env bash
# deploy/ judged by tools nobody here wrote, as an SRE's CI would judge it:
#   - the Dockerfile by hadolint (any finding fails);
#   - every Kubernetes overlay rendered by `kubectl kustomize`, then validated against the
#     Kubernetes schemas by `kubernetes-validate --strict` (unknown fields fail; a kind without
#     a schema fails too), for the oldest and the newest version the manifests support;
#   - the systemd unit by `systemd-analyze verify` (any message fails) and
#     `systemd-analyze security` (exposure at most 2.0), and its user by systemd-sysusers.
# What these cannot see (the configs validate, ports, probes, mounts and grace periods agree)
# is checked in router/tests/it/deploy.rs. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prereqs.sh
ensure_packages systemd-analyze systemd
# The unit's ExecReload runs /bin/kill (procps), which verify looks for.
[ -x /bin/kill ] || install_packages procps
ensure_deploy_checkers # sets HADOLINT, KUBECTL and KUBERNETES_VALIDATE

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "-- hadolint deploy/container/Dockerfile"
"$HADOLINT" --failure-threshold info deploy/container/Dockerfile

# preStop's sleep action needs Kubernetes 1.30 (docs/deploy.md).
for overlay in deploy/kubernetes/overlays/*/; do
    name=$(basename "$overlay")
    "$KUBECTL" kustomize "$overlay" > "$work/$name.yaml"
    for version in 1.30.0 1.37.0; do
        echo "-- kubernetes-validate --strict -k $version: overlay $name"
        "$KUBERNETES_VALIDATE" --strict --quiet -k "$version" "$work/$name.yaml" 2>&1 | tee "$work/validate.out"
        # A kind it has no schema for is only a warning to the tool; here it fails.
        if [ -s "$work/validate.out" ]; then
            echo "kubernetes-validate: overlay $name has findings (above)" >&2
            exit 1
        fi
    done
done

# systemd-analyze reads the unit as systemd would, in a root of its own: the system's unit
# directory (for the targets it names) and the binaries it runs.
root=$work/root
mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/local/bin" "$root/bin"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
cargo build --locked --quiet -p residency-router
cp target/debug/residency-router "$root/usr/local/bin/"
cp /bin/kill "$root/bin/kill"
cp deploy/systemd/residency-router.service "$root/etc/systemd/system/"
echo "-- systemd-analyze verify deploy/systemd/residency-router.service"
systemd-analyze verify --root="$root" --man=no "$root/etc/systemd/system/residency-router.service" > "$work/verify.out" 2>&1 || true
if [ -s "$work/verify.out" ]; then
    # It warns about unknown keys and bad values, and still exits 0.
    cat "$work/verify.out" >&2
    exit 1
fi
echo "-- systemd-analyze security deploy/systemd/residency-router.service"
systemd-analyze security --offline=yes --root="$root" --threshold=20 residency-router.service | tail -1
echo "-- systemd-sysusers deploy/systemd/residency-router.sysusers"
mkdir -p "$work/sysusers/etc"
systemd-sysusers --root="$work/sysusers" "$PWD/deploy/systemd/residency-router.sysusers"
grep -q '^residency-router:' "$work/sysusers/etc/passwd"
echo "deploy/: ok"
