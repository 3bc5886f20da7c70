#ifndef FAIRSERVE_MODELS_MODEL_CONFIG_H_
#define FAIRSERVE_MODELS_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fairserve/models/data_type.h"

namespace fairserve {

struct TensorSpec {
  std::string name;
  DataType dtype = DataType::kInvalid;
  // Full shape; -1 marks a variable dimension. When the model batches
  // (max_batch_size > 0) the first dimension is the batch and must be -1.
  std::vector<int64_t> shape;
};

// Which versions of a model the repository serves (Triton's
// `version_policy`). Versions it does not select are not served at all:
// they answer NOT_FOUND and are not listed.
struct VersionPolicy {
  enum class Kind { kAll, kLatest, kSpecific };
  Kind kind = Kind::kAll;
  uint32_t num_versions = 1;      // kLatest: the highest N versions
  std::vector<int64_t> versions;  // kSpecific: exactly these

  // The versions of `available` (ascending) this policy serves, ascending.
  std::vector<int64_t> Select(const std::vector<int64_t>& available) const;
};

// `<repository>/<model>/config.yaml` or Triton's `config.pbtxt`
// (triton_config.h); both read into this one struct.
struct ModelConfig {
  std::string name;
  std::string platform = "pytorch_libtorch";
  int64_t max_batch_size = 0;  // 0: no batch dimension, one request per run
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  // Longest a request waits for others to fill a batch.
  int64_t max_queue_delay_us = 0;
  // Bytes the model is expected to take before it was ever loaded.
  uint64_t memory_estimate = 0;
  // Tenant that owns this private model; empty = shared by all tenants that list it.
  std::string owner;
  // Load at start and never evict.
  bool preload = false;
  // Device to run on ("cpu", "cuda:0"); empty = the first configured device.
  std::string device;
  // config.yaml serves every version; a config.pbtxt's default is Triton's
  // (the latest one).
  VersionPolicy version_policy;
  // The file in each version directory.
  std::string model_filename = "model.pt";
  // Which file the config came from: "config.yaml" or "config.pbtxt".
  std::string source = "config.yaml";

  bool batched() const { return max_batch_size > 0; }
  const TensorSpec* FindInput(const std::string& name) const;
  const TensorSpec* FindOutput(const std::string& name) const;
};

// Parses `path`; `dir_name` is the model's directory name, which the config's
// optional `name` must match. Errors name the file, line and field.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path, const std::string& dir_name);
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text, const std::string& source,
                                             const std::string& dir_name);

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_MODEL_CONFIG_H_
