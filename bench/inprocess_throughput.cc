// In-process libtorch throughput of one model at a fixed batch size, through
// the same executor the daemon uses but with no gRPC and no queue: the
// ceiling that served throughput is compared against.
//
//   build/bin/inprocess_throughput --model-dir build/demo-models/mlp_large --batch 32 --seconds 5

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "fairserve/models/executor.h"
#include "fairserve/models/model_config.h"

int main(int argc, char** argv) {
  std::string dir;
  int64_t batch = 32;
  double seconds = 5;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--model-dir") dir = argv[i + 1];
    if (a == "--batch") batch = std::stoll(argv[i + 1]);
    if (a == "--seconds") seconds = std::stod(argv[i + 1]);
    if (a == "--threads") threads = std::stoi(argv[i + 1]);
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: inprocess_throughput --model-dir DIR [--batch N] [--seconds S] "
                         "[--threads N]\n");
    return 2;
  }
  std::string name = dir.substr(dir.find_last_of('/') + 1);
  auto config = fairserve::LoadModelConfig(dir + "/config.yaml", name);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
    return 1;
  }
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
  auto start = std::chrono::steady_clock::now();
  int64_t runs = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds)) {
    if (!(*exec)->Run({input}).ok()) return 1;
    ++runs;
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s\n", nlohmann::ordered_json{{"model", name},
                                             {"batch", batch},
                                             {"threads", threads},
                                             {"batches_per_s", runs / elapsed},
                                             {"samples_per_s", runs * batch / elapsed},
                                             {"ms_per_batch", 1e3 * elapsed / runs}}
                           .dump()
                           .c_str());
  return 0;
}
