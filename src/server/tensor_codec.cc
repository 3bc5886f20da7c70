#include "fairserve/server/tensor_codec.h"

#include <cstring>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fairserve/common/status_macros.h"

namespace fairserve {
namespace {

using inference::InferTensorContents;
using inference::ModelInferRequest;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "raw tensor contents are little-endian and are used in place");

absl::Status Invalid(absl::string_view input, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("input '", input, "': ", what));
}

std::string Describe(const TensorSpec& spec) {
  return absl::StrCat(spec.name, " (", DataTypeName(spec.dtype), " ", ShapeString(spec.shape),
                      ")");
}

std::string ExpectedInputs(const ModelConfig& config) {
  std::vector<std::string> parts;
  for (const TensorSpec& s : config.inputs) parts.push_back(Describe(s));
  return absl::StrJoin(parts, ", ");
}

// The typed-contents field a datatype travels in, and how many values each
// field holds.
enum class Field { kNone, kBool, kInt, kInt64, kUint, kUint64, kFp32, kFp64, kBytes };

Field FieldFor(DataType t) {
  switch (t) {
    case DataType::kBool: return Field::kBool;
    case DataType::kInt8: case DataType::kInt16: case DataType::kInt32: return Field::kInt;
    case DataType::kInt64: return Field::kInt64;
    case DataType::kUint8: case DataType::kUint16: case DataType::kUint32: return Field::kUint;
    case DataType::kUint64: return Field::kUint64;
    case DataType::kFp32: return Field::kFp32;
    case DataType::kFp64: return Field::kFp64;
    case DataType::kBytes: return Field::kBytes;
    default: return Field::kNone;
  }
}

const char* FieldName(Field f) {
  switch (f) {
    case Field::kBool: return "bool_contents";
    case Field::kInt: return "int_contents";
    case Field::kInt64: return "int64_contents";
    case Field::kUint: return "uint_contents";
    case Field::kUint64: return "uint64_contents";
    case Field::kFp32: return "fp32_contents";
    case Field::kFp64: return "fp64_contents";
    case Field::kBytes: return "bytes_contents";
    default: return "raw_input_contents";
  }
}

int64_t FieldCount(const InferTensorContents& c, Field f) {
  switch (f) {
    case Field::kBool: return c.bool_contents_size();
    case Field::kInt: return c.int_contents_size();
    case Field::kInt64: return c.int64_contents_size();
    case Field::kUint: return c.uint_contents_size();
    case Field::kUint64: return c.uint64_contents_size();
    case Field::kFp32: return c.fp32_contents_size();
    case Field::kFp64: return c.fp64_contents_size();
    case Field::kBytes: return c.bytes_contents_size();
    default: return 0;
  }
}

bool HasAnyContents(const InferTensorContents& c) {
  for (Field f : {Field::kBool, Field::kInt, Field::kInt64, Field::kUint, Field::kUint64,
                  Field::kFp32, Field::kFp64, Field::kBytes}) {
    if (FieldCount(c, f) > 0) return true;
  }
  return false;
}

// Narrows typed values into `Dst`, rejecting values that do not fit.
template <typename Dst, typename Src>
absl::Status Narrow(const google::protobuf::RepeatedField<Src>& src, absl::string_view input,
                    DataType dtype, std::string* out) {
  out->resize(src.size() * sizeof(Dst));
  char* p = out->data();
  for (int i = 0; i < src.size(); ++i) {
    Src v = src.Get(i);
    if (v < static_cast<Src>(std::numeric_limits<Dst>::min()) ||
        v > static_cast<Src>(std::numeric_limits<Dst>::max())) {
      return Invalid(input, absl::StrCat("value ", v, " at index ", i, " does not fit ",
                                         DataTypeName(dtype)));
    }
    Dst d = static_cast<Dst>(v);
    std::memcpy(p + i * sizeof(Dst), &d, sizeof(Dst));
  }
  return absl::OkStatus();
}

template <typename T>
void CopySame(const google::protobuf::RepeatedField<T>& src, std::string* out) {
  out->assign(reinterpret_cast<const char*>(src.data()), src.size() * sizeof(T));
}

// Turns typed contents into raw little-endian bytes in `out`.
absl::Status DecodeTyped(const InferTensorContents& c, DataType dtype, int64_t count,
                         absl::string_view input, std::string* out) {
  Field want = FieldFor(dtype);
  if (want == Field::kNone) {
    return Invalid(input, absl::StrCat(DataTypeName(dtype),
                                       " tensors can only be sent in raw_input_contents"));
  }
  for (Field f : {Field::kBool, Field::kInt, Field::kInt64, Field::kUint, Field::kUint64,
                  Field::kFp32, Field::kFp64, Field::kBytes}) {
    if (f != want && FieldCount(c, f) > 0) {
      return Invalid(input, absl::StrCat("datatype ", DataTypeName(dtype), " travels in ",
                                         FieldName(want), ", but ", FieldName(f), " was given"));
    }
  }
  int64_t got = FieldCount(c, want);
  if (got != count) {
    return Invalid(input, absl::StrCat("shape needs ", count, " values, but ", FieldName(want),
                                       " holds ", got));
  }
  switch (dtype) {
    case DataType::kBool: {
      out->resize(count);
      for (int64_t i = 0; i < count; ++i) (*out)[i] = c.bool_contents(i) ? 1 : 0;
      return absl::OkStatus();
    }
    case DataType::kInt8: return Narrow<int8_t>(c.int_contents(), input, dtype, out);
    case DataType::kInt16: return Narrow<int16_t>(c.int_contents(), input, dtype, out);
    case DataType::kInt32: CopySame(c.int_contents(), out); return absl::OkStatus();
    case DataType::kInt64: CopySame(c.int64_contents(), out); return absl::OkStatus();
    case DataType::kUint8: return Narrow<uint8_t>(c.uint_contents(), input, dtype, out);
    case DataType::kUint16: return Narrow<uint16_t>(c.uint_contents(), input, dtype, out);
    case DataType::kUint32: CopySame(c.uint_contents(), out); return absl::OkStatus();
    case DataType::kUint64: CopySame(c.uint64_contents(), out); return absl::OkStatus();
    case DataType::kFp32: CopySame(c.fp32_contents(), out); return absl::OkStatus();
    case DataType::kFp64: CopySame(c.fp64_contents(), out); return absl::OkStatus();
    case DataType::kBytes: {
      out->clear();
      for (const std::string& s : c.bytes_contents()) {
        uint32_t len = static_cast<uint32_t>(s.size());
        out->append(reinterpret_cast<const char*>(&len), 4);
        out->append(s);
      }
      return absl::OkStatus();
    }
    default:
      return Invalid(input, "unsupported datatype");
  }
}

absl::Status CheckShape(const ModelInferRequest::InferInputTensor& in, const TensorSpec& spec,
                        const ModelConfig& config, int64_t max_batch) {
  std::vector<int64_t> shape(in.shape().begin(), in.shape().end());
  if (shape.size() != spec.shape.size()) {
    return Invalid(in.name(), absl::StrCat("shape ", ShapeString(shape), " has rank ",
                                           shape.size(), ", expected rank ", spec.shape.size(),
                                           " ", ShapeString(spec.shape)));
  }
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0) {
      return Invalid(in.name(), absl::StrCat("dimension ", d, " is negative (", shape[d], ")"));
    }
    if (spec.shape[d] != -1 && shape[d] != spec.shape[d]) {
      return Invalid(in.name(), absl::StrCat("dimension ", d, " is ", shape[d], ", expected ",
                                             spec.shape[d], " (shape ", ShapeString(spec.shape),
                                             ")"));
    }
  }
  if (config.batched()) {
    if (shape[0] < 1) return Invalid(in.name(), "batch dimension must be at least 1");
    if (shape[0] > max_batch) {
      return Invalid(in.name(), absl::StrCat("batch size ", shape[0], " exceeds the maximum of ",
                                             max_batch));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckBytesTensor(absl::string_view raw, int64_t count, absl::string_view input) {
  int64_t seen = 0;
  size_t pos = 0;
  while (pos < raw.size()) {
    if (raw.size() - pos < 4) {
      return Invalid(input, absl::StrCat("BYTES element ", seen, " has a truncated length prefix"));
    }
    uint32_t len;
    std::memcpy(&len, raw.data() + pos, 4);
    pos += 4;
    if (raw.size() - pos < len) {
      return Invalid(input, absl::StrCat("BYTES element ", seen, " claims ", len,
                                         " bytes but only ", raw.size() - pos, " remain"));
    }
    pos += len;
    ++seen;
  }
  if (seen != count) {
    return Invalid(input, absl::StrCat("shape needs ", count, " BYTES elements, got ", seen));
  }
  return absl::OkStatus();
}

absl::Status DecodeInferRequest(const ModelInferRequest& request, const ModelConfig& config,
                                int64_t max_batch_size, InferenceRequest* out) {
  const int n = request.inputs_size();
  if (n == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request has no inputs; model '", config.name, "' expects ", ExpectedInputs(config)));
  }
  const bool raw = request.raw_input_contents_size() > 0;
  if (raw && request.raw_input_contents_size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "raw_input_contents has ", request.raw_input_contents_size(), " entries for ", n,
        " inputs; send one entry per input, in the order of inputs"));
  }
  int64_t max_batch = config.max_batch_size;
  if (max_batch_size > 0) max_batch = std::min(max_batch, max_batch_size);

  out->inputs.assign(config.inputs.size(), TensorView{});
  out->owned_buffers.clear();
  out->owned_buffers.reserve(n);
  std::vector<bool> seen(config.inputs.size(), false);
  int64_t batch = -1;
  std::string batch_from;
  for (int i = 0; i < n; ++i) {
    const auto& in = request.inputs(i);
    int index = -1;
    for (size_t k = 0; k < config.inputs.size(); ++k) {
      if (config.inputs[k].name == in.name()) index = static_cast<int>(k);
    }
    if (index < 0) {
      return Invalid(in.name(), absl::StrCat("model '", config.name, "' has no such input; it expects ",
                                             ExpectedInputs(config)));
    }
    if (seen[index]) return Invalid(in.name(), "given more than once");
    seen[index] = true;
    const TensorSpec& spec = config.inputs[index];
    DataType dtype = ParseDataType(in.datatype());
    if (dtype != spec.dtype) {
      return Invalid(in.name(), absl::StrCat("datatype '", in.datatype(), "' does not match the "
                                             "model's ", DataTypeName(spec.dtype)));
    }
    RETURN_IF_ERROR(CheckShape(in, spec, config, max_batch));
    TensorView& view = out->inputs[index];
    view.dtype = dtype;
    view.shape.assign(in.shape().begin(), in.shape().end());
    int64_t count = 0;
    uint64_t bytes = 0;
    if (!ElementCount(view.shape, &count) ||
        __builtin_mul_overflow(static_cast<uint64_t>(count), ElementSize(dtype), &bytes)) {
      return Invalid(in.name(), absl::StrCat("shape ", ShapeString(view.shape),
                                             " has more elements than can be addressed"));
    }
    if (config.batched()) {
      if (batch >= 0 && view.shape[0] != batch) {
        return Invalid(in.name(), absl::StrCat("batch size ", view.shape[0], " differs from ",
                                               batch, " of input '", batch_from, "'"));
      }
      batch = view.shape[0];
      batch_from = in.name();
    }
    if (raw) {
      if (in.has_contents() && HasAnyContents(in.contents())) {
        return Invalid(in.name(), "both contents and raw_input_contents were given; use one");
      }
      const std::string& data = request.raw_input_contents(i);
      if (dtype == DataType::kBytes) {
        RETURN_IF_ERROR(CheckBytesTensor(data, count, in.name()));
      } else if (data.size() != bytes) {
        return Invalid(in.name(), absl::StrCat("raw_input_contents holds ", data.size(),
                                               " bytes, expected ", bytes, " (", count, " x ",
                                               DataTypeName(dtype), " for shape ",
                                               ShapeString(view.shape), ")"));
      }
      view.bytes = data;
    } else {
      out->owned_buffers.emplace_back();
      std::string& buffer = out->owned_buffers.back();
      RETURN_IF_ERROR(DecodeTyped(in.contents(), dtype, count, in.name(), &buffer));
      view.bytes = buffer;
    }
  }
  std::vector<std::string> missing;
  for (size_t k = 0; k < config.inputs.size(); ++k) {
    if (!seen[k]) missing.push_back(Describe(config.inputs[k]));
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing input(s): ", absl::StrJoin(missing, ", ")));
  }
  out->batch_size = config.batched() ? batch : 1;

  out->output_indexes.clear();
  if (request.outputs_size() == 0) {
    for (size_t k = 0; k < config.outputs.size(); ++k) out->output_indexes.push_back(k);
    return absl::OkStatus();
  }
  std::set<std::string> asked;
  for (const auto& o : request.outputs()) {
    int index = -1;
    for (size_t k = 0; k < config.outputs.size(); ++k) {
      if (config.outputs[k].name == o.name()) index = static_cast<int>(k);
    }
    if (index < 0) {
      std::vector<std::string> names;
      for (const TensorSpec& s : config.outputs) names.push_back(s.name);
      return absl::InvalidArgumentError(absl::StrCat("requested output '", o.name(),
                                                     "' does not exist; model '", config.name,
                                                     "' has ", absl::StrJoin(names, ", ")));
    }
    if (!asked.insert(o.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("requested output '", o.name(), "' is listed more than once"));
    }
    out->output_indexes.push_back(index);
  }
  return absl::OkStatus();
}

void EncodeInferResponse(InferenceResult result, const std::string& model_name,
                         const std::string& model_version, const std::string& id,
                         inference::ModelInferResponse* response) {
  response->set_model_name(model_name);
  response->set_model_version(model_version);
  response->set_id(id);
  for (size_t i = 0; i < result.outputs.size(); ++i) {
    Tensor& t = result.outputs[i];
    auto* out = response->add_outputs();
    out->set_name(result.output_names[i]);
    out->set_datatype(std::string(DataTypeName(t.dtype)));
    for (int64_t d : t.shape) out->add_shape(d);
    *response->add_raw_output_contents() = std::move(t.bytes);
  }
}

}  // namespace fairserve
