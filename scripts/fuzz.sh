#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan into
# build-fuzz/, then runs each for a given time starting from its seed corpus.
# New interesting inputs collect in build-fuzz/fuzz-corpus/<target>/; a crash
# leaves its input in build-fuzz/fuzz-artifacts/ and fails the script.
#
#   scripts/fuzz.sh [--seconds N] [target ...]
#   targets: decode_request_fuzzer config_fuzzer model_config_fuzzer (default: all)
#   reproduce: build-fuzz/bin/<target> build-fuzz/fuzz-artifacts/<target>/crash-...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=60
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=(decode_request_fuzzer config_fuzzer model_config_fuzzer)

CC=clang CXX=clang++ cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release \
  -DFAIRSERVE_FUZZ=ON -DFAIRSERVE_BUILD_BENCH=OFF -DFAIRSERVE_CUDA_CHECK=OFF >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  corpus=$build_dir/fuzz-corpus/$t
  artifacts=$build_dir/fuzz-artifacts/$t/
  mkdir -p "$corpus" "$artifacts"
  echo "== $t: ${seconds}s from $(ls "$root/tests/fuzz/corpus/$t" | wc -l) seeds"
  if ! "$build_dir/bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
      -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts" \
      "$corpus" "$root/tests/fuzz/corpus/$t" 2>"$build_dir/fuzz-$t.log"; then
    echo "!! $t found a problem; input in $artifacts (log: $build_dir/fuzz-$t.log):"
    grep -E "ERROR|SUMMARY|invariant|unexpected|Test unit written" "$build_dir/fuzz-$t.log" | head -20
    status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build_dir/fuzz-$t.log" | tail -2
  fi
done
exit $status
