#!/usr/bin/env bash
# Installs every Debian 12 package keyraft needs to build, test and benchmark.
# Idempotent: it asks dpkg what is missing and installs only that. As non-root
# it prints the exact apt-get line instead of running it.
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config clang clang-format
    libraft-dev libuv1-dev libh2o-dev libssl-dev libjansson-dev
    libcurl4-openssl-dev libarchive-dev libbsd-dev libcmocka-dev
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
[ ${#missing[@]} -eq 0 ] && exit 0

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
