// The GPU path on a real CUDA device (ctest label "gpu"). Built in every
// build; where no CUDA device is usable (a CPU-only libtorch, or no GPU)
// every test skips with one line saying why: these are the suite's only
// skips. scripts/gpu-check.sh runs them on a GPU machine (docs/gpu.md).
//
// The demo and test models come from scripts/make-demo-models.sh (ctest
// fixture), made by the same machine's python3 torch.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/script.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "fairserve/common/clock.h"
#include "fairserve/models/executor.h"
#include "fairserve/models/model_cache.h"
#include "fairserve/models/model_config.h"
#include "testing/test_dir.h"

#if FAIRSERVE_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda_backend.h"
#endif

namespace fairserve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ModelDir(const std::string& model) { return std::string(TEST_MODELS_DIR) + "/" + model; }

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) {
      GTEST_SKIP() << "no CUDA device: "
                   << CheckDevice("cuda:0").message();
    }
  }

  // mlp_large's config, placed on cuda:0.
  ModelConfig ModelOnCuda(const std::string& model = "mlp_large") {
    absl::StatusOr<ModelConfig> c = LoadModelConfig(ModelDir(model) + "/config.yaml", model);
    EXPECT_TRUE(c.ok()) << c.status();
    ModelConfig config = *c;
    config.device = "cuda:0";
    return config;
  }

  std::unique_ptr<Executor> Load(const ModelConfig& config) {
    auto e = MakeTorchModelLoader()->Load(config, ModelDir(config.name) + "/1/model.pt");
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // `rows` x `cols` FP32 values, deterministic.
  static std::vector<float> Rows(int64_t rows, int64_t cols) {
    std::vector<float> v(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f;
    return v;
  }
  static BatchInput Input(const std::vector<float>& v, int64_t rows, int64_t cols) {
    return BatchInput{DataType::kFp32, {rows, cols},
                      {absl::string_view(reinterpret_cast<const char*>(v.data()),
                                         v.size() * sizeof(float))}};
  }
};

TEST_F(GpuTest, ModelIsPlacedOnCuda0AndMatchesInProcessLibtorch) {
  FakeClock clock;
  ModelCache cache(MakeTorchModelLoader(), clock);
  ASSERT_TRUE(cache.Scan(TEST_MODELS_DIR).ok());
  fairserve::Config server;
  server.devices = {DeviceConfig{"cuda:0", 8ull << 30, 0}};
  cache.SetLimits(server);
  auto servable = cache.AcquireSync("mlp_large", "");
  ASSERT_TRUE(servable.ok()) << servable.status();
  EXPECT_EQ((*servable)->config.device, "cuda:0");

  const int64_t rows = 32, cols = 1024;
  std::vector<float> x = Rows(rows, cols);
  auto served = (*servable)->executor->Run({Input(x, rows, cols)});
  ASSERT_TRUE(served.ok()) << served.status();

  torch::jit::Module module =
      torch::jit::load(ModelDir("mlp_large") + "/1/model.pt", torch::Device(torch::kCUDA, 0));
  c10::InferenceMode guard;
  at::Tensor in = torch::from_blob(x.data(), {rows, cols}, torch::kFloat32).to(torch::kCUDA);
  at::Tensor want = module.forward({in}).toTensor().to(torch::kCPU).contiguous();
  at::Tensor got = torch::from_blob((*served)[0].bytes.data(), {rows, cols}, torch::kFloat32);
  EXPECT_TRUE(torch::allclose(got, want, 1e-5, 1e-6));
}

#if FAIRSERVE_WITH_CUDA

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// What is billed (events on the worker's stream around the forward pass)
// matches timing the same batch directly with events, within a few percent.
TEST_F(GpuTest, ComputeSecondsFromEventsMatchADirectEventTiming) {
  std::unique_ptr<Executor> exec = Load(ModelOnCuda());
  ASSERT_NE(exec, nullptr);
  const int64_t rows = 4096, cols = 1024;  // milliseconds of work, not microseconds
  std::vector<float> x = Rows(rows, cols);
  std::vector<double> billed;
  for (int i = 0; i < 31; ++i) {
    RunTiming timing;
    ASSERT_TRUE(exec->RunTimed({Input(x, rows, cols)}, &timing).ok());
    billed.push_back(timing.device_seconds);
  }

  torch::jit::Module module =
      torch::jit::load(ModelDir("mlp_large") + "/1/model.pt", torch::Device(torch::kCUDA, 0));
  c10::InferenceMode guard;
  at::Tensor in = torch::from_blob(x.data(), {rows, cols}, torch::kFloat32).to(torch::kCUDA);
  c10::cuda::CUDAStream stream = c10::cuda::getCurrentCUDAStream(0);
  std::vector<double> direct;
  for (int i = 0; i < 31; ++i) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record(stream);
    at::Tensor out = module.forward({in}).toTensor();
    stop.record(stream);
    stream.synchronize();
    direct.push_back(start.elapsed_time(stop) / 1000.0);
  }
  double b = Median(billed), d = Median(direct);
  std::printf("billed %.6f s, direct %.6f s per batch of %ld\n", b, d, static_cast<long>(rows));
  EXPECT_GT(b, 0);
  EXPECT_NEAR(b, d, 0.05 * d);
}

// The charge is the allocator's: its delta over the load, plus the warm-up
// peak; never less than the parameters.
TEST_F(GpuTest, ChargeIsTheAllocatorsDeltaAndAtLeastTheParameters) {
  auto before = DeviceMemory("cuda:0");
  ASSERT_TRUE(before.ok()) << before.status();
  std::unique_ptr<Executor> exec = Load(ModelOnCuda());
  ASSERT_NE(exec, nullptr);
  auto after = DeviceMemory("cuda:0");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(exec->memory_bytes() - exec->activation_bytes(), after->allocated - before->allocated);
  EXPECT_GE(exec->memory_bytes(), exec->parameter_bytes());
  EXPECT_GT(exec->activation_bytes(), 0u);  // a warm-up at the max batch allocates
  std::printf("mlp_large: parameters %lu, charged %lu (activations %lu)\n",
              static_cast<unsigned long>(exec->parameter_bytes()),
              static_cast<unsigned long>(exec->memory_bytes()),
              static_cast<unsigned long>(exec->activation_bytes()));
}

// A tenant quota refuses a model on what it measured on the GPU, though its
// estimate fitted.
TEST_F(GpuTest, TenantQuotaRefusesALoadOnMeasuredBytes) {
  fs::path root = testing_util::MakeTestDir("gpu-quota");
  fs::create_directories(root / "private" / "1");
  fs::copy_file(ModelDir("mlp_large") + "/1/model.pt", root / "private" / "1" / "model.pt");
  std::ifstream in(ModelDir("mlp_large") + "/config.yaml");
  std::string config((std::istreambuf_iterator<char>(in)), {});
  size_t at = config.find("name: mlp_large");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, std::strlen("name: mlp_large"), "name: private");
  std::ofstream(root / "private" / "config.yaml")
      << config << "owner: acme\nmemory_estimate: 1KiB\n";

  FakeClock clock;
  ModelCache cache(MakeTorchModelLoader(), clock);
  ASSERT_TRUE(cache.Scan(root.string()).ok());
  fairserve::Config server;
  server.devices = {DeviceConfig{"cuda:0", 8ull << 30, 0}};
  TenantConfig acme;
  acme.id = "acme";
  acme.memory_limit = 4ull << 20;  // mlp_large's weights alone are 16 MiB
  server.tenants = {acme};
  cache.SetLimits(server);
  absl::Status s = cache.AcquireSync("private", "").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("once loaded"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("memory quota on cuda:0"));
  testing_util::RemoveTestDir(root);
}

// A batch that runs the GPU out of memory fails alone, RESOURCE_EXHAUSTED;
// another tenant's batches running meanwhile all succeed, and the same
// model serves normal inputs afterwards.
TEST_F(GpuTest, OutOfMemoryBatchFailsAloneAndTheServerServesOn) {
  std::unique_ptr<Executor> hog = Load(ModelOnCuda("memory_hog"));
  std::unique_ptr<Executor> mlp = Load(ModelOnCuda());
  ASSERT_NE(hog, nullptr);
  ASSERT_NE(mlp, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::thread other([&] {
    std::vector<float> x = Rows(32, 1024);
    while (!stop.load()) {
      (mlp->Run({Input(x, 32, 1024)}).ok() ? ok : failed)++;
    }
  });
  std::vector<float> poison(4 * 4, 5000.0f);  // > 1000: asks for 16 TiB on the GPU
  for (int i = 0; i < 3; ++i) {
    auto r = hog->Run({Input(poison, 4, 4)});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("ran out of memory"));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  other.join();
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  std::vector<float> fine(4 * 4, 1.0f);
  auto r = hog->Run({Input(fine, 4, 4)});
  ASSERT_TRUE(r.ok()) << r.status();
}

// Two workers on one GPU each run on their own stream, and their batches
// are in flight at the same time (their event intervals overlap).
TEST_F(GpuTest, TwoWorkersOnOneGpuOverlap) {
  const int64_t n = 4096;
  at::Tensor a = torch::rand({n, n}, torch::Device(torch::kCUDA, 0));
  std::atomic<int> ready{0};
  struct Seen {
    c10::StreamId stream = 0;
    std::unique_ptr<at::cuda::CUDAEvent> start, stop;
  } seen[2];
  auto worker = [&](int k) {
    c10::InferenceMode guard;
    cuda::Batch batch(0);
    c10::cuda::CUDAStream s = c10::cuda::getCurrentCUDAStream(0);
    seen[k].stream = s.id();
    seen[k].start = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);
    seen[k].stop = std::make_unique<at::cuda::CUDAEvent>(cudaEventDefault);
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    seen[k].start->record(s);
    at::Tensor x = a;
    for (int i = 0; i < 20; ++i) x = torch::matmul(x, a) / n;
    seen[k].stop->record(s);
    batch.Finish();
  };
  std::thread t0(worker, 0), t1(worker, 1);
  t0.join();
  t1.join();
  EXPECT_NE(seen[0].stream, seen[1].stream);
  EXPECT_NE(seen[0].stream, c10::cuda::getDefaultCUDAStream(0).id());
  // Each started before the other finished.
  EXPECT_GT(seen[0].start->elapsed_time(*seen[1].stop), 0);
  EXPECT_GT(seen[1].start->elapsed_time(*seen[0].stop), 0);
}

#endif  // FAIRSERVE_WITH_CUDA

}  // namespace
}  // namespace fairserve
