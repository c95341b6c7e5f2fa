#!/usr/bin/env bash
# Installs the Debian 12 packages tfgate needs to build and test.
# Idempotent: does nothing when every package is already present.
# Usage: scripts/install-deps.sh [--bench]   (--bench adds nginx for bench/)
set -euo pipefail

pkgs=(
  # build
  cmake pkg-config gcc clang clang-format make git
  # libraries (all found through pkg-config)
  libgrpc-dev libprotobuf-dev protobuf-c-compiler libprotobuf-c-dev
  libnghttp2-dev libssl-dev libjansson-dev libjwt-dev libhttp-parser-dev
  libhiredis-dev libcurl4-openssl-dev zlib1g-dev libcmocka-dev libuv1-dev
  # test clients and servers (real ones, never mocks)
  nghttp2-client curl redis-server protobuf-compiler protobuf-compiler-grpc
  python3-grpcio python3-protobuf python3-jwt python3-cryptography python3-h2 openssl
  python3-prometheus-client python3-yaml
)
if [ "${1:-}" = "--bench" ]; then
  pkgs+=(nginx-light python3-matplotlib)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
