// Fuzzes what every tenant controls: a serialized ModelInferRequest, decoded
// and validated against a model's signature. The first byte picks the model
// signature and the tenant's batch cap; the rest is the protobuf message.
// Any outcome other than OK or INVALID_ARGUMENT, or an OK request whose
// tensors do not match what was validated, aborts.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fairserve/server/tensor_codec.h"

namespace {

using fairserve::DataType;
using fairserve::ModelConfig;

std::vector<ModelConfig> Signatures() {
  ModelConfig fp32;
  fp32.name = "add_one";
  fp32.max_batch_size = 64;
  fp32.inputs = {{"INPUT0", DataType::kFp32, {-1, 16}}};
  fp32.outputs = {{"OUTPUT0", DataType::kFp32, {-1, 16}}};
  ModelConfig two;
  two.name = "two";
  two.max_batch_size = 8;
  two.inputs = {{"A", DataType::kInt64, {-1, -1}}, {"B", DataType::kUint8, {-1, 2}}};
  two.outputs = {{"Y", DataType::kFp32, {-1, 4}}, {"Z", DataType::kInt64, {-1, 1}}};
  ModelConfig bytes;
  bytes.name = "strings";
  bytes.max_batch_size = 0;  // no batching: shapes are taken as they are
  bytes.inputs = {{"TEXT", DataType::kBytes, {2}}, {"H", DataType::kFp16, {3}}};
  bytes.outputs = {{"OUT", DataType::kBytes, {2}}};
  return {fp32, two, bytes};
}

// Where every decoded byte is read into, so the reads cannot be optimised away.
volatile uint8_t g_sink = 0;

void Fail(const char* what) {
  std::fprintf(stderr, "invariant broken: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<ModelConfig> signatures = Signatures();
  if (size < 1) return 0;
  const ModelConfig& config = signatures[data[0] % signatures.size()];
  int64_t cap = (data[0] / signatures.size()) % 4 * 4;  // 0 (none), 4, 8, 12
  inference::ModelInferRequest request;
  if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  fairserve::InferenceRequest out;
  absl::Status s = fairserve::DecodeInferRequest(request, config, cap, &out);
  if (!s.ok()) {
    if (s.code() != absl::StatusCode::kInvalidArgument) Fail("error other than INVALID_ARGUMENT");
    if (s.message().empty()) Fail("error without a message");
    return 0;
  }
  if (out.inputs.size() != config.inputs.size()) Fail("input count");
  if (out.batch_size < 1) Fail("batch size < 1");
  if (config.max_batch_size > 0 && out.batch_size > config.max_batch_size) Fail("batch over limit");
  if (cap > 0 && out.batch_size > cap) Fail("batch over the tenant's cap");
  for (size_t i = 0; i < out.inputs.size(); ++i) {
    const fairserve::TensorView& t = out.inputs[i];
    if (t.dtype != config.inputs[i].dtype) Fail("dtype");
    int64_t count = 0;
    if (!fairserve::ElementCount(t.shape, &count)) Fail("shape");
    if (t.dtype == DataType::kBytes) {
      if (!fairserve::CheckBytesTensor(t.bytes, count, config.inputs[i].name).ok()) Fail("bytes");
    } else if (static_cast<int64_t>(t.bytes.size()) !=
               count * static_cast<int64_t>(fairserve::ElementSize(t.dtype))) {
      Fail("byte length does not match the shape");
    }
    // Touch every byte: a view past its buffer shows up under ASan.
    uint8_t acc = 0;
    for (char c : t.bytes) acc ^= static_cast<uint8_t>(c);
    g_sink = acc;
  }
  for (int index : out.output_indexes) {
    if (index < 0 || index >= static_cast<int>(config.outputs.size())) Fail("output index");
  }
  return 0;
}
