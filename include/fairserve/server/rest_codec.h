#ifndef FAIRSERVE_SERVER_REST_CODEC_H_
#define FAIRSERVE_SERVER_REST_CODEC_H_

// The Open Inference Protocol's HTTP/REST binding (KServe v2) as pure
// functions: a JSON infer request (with the binary tensor data extension)
// into the protocol's ModelInferRequest, which the one InferCall path then
// validates and runs exactly like a gRPC call; results and errors back into
// JSON. JSON is nlohmann-json's (Debian's nlohmann-json3-dev).

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fairserve/common/clock.h"
#include "fairserve/scheduling/request.h"
#include "inference/grpc_service.pb.h"
#include "nlohmann/json.hpp"

namespace fairserve {

struct RestInferRequest {
  inference::ModelInferRequest request;  // every input as raw_input_contents
  bool all_outputs_binary = false;       // parameters.binary_data_output
  std::set<std::string> binary_outputs;  // outputs[].parameters.binary_data
};

// Parses a request body. `json_length` is the Inference-Header-Content-Length
// header when present: the JSON is the first `json_length` bytes and the
// binary data of inputs with parameters.binary_data_size follows, in input
// order. INVALID_ARGUMENT names the problem: malformed JSON (with its
// position), a missing or mistyped field, an element that does not fit its
// datatype, binary sizes that do not add up. Shapes, counts and names are
// checked against the model later, by the same decoder gRPC calls use.
absl::StatusOr<RestInferRequest> ParseRestInferRequest(absl::string_view body,
                                                       std::optional<size_t> json_length,
                                                       const std::string& model,
                                                       const std::string& version);

// An HTTP answer.
struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// The infer response: outputs as JSON `data`, or as binary data after the
// JSON (with Inference-Header-Content-Length) when asked for.
HttpReply EncodeRestInferResponse(const InferenceResult& result, const std::string& model,
                                  const std::string& version, const std::string& id,
                                  const RestInferRequest& asked);

// The HTTP status for a status code: 400, 401, 403, 404, 429, 503, 504, 500.
int HttpStatusFor(absl::StatusCode code);
// {"error": "..."} with that status; 429 and 503 carry Retry-After (seconds,
// rounded up) when `retry_after` > 0.
HttpReply RestError(const absl::Status& status, Clock::Duration retry_after = Clock::Duration(0));
HttpReply JsonReply(const nlohmann::json& body, int status = 200);

// A protobuf message as the REST binding writes Triton's messages (model
// config, statistics, repository index): proto field names, every scalar
// field (defaults included), 64-bit integers as JSON numbers, enums by name,
// maps as objects, unset sub-messages left out. Protobuf's own JSON printer
// writes 64-bit integers as strings, which Triton's HTTP clients do not
// read as numbers.
nlohmann::json ProtoJson(const google::protobuf::Message& message);

// A model's metadata as the REST binding writes it (shape as numbers).
nlohmann::json MetadataJson(const inference::ModelMetadataResponse& metadata);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_REST_CODEC_H_
