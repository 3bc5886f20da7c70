#!/usr/bin/env bash
# Builds fairserve against a CUDA libtorch on a GPU machine and proves the
# GPU path there: the GPU tests (ctest label gpu), then the GPU benchmarks
# (bench/gpu_bench.py). Writes the results (Markdown and JSON) into OUTDIR.
#
#   scripts/gpu-check.sh OUTDIR               on the GPU machine
#   scripts/gpu-check.sh --rehearse OUTDIR    here: the same path, minus the GPU
#
# It needs gpu-bundle/ beside the tree (scripts/gpu-bundle.sh, run on the
# Debian 12 dev machine) and, on the GPU machine, only what that machine
# has: gcc, CMake, ninja (or make), CUDA and python3 with PyTorch, whose
# wheel is the CUDA libtorch built against. Nothing is installed: the
# bundle's .deb files are unpacked (dpkg -x, or ar + tar) into a private
# prefix under /tmp, and CMake, pkg-config, protoc and the loader are
# pointed at it.
#
# The configure step searches the prefix and Torch only
# (CMAKE_FIND_ROOT_PATH with the *_MODE_{PACKAGE,INCLUDE,LIBRARY}=ONLY), so
# a package missing from the bundle fails here, by name. --rehearse does
# exactly that on the dev machine, with Debian's own CPU libtorch (unpacked
# from its .deb files into a second prefix) standing in for the GPU
# machine's, compiled as C++20 as a PyTorch 2.1x build is; it then runs
# the GPU tests (they skip: no CUDA) and, with --bench, the benchmarks
# briefly on the CPU, to prove the scripts.
#
# Options: --bundle DIR (default: gpu-bundle), --jobs N, --no-bench, --bench.
# Timestamps per phase; the GPU run must end within 8 minutes on 16 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rehearse=0 bench=1 bundle=$root/gpu-bundle out="" jobs=$(nproc)
while [ $# -gt 0 ]; do
  case $1 in
    --rehearse) rehearse=1; bench=0 ;;
    --bundle) bundle=$2; shift ;;
    --jobs) jobs=$2; shift ;;
    --no-bench) bench=0 ;;
    --bench) bench=1 ;;
    -*) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || { echo "usage: $0 [--rehearse] [--bundle DIR] [--no-bench] OUTDIR" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
started=$(date +%s)
phase() { echo; echo "=== gpu-check $(date +%T) (+$(( $(date +%s) - started )) s): $*"; }
status=fail
trap 'echo; echo "=== gpu-check $status after $(( $(date +%s) - started )) s"' EXIT

mode=gpu
[ $rehearse -eq 1 ] && mode=rehearsal
prefix=/tmp/fairserve-$mode-prefix
build=$root/build-$mode
arch=$(gcc -print-multiarch 2>/dev/null || true)
arch=${arch:-x86_64-linux-gnu}

# Unpacks one .deb into $2 without dpkg when the machine has none.
unpack() {
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$1" "$2"
  else
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && ar x "$1" && tar -xf data.tar.* -C "$2")
    rm -rf "$tmp"
  fi
}

phase "unpack $(ls "$bundle"/*.deb 2>/dev/null | wc -l) package(s) from $bundle into $prefix"
[ -f "$bundle/MANIFEST" ] || { echo "gpu-check: no bundle at $bundle: run scripts/gpu-bundle.sh on the dev machine" >&2; exit 1; }
rm -rf "$prefix"
mkdir -p "$prefix"
for deb in "$bundle"/*.deb; do unpack "$deb" "$prefix"; done
# Development symlinks whose run-time library the bundle leaves to the
# system (libssl.so -> libssl.so.3, ...) point at the system's copy.
libdir=$prefix/usr/lib/$arch
find "$libdir" -maxdepth 1 -xtype l | while read -r link; do
  target=$(readlink "$link")
  for sys in "/usr/lib/$arch/$target" "/lib/$arch/$target"; do
    if [ -e "$sys" ]; then ln -sf "$sys" "$link"; break; fi
  done
done
# CMake package files that name /usr directly are rewritten to the prefix.
grep -rlE '"/usr/(lib|include)' "$libdir/cmake" "$prefix/usr/share/cmake" 2>/dev/null |
  xargs -r sed -i -E "s#\"/usr/(lib|include)#\"$prefix/usr/\\1#g"

if [ $rehearse -eq 1 ]; then
  phase "rehearsal: Debian's CPU libtorch unpacked as a stand-in for the GPU machine's"
  torch_prefix=/tmp/fairserve-rehearsal-torch
  debs=/tmp/fairserve-rehearsal-torch-debs
  mkdir -p "$debs"
  (cd "$debs" && for p in libtorch-dev libtorch1.13 libgflags-dev libgflags2.2 libgoogle-glog-dev libgoogle-glog0v6; do
     ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -qq "$p" 2>/dev/null ||
       { echo "gpu-check: cannot download $p (apt-get download; run scripts/gpu-bundle.sh first, which updates the package lists)" >&2; exit 1; }
   done)
  rm -rf "$torch_prefix"
  mkdir -p "$torch_prefix"
  for deb in "$debs"/*.deb; do unpack "$deb" "$torch_prefix"; done
  torch_dir=$torch_prefix/usr/lib/$arch/cmake/Torch
  torch_root=$torch_prefix
  python=/usr/bin/python3
  std=(-DFAIRSERVE_CXX_STANDARD=20)
  extra_roots=""
  cuda=()
else
  python=python3
  torch_dir=$("$python" -c 'import torch,os; print(os.path.join(torch.utils.cmake_prefix_path,"Torch"))')
  torch_root=$("$python" -c 'import torch,os; print(os.path.dirname(torch.__file__))')
  std=()
  # The CUDA toolkit, and the wheel's own nvidia-* libraries (cuDNN, ...).
  cuda_home=${CUDA_HOME:-/usr/local/cuda}
  extra_roots="$cuda_home;$(dirname "$torch_root")/nvidia"
  cuda=(-DCUDAToolkit_ROOT="$cuda_home")
  command -v nvcc >/dev/null && cuda+=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)")
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi

export PATH=$prefix/usr/bin:$PATH
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_LIBDIR=$libdir/pkgconfig:$prefix/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$prefix
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

# The C library is the system's, never the bundle's: its headers and the
# dl and rt stubs that prometheus-cpp's civetweb asks CMake to find.
libc_include=$(echo '#include <dlfcn.h>' | gcc -E -x c - | grep -m1 -o '"/[^"]*dlfcn.h"' | tr -d '"')
libc_lib() {  # the C library's own libNAME, wherever this compiler finds it
  local f
  for f in "lib$1.a" "lib$1.so" "lib$1.so.1" "lib$1.so.2"; do
    f=$(gcc -print-file-name="$f")
    if [ -e "$f" ]; then realpath "$f"; return; fi
  done
  echo "$1"
}
libc=(-DLIBDL_INCLUDE_DIRS="$(dirname "$libc_include")" -DLIBDL_LIBRARIES="$(libc_lib dl)"
      -DLIBRT_INCLUDE_DIRS="$(dirname "$libc_include")" -DLIBRT_LIBRARIES="$(libc_lib rt)")

configure() {
  rm -rf "$build"
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DTorch_DIR="$torch_dir" "${std[@]}" "${libc[@]}" "${cuda[@]}" -DFAIRSERVE_CUDA_CHECK=OFF \
    -DCMAKE_FIND_ROOT_PATH="$prefix;$torch_root${extra_roots:+;$extra_roots}" \
    -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE="$1" -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE="$1" \
    -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY="$1" -DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER \
    -DProtobuf_PROTOC_EXECUTABLE="$prefix/usr/bin/protoc" \
    -DPKG_CONFIG_EXECUTABLE="$prefix/usr/bin/pkgconf"
}
phase "configure (prefix and Torch only)"
if ! configure ONLY; then
  if [ $rehearse -eq 1 ]; then
    echo "gpu-check: configure failed with only the bundle and Torch visible" >&2
    exit 1
  fi
  # On the GPU machine the CUDA toolkit's CMake lookups may need system
  # paths (the driver library); the rehearsal already proved the bundle.
  phase "configure again, system paths after the prefix (CUDA lookups)"
  configure BOTH
fi
grep -E "^(FAIRSERVE_WITH_CUDA|CMAKE_CXX_STANDARD|Torch_DIR)" "$build/CMakeCache.txt" || true
grep -E "fairserve: (C\+\+|CUDA)" "$build/CMakeFiles/CMakeOutput.log" 2>/dev/null || true

phase "build with $jobs job(s)"
cmake --build "$build" -j"$jobs" --target fairserve gpu_test fairserve-loadgen inprocess_throughput
# Nothing the build made may come from the system's dev packages: every
# library it links is the bundle's, Torch's, CUDA's or the C runtime's.
ldd "$build/bin/fairserve" > "$out/ldd-fairserve.txt"
if grep -q "not found" "$out/ldd-fairserve.txt"; then
  echo "gpu-check: unresolved libraries:" >&2; grep "not found" "$out/ldd-fairserve.txt" >&2; exit 1
fi

phase "demo and test models ($python)"
PYTHON=$python "$root/scripts/make-demo-models.sh" --with-test-models "$build/test-models" >/dev/null
PYTHON=$python "$root/scripts/make-demo-models.sh" "$build/demo-models" >/dev/null

phase "GPU tests"
"$build/bin/gpu_test" --gtest_output="json:$out/gpu_test.json" 2>&1 | tee "$out/gpu_test.log" |
  grep -E "^\[ +(RUN|OK|FAILED|SKIPPED|PASSED) +\]|Skipped|no CUDA device|billed|charged" || true
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "gpu-check: GPU tests failed (see $out/gpu_test.log)" >&2; exit 1; }

if [ $bench -eq 1 ]; then
  device=cuda:0
  quick=()
  if [ $rehearse -eq 1 ]; then device=cpu; quick=(--quick); fi
  phase "GPU benchmarks on $device"
  "$python" "$root/bench/gpu_bench.py" --build "$build" --device "$device" --out "$out" "${quick[@]}"
fi
status=passed
