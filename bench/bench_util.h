#ifndef FAIRSERVE_BENCH_BENCH_UTIL_H_
#define FAIRSERVE_BENCH_BENCH_UTIL_H_

// Shared by the benchmarks that start the real daemon and time gRPC calls.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "inference/grpc_service.grpc.pb.h"

namespace fairserve {
namespace bench {

using Clock = std::chrono::steady_clock;

inline double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Stats {
  double p50, p90, p99, mean;
};
Stats Summarize(std::vector<double> v);
double Median(std::vector<double> v);
// "p50 median X ms (runs a..b), p99 median Y ms (runs c..d)" over repetitions.
void Report(const char* name, const std::vector<Stats>& runs, const char* unit = "ms",
            double scale = 1.0);

// A daemon started from build/bin/fairserve with `config_yaml`, in `dir`.
struct Daemon {
  pid_t pid = -1;
  int port = 0;       // gRPC
  int http_port = 0;  // -1 when the config turns HTTP off
  double start_ms = 0;  // exec to serving
};
Daemon StartDaemon(const std::string& bin, const std::string& dir, const std::string& config_yaml);
void StopDaemon(Daemon& d);

// A config with one tenant "bench" (key "bench-key") and `extra` appended.
std::string BenchConfig(const std::string& models, const std::string& tenant_extra = "",
                        const std::string& extra = "");

// An add_one [1,16] request and a callable that sends it once to `port`.
std::function<grpc::Status()> AddOneCaller(int port, const std::string& key = "bench-key");
// The same for `model` with `rows` FP32 rows of `width` values (input INPUT0).
std::function<grpc::Status()> ModelCaller(int port, const std::string& model, int width,
                                          const std::string& key = "bench-key", int rows = 1);

// "<what> median X <unit> (runs a..b)" over the values of several runs.
void ReportRange(const char* what, std::vector<double> values, const char* unit);

// --models DIR (made absolute), --reps N, --calls N.
struct BenchFlags {
  std::string models = "build/demo-models";
  int reps = 3;
  int calls = 1000;
};
BenchFlags ParseBenchFlags(int argc, char** argv, BenchFlags defaults);

// Latencies (ms) of `calls` calls shared by `threads` closed-loop threads,
// each with its own caller from `make_caller` (its own connection). A call
// returning false stops its thread (the caller prints why).
std::vector<double> TimeConcurrent(const std::function<std::function<bool()>()>& make_caller,
                                   int threads, int calls);
// A gRPC caller as TimeConcurrent takes it: false, with the error printed, on failure.
std::function<bool()> Checked(std::function<grpc::Status()> call);

// `calls` sequential calls after 100 warm-up calls; latencies in ms.
// Empty when a call fails (the error is printed).
std::vector<double> TimeCalls(const std::function<grpc::Status()>& call, int calls);

}  // namespace bench
}  // namespace fairserve

#endif  // FAIRSERVE_BENCH_BENCH_UTIL_H_
