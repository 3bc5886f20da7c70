// Serving overhead: cold start of the daemon with the demo models, and the
// latency of sequential add_one calls through gRPC versus the same call
// in-process (fairserve's libtorch executor, no gRPC, no queue).
//
//   build/bin/serving_latency --models build/demo-models [--calls 1000] [--reps 3]

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "fairserve/models/executor.h"
#include "fairserve/tenancy/api_key.h"
#include "inference/grpc_service.grpc.pb.h"

using fairserve::bench::Clock;
using fairserve::bench::Daemon;
using fairserve::bench::Median;
using fairserve::bench::Ms;
using fairserve::bench::Stats;
using fairserve::bench::Summarize;

int main(int argc, char** argv) {
  std::string models = "build/demo-models";
  std::string bin = std::filesystem::path(argv[0]).parent_path() / "fairserve";
  int calls = 1000, reps = 3, starts = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--models") models = argv[i + 1];
    if (a == "--calls") calls = std::stoi(argv[i + 1]);
    if (a == "--reps") reps = std::stoi(argv[i + 1]);
    if (a == "--starts") starts = std::stoi(argv[i + 1]);
    if (a == "--fairserve") bin = argv[i + 1];
  }
  models = std::filesystem::absolute(models);
  char tmpl[] = "/tmp/fairserve-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);

  // Cold start: exec to serving, demo models loaded.
  std::vector<double> cold;
  for (int i = 0; i < starts; ++i) {
    Daemon d = fairserve::bench::StartDaemon(bin, dir, fairserve::bench::BenchConfig(models));
    cold.push_back(d.start_ms);
    fairserve::bench::StopDaemon(d);
  }
  std::sort(cold.begin(), cold.end());
  std::printf("cold start (exec -> serving, %d starts): median %.1f ms, min %.1f, max %.1f\n",
              starts, Median(cold), cold.front(), cold.back());

  std::vector<float> x(16);
  for (int i = 0; i < 16; ++i) x[i] = i;
  std::string raw(reinterpret_cast<const char*>(x.data()), 64);

  // In-process: the same executor the daemon uses, called directly.
  fairserve::ConfigureTorchRuntime({1});
  fairserve::ModelConfig config;
  config.name = "add_one";
  config.max_batch_size = 64;
  config.inputs = {{"INPUT0", fairserve::DataType::kFp32, {-1, 16}}};
  config.outputs = {{"OUTPUT0", fairserve::DataType::kFp32, {-1, 16}}};
  auto exec = fairserve::MakeTorchModelLoader()->Load(config, models + "/add_one/1/model.pt");
  if (!exec.ok()) {
    std::fprintf(stderr, "%s\n", exec.status().ToString().c_str());
    return 1;
  }
  fairserve::BatchInput in{fairserve::DataType::kFp32, {1, 16}, {raw}};
  std::vector<Stats> local, remote;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> lat;
    for (int i = 0; i < 100; ++i) (*exec)->Run({in}).IgnoreError();  // warm-up
    for (int i = 0; i < calls; ++i) {
      auto t0 = Clock::now();
      auto out = (*exec)->Run({in});
      lat.push_back(Ms(Clock::now() - t0));
      if (!out.ok()) return 1;
    }
    local.push_back(Summarize(lat));
  }

  Daemon d = fairserve::bench::StartDaemon(bin, dir, fairserve::bench::BenchConfig(models));
  auto call = fairserve::bench::AddOneCaller(d.port);
  for (int r = 0; r < reps; ++r) {
    std::vector<double> lat = fairserve::bench::TimeCalls(call, calls);
    if (lat.empty()) return 1;
    remote.push_back(Summarize(lat));
  }
  fairserve::bench::StopDaemon(d);
  std::filesystem::remove_all(dir);

  std::printf("add_one [1,16], %d sequential calls x %d runs:\n", calls, reps);
  fairserve::bench::Report("  in-process executor", local);
  fairserve::bench::Report("  gRPC ModelInfer", remote);
  return 0;
}
