#!/usr/bin/env bash
# Puts the Debian packages a GPU-machine build of fairserve needs into
# gpu-bundle/ (git-ignored; about 25 MiB): everything the build finds with
# find_package or pkg-config, protoc and the gRPC plugin, and the run-time
# libraries they link, downloaded with apt-get download. Nothing is
# installed. scripts/gpu-check.sh unpacks them on the GPU machine, which
# brings its own compiler, CMake, ninja, CUDA and libtorch (python3's
# PyTorch wheel). See docs/gpu.md.
#
#   scripts/gpu-bundle.sh [DIR]     (default: gpu-bundle)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/gpu-bundle}

# What CMakeLists.txt finds, plus pkg-config itself.
ROOTS=(
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libabsl-dev
  libspdlog-dev libfmt-dev libyaml-cpp-dev libssl-dev libsqlite3-dev
  prometheus-cpp-dev libcpp-httplib-dev libhiredis-dev libpqxx-dev libpq-dev
  nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev pkgconf zlib1g-dev
  libgoogle-perftools-dev
)
# Left out of the closure: the C library, the compiler's own run-time, and
# system libraries every Linux with a CUDA toolkit already has (their
# headers are not needed: nothing here includes them directly).
BASE='^(libc6|libc6-dev|libc-dev-bin|linux-libc-dev|libstdc\+\+6|libgcc-s1|gcc-[0-9]+-base|libcrypt1|libcrypt-dev|libnsl2|libnsl-dev|libtirpc3|libtirpc-dev|libtirpc-common|rpcsvc-proto|zlib1g|libssl3|libzstd1|liblzma5|liblz4-1|libbz2-1\.0|libsqlite3-0|libgnutls30|libgmp10|libp11-kit0|libunistring2|libnettle8|libhogweed6|libidn2-0|libtasn1-6|libffi8|libkrb5-3|libk5crypto3|libkrb5support0|libkeyutils1|libcom-err2|libgssapi-krb5-2|libldap-2\.5-0|libldap-common|libsasl2-2|libsasl2-modules-db|libsasl2-modules|libdb5\.3|libnghttp2-14|libpsl5|librtmp1|libssh2-1|catch2|libgpg-error0|libgcrypt20|libsystemd0|libcap2|libselinux1|libpcre2-8-0|debconf|cdebconf|perl-base|dpkg|tar|install-info|libmd0|libbsd0)$'

# apt-cache depends lists every package that provides a dependency and
# --recurse follows them all: LLVM's libunwind-N(-dev) provide
# libunwind-dev (gperftools), the real libunwind-dev is taken.
ALTERNATIVES='^libunwind-[0-9]+(-dev)?$'

command -v apt-get >/dev/null || { echo "gpu-bundle: needs apt-get (run it on the Debian 12 dev machine)" >&2; exit 1; }
# A fresh machine may have no package lists yet.
if ! apt-cache show libgrpc++-dev >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
fi
mapfile -t closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
  --no-breaks --no-replaces --no-enhances "${ROOTS[@]}" | grep -v '^ ' | grep -v '^<' |
  sort -u | grep -Ev "$BASE" | grep -Ev "$ALTERNATIVES")
rm -rf "$out"
mkdir -p "$out"
echo "gpu-bundle: downloading ${#closure[@]} package(s) into $out"
# _apt cannot write to every directory; the download is the same either way.
(cd "$out" && apt-get download -qq "${closure[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
n=$(ls "$out"/*.deb 2>/dev/null | wc -l)
if [ "$n" -ne "${#closure[@]}" ]; then
  echo "gpu-bundle: got $n of ${#closure[@]} packages" >&2
  exit 1
fi
(cd "$out" && ls *.deb > MANIFEST)
echo "gpu-bundle: $n packages, $(du -sh "$out" | cut -f1)"
