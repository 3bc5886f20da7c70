#ifndef FAIRSERVE_MODELS_TRITON_CONFIG_H_
#define FAIRSERVE_MODELS_TRITON_CONFIG_H_

// Triton's model configuration (`inference.ModelConfig`,
// proto/inference/model_config.proto) in both directions, one mapping:
// - a repository's `config.pbtxt` (protobuf text format, read with
//   protobuf's TextFormat) into fairserve's ModelConfig;
// - a ModelConfig into the message the ModelConfig RPC and REST `/config`
//   answer with.

#include <string>

#include "absl/status/statusor.h"
#include "fairserve/models/model_config.h"
#include "inference/model_config.pb.h"

namespace fairserve {

// Parses a config.pbtxt. `dir_name` is the model's directory name, which an
// explicit `name` must match. What fairserve reads:
// - `platform: "pytorch_libtorch"` or `backend: "pytorch"` (one is required);
// - `max_batch_size`; `input`/`output` with `name`, `data_type` (`TYPE_*`;
//   `TYPE_STRING` is refused: TorchScript has no string tensors) and `dims`
//   without the batch dimension when max_batch_size > 0; an input's `format`
//   is kept as metadata;
// - `dynamic_batching { max_queue_delay_microseconds }`;
// - `version_policy` (`latest { num_versions }`, `all {}`, `specific {
//   versions }`); default: the latest version;
// - `default_model_filename` (default `model.pt`);
// - `instance_group`: at most one device, `KIND_CPU` (cpu), `KIND_GPU` with
//   at most one entry in `gpus` (cuda:N), `KIND_AUTO` (placed by the server);
// - `parameters` with keys `fairserve.owner`, `fairserve.memory_estimate`
//   (a byte size such as "64MiB") and `fairserve.preload` ("true"/"false").
// Accepted and ignored, each with a warning in the log naming the file:
// `preferred_batch_size` and `preserve_ordering` (fairserve batches up to
// max_batch_size and answers each request on its own), an instance group's
// `count` and `name` (workers are per device), and `parameters` of other
// backends. Any other field is refused. Errors are INVALID_ARGUMENT and say
// "file:line:col: field: problem".
absl::StatusOr<ModelConfig> ParseTritonConfig(const std::string& text, const std::string& source,
                                              const std::string& dir_name);

// Triton's form of `config`: dims without the batch dimension when batching,
// `TYPE_*` data types, dynamic_batching when it batches, its version policy,
// and fairserve's own fields as `fairserve.*` parameters.
inference::ModelConfig ToTritonConfig(const ModelConfig& config);

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_TRITON_CONFIG_H_
