#ifndef FAIRSERVE_MODELS_EXECUTOR_H_
#define FAIRSERVE_MODELS_EXECUTOR_H_

// The seam between serving and a framework. Only the libtorch implementation
// (torch_executor.cc) sees torch headers; tests plug in fakes that are slow,
// fail, or count calls.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fairserve/config/config.h"
#include "fairserve/models/model_config.h"
#include "fairserve/models/tensor.h"

namespace fairserve {

// How long a batch took by the device's own clock. CUDA executors time the
// forward pass with events on the worker's stream; the CPU has no such
// clock and leaves device_seconds negative, so the caller times the run
// with its steady clock.
struct RunTiming {
  double device_seconds = -1;
};

// A loaded model, ready to run. Run() may be called from several worker
// threads at once.
class Executor {
 public:
  virtual ~Executor() = default;

  // Runs one batch. `inputs` follow config().inputs in order; the result
  // follows config().outputs in order. Errors: INVALID_ARGUMENT for inputs the
  // model rejects, INTERNAL for a model that returns something other than its
  // config declares, RESOURCE_EXHAUSTED for out-of-memory.
  virtual absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>& inputs) = 0;

  // Run(), also reporting the device's timing of the batch when the device
  // has a clock of its own. `timing` may be null.
  virtual absl::StatusOr<std::vector<Tensor>> RunTimed(const std::vector<BatchInput>& inputs,
                                                       RunTiming* timing) {
    (void)timing;
    return Run(inputs);
  }

  // RunTimed(), with each output split into the rows of each request of
  // the batch: part k of an output holds part_rows[k] rows. Empty
  // `part_rows`: one part, the whole output (a lone request, or a model
  // without a batch dimension). An output whose first dimension is not the
  // sum of part_rows comes back whole-shaped with no parts, for the caller
  // to refuse against the config. This default copies each part out of
  // RunTimed()'s outputs (a lone request's are moved); an executor that
  // copies its framework's tensors out anyway (libtorch) copies each
  // request's rows straight to their part instead: one copy out in all.
  virtual absl::StatusOr<std::vector<SplitOutput>> RunSplit(const std::vector<BatchInput>& inputs,
                                                            const std::vector<int64_t>& part_rows,
                                                            RunTiming* timing);

  // Bytes this model is charged, measured after load: on the CPU its
  // parameters and buffers; on a GPU what the caching allocator gained by
  // the load plus the peak of a warm-up at the max batch (activations).
  virtual uint64_t memory_bytes() const = 0;
  // Its parameters' and buffers' bytes, and the activation peak measured on
  // a GPU (0 on the CPU), for the status page and the GPU tests.
  virtual uint64_t parameter_bytes() const { return memory_bytes(); }
  virtual uint64_t activation_bytes() const { return 0; }
};

// Loads model files. Thread-safe.
class ModelLoader {
 public:
  virtual ~ModelLoader() = default;
  virtual absl::StatusOr<std::unique_ptr<Executor>> Load(const ModelConfig& config,
                                                         const std::string& model_file) = 0;
};

// Settings of the libtorch runtime, applied once per process.
struct TorchRuntimeOptions {
  int intra_op_threads = 1;
};
void ConfigureTorchRuntime(const TorchRuntimeOptions& options);
// Applies to the calling thread: inference mode, no autograd.
void PrepareTorchWorkerThread();

// The libtorch TorchScript loader. A model loads onto its config's device
// ("cpu" or "cuda:N", as placed by the model cache); a device this build or
// machine lacks fails the load with FAILED_PRECONDITION.
std::unique_ptr<ModelLoader> MakeTorchModelLoader();

// Whether this build was linked against a CUDA-capable libtorch.
bool BuiltWithCuda();
// CUDA devices usable now: 0 on a CPU-only build or a machine without one.
int CudaDeviceCount();
// OK when `device` ("cpu", "cuda:N") exists here; else FAILED_PRECONDITION
// saying why (no CUDA in this build, too few devices), INVALID_ARGUMENT for
// a name that is no device.
absl::Status CheckDevice(const std::string& device);
// At start: checks that every configured device exists, and caps each
// GPU's caching allocator at its memory_budget (a per-process memory
// fraction), so one process cannot take the card.
absl::Status PrepareDevices(const std::vector<DeviceConfig>& devices);

// A GPU's memory as the caching allocator and the driver see it.
struct DeviceMemoryStats {
  uint64_t allocated = 0;  // in live tensors
  uint64_t reserved = 0;   // held by the caching allocator
  uint64_t total = 0;      // the device's memory
};
// NOT_FOUND for the cpu (no allocator statistics), FAILED_PRECONDITION for
// a device this build or machine lacks.
absl::StatusOr<DeviceMemoryStats> DeviceMemory(const std::string& device);

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_EXECUTOR_H_
