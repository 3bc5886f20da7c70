#!/usr/bin/env bash
# Set-up, build, and run every test. This is what .ci/run calls.
#
#   scripts/test.sh                      everything, in this order:
#     1. the normal build (build/): every unit and integration test (ctest),
#        and the CUDA sources compiled against Debian's c10/cuda headers
#     1b. the GPU build rehearsal (scripts/gpu-check.sh --rehearse)
#     2. ASan + UBSan build (build-asan/): the same tests again
#     3. TSan build (build-tsan/): admission, rate limiter, scheduler, cache, ledger,
#        InferCall and access-log tests
#     4. libFuzzer (build-fuzz/, clang): each fuzz target briefly (FUZZ_SECONDS, 20)
#   scripts/test.sh --sanitize=address   only step 2    (--sanitize=thread: only 3)
#   scripts/test.sh --only=plain|gpu-rehearsal|fuzz    only step 1 / 1b / 4
# Other arguments go to every ctest run (e.g. -R ServingTest).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
only=all
ctest_args=()
for a in "$@"; do
  case $a in
    --sanitize=address) only=address ;;
    --sanitize=thread) only=thread ;;
    --sanitize=*) echo "unknown sanitizer '${a#*=}': use address or thread" >&2; exit 2 ;;
    --only=plain|--only=fuzz|--only=address|--only=thread|--only=gpu-rehearsal) only=${a#*=} ;;
    --only=*) echo "unknown part '${a#*=}': use plain, gpu-rehearsal, address, thread or fuzz" >&2
              exit 2 ;;
    *) ctest_args+=("$a") ;;
  esac
done
want() { [[ $only == all || $only == "$1" ]]; }
step() { echo; echo "=== $* ($(date +%T))"; }
started=$(date +%s)
trap 'echo; echo "=== finished in $(( $(date +%s) - started )) s ($(date +%T))"' EXIT

"$root/scripts/setup.sh"
jobs=$(nproc)
# ccache hits across clones of the tree in other directories.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
# Each test that needs a server (the daemon, Prometheus, Redis) starts its
# own on loopback and stops it.
run_ctest() { (cd "$1" && shift && ctest --output-on-failure -j"$jobs" --timeout 900 "$@"); }

if want plain; then
  step "plain build and tests (the build includes the CUDA compile check)"
  "$root/scripts/build.sh"
  # The CUDA sources compile against /usr/local/cuda (the CUDA toolkit comes
  # with the machine, not from apt): say so when this machine has none.
  if ! grep -q "^FAIRSERVE_CUDA_CHECK:BOOL=ON" "${BUILD_DIR:-$root/build}/CMakeCache.txt"; then
    echo "test.sh: the CUDA compile check did not run: no CUDA toolkit headers at /usr/local/cuda" \
         "(or no c10/cuda headers in libtorch-dev); docs/gpu.md"
  fi
  run_ctest "${BUILD_DIR:-$root/build}" "${ctest_args[@]}"
fi

if want gpu-rehearsal; then
  # The GPU machine's build path (scripts/gpu-check.sh) on this machine: the
  # bundle's Debian packages unpacked into a prefix, CMake limited to it,
  # Debian's CPU libtorch standing in for the GPU machine's, C++20 as there.
  step "GPU build rehearsal (docs/gpu.md)"
  "$root/scripts/gpu-bundle.sh" >/dev/null
  "$root/scripts/gpu-check.sh" --rehearse "$root/build-rehearsal-results"
fi

if want address; then
  step "ASan + UBSan build and tests"
  # allocator_may_return_null: a failed huge allocation must fail like it does
  # without ASan (the daemon answers RESOURCE_EXHAUSTED), not abort.
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  BUILD_DIR=$root/build-asan "$root/scripts/build.sh" -DFAIRSERVE_SANITIZE=address \
    -DFAIRSERVE_BUILD_BENCH=OFF -DFAIRSERVE_CUDA_CHECK=OFF
  run_ctest "$root/build-asan" "${ctest_args[@]}"
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

if want thread; then
  step "TSan build and tests (admission, rate limiter, scheduler, model cache, ledger, usage sink, InferCall, access log)"
  cmake -S "$root" -B "$root/build-tsan" -DCMAKE_BUILD_TYPE=Release -DFAIRSERVE_SANITIZE=thread \
    -DFAIRSERVE_BUILD_BENCH=OFF -DFAIRSERVE_CUDA_CHECK=OFF >/dev/null
  cmake --build "$root/build-tsan" -j"$jobs" --target admission_test scheduling_test models_test \
    tenancy_test common_test metering_test postgres_usage_test server_test
  "$root/scripts/make-demo-models.sh" --with-test-models "$root/build-tsan/test-models" >/dev/null
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  # Only the suites that exercise our threads; the libtorch executor tests
  # (uninstrumented OpenMP) are left to the other builds. InferCall's tests
  # do run TorchScript models, tiny ones on one worker, whose tensors our
  # code touches only before and after the forward pass.
  # '*SchedulerTest*': the value-parameterized suite is named
  # Policies/SchedulerTest, which 'Scheduler*' does not match.
  filter='TokenBucket*:Admission*:SharedAdmission*:RedisRateLimiter*:*SchedulerTest*:FairPolicy*'
  filter+=':BatchRunner*:Batchable*:ModelCache*:AuthThrottle*:Authenticator*:ApiKey*:Snapshot*'
  filter+=':ServerMetrics*:MetricsTest*:TaskExecutorTest*:AskThenContinue*:InferCall*'
  filter+=':LedgerTest*:PostgresUsage*:RunOnCaller*:AccessLog*:RejectionHolder*'
  # TSan needs a fixed memory layout on kernels with high mmap randomisation
  # (vm.mmap_rnd_bits > 28): run without ASLR where the system allows it.
  norandom=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then norandom=(setarch "$(uname -m)" -R); fi
  for t in admission_test scheduling_test models_test tenancy_test common_test metering_test \
           postgres_usage_test server_test; do
    "${norandom[@]}" "$root/build-tsan/bin/$t" --gtest_filter="$filter" --gtest_brief=1
  done
  unset TSAN_OPTIONS
fi

if want fuzz; then
  step "fuzz targets, ${FUZZ_SECONDS:-20} s each"
  "$root/scripts/fuzz.sh" --seconds "${FUZZ_SECONDS:-20}"
fi
