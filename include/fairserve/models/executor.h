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
#include "fairserve/models/model_config.h"
#include "fairserve/models/tensor.h"

namespace fairserve {

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

  // Bytes this model holds (parameters and buffers), measured after load.
  virtual uint64_t memory_bytes() const = 0;
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

// The libtorch TorchScript loader (CPU).
std::unique_ptr<ModelLoader> MakeTorchModelLoader();

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_EXECUTOR_H_
