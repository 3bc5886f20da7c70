#include "nlohmann/json.hpp"
#include "bench_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "fairserve/tenancy/api_key.h"

namespace fairserve {
namespace bench {

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

void Report(const char* name, const std::vector<Stats>& runs, const char* unit, double scale) {
  std::vector<double> p50, p99;
  for (const Stats& x : runs) {
    p50.push_back(x.p50 * scale);
    p99.push_back(x.p99 * scale);
  }
  std::printf(
      "%-28s p50 median %.3f %s (runs %.3f..%.3f), p99 median %.3f %s (runs %.3f..%.3f)\n", name,
      Median(p50), unit, *std::min_element(p50.begin(), p50.end()),
      *std::max_element(p50.begin(), p50.end()), Median(p99), unit,
      *std::min_element(p99.begin(), p99.end()), *std::max_element(p99.begin(), p99.end()));
}

std::string BenchConfig(const std::string& models, const std::string& tenant_extra,
                        const std::string& extra) {
  return "server: {listen_address: 127.0.0.1, grpc_port: 0, http_port: -1, data_dir: data}\n"
         "model_repository: " + models + "\nscheduler: {workers: 1}\ntenants:\n  - id: bench\n"
         "    api_keys: [\"" + HashApiKey("bench-key") + "\"]\n" + tenant_extra + extra;
}

Daemon StartDaemon(const std::string& bin, const std::string& dir, const std::string& config_yaml) {
  std::string config = dir + "/config.yaml";
  std::ofstream(config) << config_yaml;
  std::string ready = dir + "/ready.json";
  std::filesystem::remove(ready);
  Daemon d;
  std::fflush(stdout);  // or the child's freopen prints our buffered lines again
  std::fflush(stderr);
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
    nlohmann::json ports = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (ports.is_object() && ports.contains("grpc_port")) {
      d.port = ports["grpc_port"].get<int>();
      d.http_port = ports.value("http_port", -1);
      break;
    }
    if (waitpid(d.pid, nullptr, WNOHANG) == d.pid) {
      std::fprintf(stderr, "fairserve exited during start-up; see %s/daemon.log\n", dir.c_str());
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  d.start_ms = Ms(Clock::now() - t0);
  return d;
}

void ReportRange(const char* what, std::vector<double> v, const char* unit) {
  std::sort(v.begin(), v.end());
  std::printf("%-44s median %9.3f %s (runs %.3f..%.3f)\n", what, Median(v), unit, v.front(),
              v.back());
}

std::vector<double> TimeConcurrent(const std::function<std::function<bool()>()>& make_caller,
                                   int threads, int calls) {
  std::mutex mu;
  std::vector<double> all;
  std::atomic<int> left{calls};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::function<bool()> call = make_caller();
      std::vector<double> mine;
      while (left.fetch_sub(1) > 0) {
        auto t0 = Clock::now();
        if (!call()) break;
        mine.push_back(Ms(Clock::now() - t0));
      }
      std::lock_guard<std::mutex> lock(mu);
      all.insert(all.end(), mine.begin(), mine.end());
    });
  }
  for (std::thread& t : pool) t.join();
  return all;
}

std::function<bool()> Checked(std::function<grpc::Status()> call) {
  return [call = std::move(call)] {
    grpc::Status s = call();
    if (!s.ok()) std::fprintf(stderr, "call failed: %s\n", s.error_message().c_str());
    return s.ok();
  };
}

void StopDaemon(Daemon& d) {
  kill(d.pid, SIGTERM);
  waitpid(d.pid, nullptr, 0);
}

BenchFlags ParseBenchFlags(int argc, char** argv, BenchFlags defaults) {
  BenchFlags f = defaults;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--models") f.models = argv[i + 1];
    if (a == "--reps") f.reps = std::stoi(argv[i + 1]);
    if (a == "--calls") f.calls = std::stoi(argv[i + 1]);
  }
  f.models = std::filesystem::absolute(f.models);
  return f;
}

std::function<grpc::Status()> AddOneCaller(int port, const std::string& key) {
  return ModelCaller(port, "add_one", 16, key);
}

std::function<grpc::Status()> ModelCaller(int port, const std::string& model, int width,
                                          const std::string& key, int rows) {
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                     grpc::InsecureChannelCredentials());
  std::shared_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  auto req = std::make_shared<inference::ModelInferRequest>();
  req->set_model_name(model);
  auto* input = req->add_inputs();
  input->set_name("INPUT0");
  input->set_datatype("FP32");
  input->add_shape(rows);
  input->add_shape(width);
  std::vector<float> x(static_cast<size_t>(rows) * width);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 16);
  req->add_raw_input_contents(
      std::string(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float)));
  std::string auth = "Bearer " + key;
  return [stub, req, auth] {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", auth);
    inference::ModelInferResponse resp;
    return stub->ModelInfer(&ctx, *req, &resp);
  };
}

std::vector<double> TimeCalls(const std::function<grpc::Status()>& call, int calls) {
  std::vector<double> lat;
  for (int i = 0; i < 100; ++i) call();  // warm-up
  for (int i = 0; i < calls; ++i) {
    auto t0 = Clock::now();
    grpc::Status s = call();
    lat.push_back(Ms(Clock::now() - t0));
    if (!s.ok()) {
      std::fprintf(stderr, "ModelInfer failed: %s\n", s.error_message().c_str());
      return {};
    }
  }
  return lat;
}

}  // namespace bench
}  // namespace fairserve
