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
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]} with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing: ${missing[*]}. Install it, then run this again:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
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

# pingora's build compiles zlib-ng, which needs cmake.
ensure_build_tools() {
    ensure_packages cmake cmake
}
