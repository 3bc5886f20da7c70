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
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "fairserve/models/executor.h"
#include "fairserve/tenancy/api_key.h"
#include "inference/grpc_service.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Stats {
  double p50, p90, p99, mean;
};

Stats Summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto q = [&](double p) { return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))]; };
  double sum = 0;
  for (double x : v) sum += x;
  return {q(0.50), q(0.90), q(0.99), sum / v.size()};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Daemon {
  pid_t pid = -1;
  int port = 0;
  double start_ms = 0;
};

Daemon StartDaemon(const std::string& bin, const std::string& dir, const std::string& models) {
  std::string config = dir + "/config.yaml";
  std::ofstream(config) << "server: {listen_address: 127.0.0.1, grpc_port: 0, http_port: -1, "
                           "data_dir: data}\nmodel_repository: " << models
                        << "\nscheduler: {workers: 1}\ntenants:\n  - id: bench\n    api_keys: [\""
                        << fairserve::HashApiKey("bench-key") << "\"]\n";
  std::string ready = dir + "/ready.json";
  std::filesystem::remove(ready);
  Daemon d;
  auto t0 = Clock::now();
  d.pid = fork();
  if (d.pid == 0) {
    freopen((dir + "/daemon.log").c_str(), "w", stderr);
    freopen((dir + "/daemon.log").c_str(), "a", stdout);
    execl(bin.c_str(), bin.c_str(), "--config", config.c_str(), "--ready-file", ready.c_str(),
          nullptr);
    _exit(127);
  }
  while (true) {
    std::ifstream in(ready);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::smatch m;
    if (std::regex_search(text, m, std::regex("\"grpc_port\":(\\d+)"))) {
      d.port = std::stoi(m[1]);
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  d.start_ms = Ms(Clock::now() - t0);
  return d;
}

void StopDaemon(Daemon& d) {
  kill(d.pid, SIGTERM);
  waitpid(d.pid, nullptr, 0);
}

}  // namespace

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
    Daemon d = StartDaemon(bin, dir, models);
    cold.push_back(d.start_ms);
    StopDaemon(d);
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

  Daemon d = StartDaemon(bin, dir, models);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(d.port),
                                     grpc::InsecureChannelCredentials());
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  inference::ModelInferRequest req;
  req.set_model_name("add_one");
  auto* input = req.add_inputs();
  input->set_name("INPUT0");
  input->set_datatype("FP32");
  input->add_shape(1);
  input->add_shape(16);
  req.add_raw_input_contents(raw);
  auto call = [&] {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer bench-key");
    inference::ModelInferResponse resp;
    return stub->ModelInfer(&ctx, req, &resp);
  };
  for (int r = 0; r < reps; ++r) {
    std::vector<double> lat;
    for (int i = 0; i < 100; ++i) call();  // warm-up
    for (int i = 0; i < calls; ++i) {
      auto t0 = Clock::now();
      grpc::Status s = call();
      lat.push_back(Ms(Clock::now() - t0));
      if (!s.ok()) {
        std::fprintf(stderr, "ModelInfer failed: %s\n", s.error_message().c_str());
        return 1;
      }
    }
    remote.push_back(Summarize(lat));
  }
  StopDaemon(d);
  std::filesystem::remove_all(dir);

  auto report = [&](const char* name, const std::vector<Stats>& s) {
    std::vector<double> p50, p99;
    for (const Stats& x : s) {
      p50.push_back(x.p50);
      p99.push_back(x.p99);
    }
    std::printf("%-22s p50 median %.3f ms (runs %.3f..%.3f), p99 median %.3f ms (runs %.3f..%.3f)\n",
                name, Median(p50), *std::min_element(p50.begin(), p50.end()),
                *std::max_element(p50.begin(), p50.end()), Median(p99),
                *std::min_element(p99.begin(), p99.end()), *std::max_element(p99.begin(), p99.end()));
  };
  std::printf("add_one [1,16], %d sequential calls x %d runs:\n", calls, reps);
  report("  in-process executor", local);
  report("  gRPC ModelInfer", remote);
  return 0;
}
