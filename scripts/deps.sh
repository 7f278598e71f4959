#!/usr/bin/env bash
# Installs every Debian 12 package keyraft needs to build, test and benchmark.
# Idempotent: it asks dpkg what is missing and installs only that. As non-root
# it prints the exact apt-get line instead of running it.
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config clang clang-format
    libraft-dev libuv1-dev libh2o-dev libssl-dev libjansson-dev
    libcurl4-openssl-dev libarchive-dev libbsd-dev libcmocka-dev libjemalloc-dev
    libclang-rt-14-dev
    python3 python3-pytest python3-jwt python3-cryptography
    curl openssl tcpdump
)
if [ "${KR_DEPS_BENCH:-0}" = 1 ]; then
    pkgs+=(nghttp2-client wrk etcd-server etcd-client)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# Node runs the second JWT verifier of the identity tests (jose).  Any
# node and npm on PATH will do (Debian's nodejs 18 is enough), so only
# ask for Debian's when there are none.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi

# The npm packages of tests/e2e/jwks-node, exactly as its lock file says,
# into its node_modules (not tracked by git).  Needs no root.
npm_deps() {
    local dir
    dir="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/jwks-node"
    [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ] && return 0
    command -v npm >/dev/null || return 0
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

if [ ${#missing[@]} -eq 0 ]; then
    npm_deps
    exit 0
fi

cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
if [ "$(id -u)" -ne 0 ]; then
    echo "keyraft: missing packages; run as root:" >&2
    echo "  apt-get update && ${cmd[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# An old or empty package list makes install fail; refresh it once.
apt-get update -qq
"${cmd[@]}"
npm_deps
