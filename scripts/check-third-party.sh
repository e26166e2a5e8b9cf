#!/usr/bin/env bash
# Every vendored crate under third_party/ is its released version plus its reviewed diff, and
# nothing else: the diff reversed on a copy must give back the release, file for file, as
# recorded in <crate>-<version>.sha256 (sha256sum of the released crate's files).
set -euo pipefail
cd "$(dirname "$0")/.."
for sums in third_party/*.sha256; do
    release=$(basename "$sums" .sha256)          # pingora-proxy-0.9.1
    crate=${release%-*}                           # pingora-proxy
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    cp -r "third_party/$crate" "$scratch/$crate"
    (cd "$scratch/$crate" && git apply -R "$OLDPWD/third_party/$crate.diff")
    (cd "$scratch/$crate" && sha256sum --quiet -c "$OLDPWD/$sums")
    extra=$(cd "$scratch/$crate" && find . -type f | sort | comm -23 - <(awk '{print $2}' "$OLDPWD/$sums"))
    if [[ -n $extra ]]; then
        echo "third_party/$crate has files the release does not: $extra" >&2
        exit 1
    fi
    echo "third_party/$crate = $release + third_party/$crate.diff"
    rm -rf "$scratch"
    trap - EXIT
done
