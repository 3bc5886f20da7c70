#ifndef FAIRSERVE_SERVER_TENSOR_CODEC_H_
#define FAIRSERVE_SERVER_TENSOR_CODEC_H_

// Between the Open Inference Protocol messages and fairserve's requests:
// validation of a ModelInferRequest against the model's declared signature,
// decoding of typed and raw tensor contents, and encoding of the response.

#include "absl/status/status.h"
#include "fairserve/models/model_config.h"
#include "fairserve/scheduling/request.h"
#include "inference/grpc_service.pb.h"

namespace fairserve {

// Validates `request` against `config` and fills out->inputs (views into
// `request` or into out->owned_buffers), out->output_indexes and
// out->batch_size. `max_batch_size` is the tenant's cap (0 = the model's).
// Every failure is INVALID_ARGUMENT with a message that names the input and
// the expected vs received value. `request` must outlive `out`.
absl::Status DecodeInferRequest(const inference::ModelInferRequest& request,
                                const ModelConfig& config, int64_t max_batch_size,
                                InferenceRequest* out);

// Writes `result` into `response` as raw_output_contents (moves the bytes).
void EncodeInferResponse(InferenceResult result, const std::string& model_name,
                         const std::string& model_version, const std::string& id,
                         inference::ModelInferResponse* response);

// Byte length of a raw BYTES tensor holding `count` elements, each a 4-byte
// little-endian length followed by its bytes; INVALID_ARGUMENT if `raw` does
// not hold exactly `count` well-formed elements.
absl::Status CheckBytesTensor(absl::string_view raw, int64_t count, absl::string_view input_name);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_TENSOR_CODEC_H_
