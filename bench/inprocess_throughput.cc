// In-process libtorch throughput of one model at a fixed batch size, through
// the same executor the daemon uses but with no gRPC and no queue: the
// ceiling that served throughput is compared against.
//
//   build/bin/inprocess_throughput --model-dir build/demo-models/mlp_large --batch 32 --seconds 5
//       [--threads N] [--workers W] [--device cpu|cuda:N]
//
// --threads is libtorch's intra-op threads (per worker); --workers runs W
// threads, each its own batches through the one executor, as the daemon's
// scheduler workers do (`workers: 2, intra_op_threads: 1` is the daemon's
// CPU default on two cores: --workers 2 --threads 1). The default is one
// worker with every core as intra-op threads. overhead.sh runs both
// layouts and takes the better as the ceiling for issue 16's ratios.
//
// Besides throughput it prints the median time per batch (p50_ms), the
// model's charged, parameter and activation bytes, and the sum of the
// batches' compute time by the device's clock (CUDA events; absent on the
// CPU) and by the host's steady clock, per 1000 batches.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "fairserve/models/executor.h"
#include "fairserve/models/model_config.h"

int main(int argc, char** argv) {
  std::string dir;
  std::string device;
  int64_t batch = 32;
  double seconds = 5;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int workers = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--model-dir") dir = argv[i + 1];
    if (a == "--batch") batch = std::stoll(argv[i + 1]);
    if (a == "--seconds") seconds = std::stod(argv[i + 1]);
    if (a == "--threads") threads = std::stoi(argv[i + 1]);
    if (a == "--workers") workers = std::max(1, std::stoi(argv[i + 1]));
    if (a == "--device") device = argv[i + 1];
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: inprocess_throughput --model-dir DIR [--batch N] [--seconds S] "
                         "[--threads N] [--workers W] [--device cpu|cuda:N]\n");
    return 2;
  }
  std::string name = dir.substr(dir.find_last_of('/') + 1);
  auto config = fairserve::LoadModelConfig(dir + "/config.yaml", name);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
  config->device = device;
  fairserve::ConfigureTorchRuntime({threads});
  fairserve::PrepareTorchWorkerThread();
  auto exec = fairserve::MakeTorchModelLoader()->Load(*config, dir + "/1/model.pt");
  if (!exec.ok()) {
    std::fprintf(stderr, "%s\n", exec.status().ToString().c_str());
    return 1;
  }
  const fairserve::TensorSpec& in = config->inputs[0];
  std::vector<int64_t> shape = in.shape;
  shape[0] = batch;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> data(n, 0.5f);
  std::string raw(reinterpret_cast<char*>(data.data()), n * 4);
  fairserve::BatchInput input{in.dtype, shape, {raw}};
  for (int i = 0; i < 20; ++i) (*exec)->Run({input}).IgnoreError();
  // Each worker keeps its own figures; they are summed once all have run.
  struct Figures {
    int64_t runs = 0;
    double device_total = 0, host_total = 0;
    bool device_clock = false;
    bool failed = false;
    std::vector<double> per_batch;
  };
  std::vector<Figures> figures(workers);
  auto start = std::chrono::steady_clock::now();
  auto work = [&](Figures& f) {
    fairserve::PrepareTorchWorkerThread();
    while (std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds)) {
      fairserve::RunTiming timing;
      auto t0 = std::chrono::steady_clock::now();
      if (!(*exec)->RunTimed({input}, &timing).ok()) {
        f.failed = true;
        return;
      }
      double host = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      f.host_total += host;
      f.per_batch.push_back(host);
      if (timing.device_seconds >= 0) {
        f.device_clock = true;
        f.device_total += timing.device_seconds;
      }
      ++f.runs;
    }
  };
  std::vector<std::thread> pool;
  for (int w = 1; w < workers; ++w) pool.emplace_back(work, std::ref(figures[w]));
  work(figures[0]);
  for (std::thread& t : pool) t.join();
  int64_t runs = 0;
  double device_total = 0, host_total = 0;
  bool device_clock = false;
  std::vector<double> per_batch;
  for (const Figures& f : figures) {
    if (f.failed) return 1;
    runs += f.runs;
    device_total += f.device_total;
    host_total += f.host_total;
    device_clock = device_clock || f.device_clock;
    per_batch.insert(per_batch.end(), f.per_batch.begin(), f.per_batch.end());
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(per_batch.begin(), per_batch.end());
  nlohmann::ordered_json out{{"model", name},
                             {"device", device.empty() ? "cpu" : device},
                             {"batch", batch},
                             {"threads", threads},
                             {"workers", workers},
                             {"batches_per_s", runs / elapsed},
                             {"samples_per_s", runs * batch / elapsed},
                             {"ms_per_batch", 1e3 * elapsed / runs},
                             {"p50_ms", 1e3 * per_batch[per_batch.size() / 2]},
                             {"memory_bytes", (*exec)->memory_bytes()},
                             {"parameter_bytes", (*exec)->parameter_bytes()},
                             {"activation_bytes", (*exec)->activation_bytes()},
                             {"host_seconds_per_1000", 1000 * host_total / runs}};
  out["device_seconds_per_1000"] =
      device_clock ? nlohmann::ordered_json(1000 * device_total / runs) : nlohmann::ordered_json();
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
