#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and running the demo need.
# Idempotent: quiet and fast when everything is already present.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config ccache git ca-certificates openssl curl
  clang libclang-rt-dev
  libtorch-dev python3-torch
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libgoogle-perftools-dev
  libspdlog-dev libfmt-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev libsqlite3-dev sqlite3 libssl-dev libhiredis-dev libabsl-dev
  libpqxx-dev libpq-dev postgresql
  prometheus-cpp-dev nlohmann-json3-dev libcli11-dev graphviz
  libopenblas0-pthread
  redis-server prometheus gnuplot-nox
  python3-grpcio python3-protobuf python3-yaml python3-requests
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} package(s): ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # Services installed here must not start by themselves: tests start their own on loopback.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libtorch's CPU matmuls go through libblas.so.3: make sure it is OpenBLAS, not the
# netlib reference implementation (about 9x slower on our MLPs).
blas=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | awk '/^Value:/ {print $2}')
case "$blas" in
  *openblas*) ;;
  *)
    alt=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -1 || true)
    if [ -n "$alt" ]; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$alt" >/dev/null
      echo "setup: libblas.so.3 now points at $alt"
    fi
    ;;
esac
