#include "fairserve/server/rest_codec.h"

#include <chrono>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "fairserve/models/data_type.h"

namespace fairserve {
namespace {

using nlohmann::json;

template <typename T>
void AppendLittleEndian(T v, std::string* out) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // x86-64 and aarch64 are little-endian
  out->append(bytes, sizeof(T));
}

// Appends one JSON element as `dtype` to `raw`; an error names the problem.
absl::Status AppendElement(const json& e, DataType dtype, std::string* raw) {
  auto integer = [&](int64_t lo, uint64_t hi, auto tag) -> absl::Status {
    using T = decltype(tag);
    if (e.is_number_unsigned()) {
      uint64_t v = e.get<uint64_t>();
      if (v > hi) return absl::InvalidArgumentError(absl::StrCat(v, " is out of range"));
      AppendLittleEndian(static_cast<T>(v), raw);
      return absl::OkStatus();
    }
    if (e.is_number_integer()) {
      int64_t v = e.get<int64_t>();
      if (v < lo || (v > 0 && static_cast<uint64_t>(v) > hi)) {
        return absl::InvalidArgumentError(absl::StrCat(v, " is out of range"));
      }
      AppendLittleEndian(static_cast<T>(v), raw);
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat("expected an integer, got ", e.dump()));
  };
  switch (dtype) {
    case DataType::kBool:
      if (!e.is_boolean()) {
        return absl::InvalidArgumentError(absl::StrCat("expected true or false, got ", e.dump()));
      }
      raw->push_back(e.get<bool>() ? 1 : 0);
      return absl::OkStatus();
    case DataType::kInt8: return integer(INT8_MIN, INT8_MAX, int8_t{});
    case DataType::kInt16: return integer(INT16_MIN, INT16_MAX, int16_t{});
    case DataType::kInt32: return integer(INT32_MIN, INT32_MAX, int32_t{});
    case DataType::kInt64: return integer(INT64_MIN, INT64_MAX, int64_t{});
    case DataType::kUint8: return integer(0, UINT8_MAX, uint8_t{});
    case DataType::kUint16: return integer(0, UINT16_MAX, uint16_t{});
    case DataType::kUint32: return integer(0, UINT32_MAX, uint32_t{});
    case DataType::kUint64: return integer(0, UINT64_MAX, uint64_t{});
    case DataType::kFp32:
    case DataType::kFp64:
      if (!e.is_number()) {
        return absl::InvalidArgumentError(absl::StrCat("expected a number, got ", e.dump()));
      }
      if (dtype == DataType::kFp32) {
        AppendLittleEndian(e.get<float>(), raw);
      } else {
        AppendLittleEndian(e.get<double>(), raw);
      }
      return absl::OkStatus();
    case DataType::kBytes: {
      if (!e.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("expected a string, got ", e.dump()));
      }
      const std::string& s = e.get_ref<const std::string&>();
      AppendLittleEndian(static_cast<uint32_t>(s.size()), raw);
      raw->append(s);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          DataTypeName(dtype), " tensors cannot be written as JSON; send them with the binary "
          "tensor data extension (parameters.binary_data_size)"));
  }
}

// Flattens `data` (nested arrays in row-major order, or a flat array).
absl::Status AppendData(const json& data, DataType dtype, std::string* raw, int64_t* count) {
  if (data.is_array()) {
    for (const json& e : data) {
      if (absl::Status s = AppendData(e, dtype, raw, count); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  absl::Status s = AppendElement(data, dtype, raw);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("element ", *count, ": ", s.message()));
  ++*count;
  return absl::OkStatus();
}

absl::Status Bad(const std::string& where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

// parameters.<key> as a bool / a non-negative integer, when present.
bool BoolParameter(const json& object, const char* key) {
  auto p = object.find("parameters");
  if (p == object.end() || !p->is_object()) return false;
  auto v = p->find(key);
  return v != p->end() && v->is_boolean() && v->get<bool>();
}

std::optional<uint64_t> SizeParameter(const json& object, const char* key) {
  auto p = object.find("parameters");
  if (p == object.end() || !p->is_object()) return std::nullopt;
  auto v = p->find(key);
  if (v == p->end() || !v->is_number_unsigned()) return std::nullopt;
  return v->get<uint64_t>();
}

absl::Status ReadShape(const json& input, const std::string& where,
                       inference::ModelInferRequest::InferInputTensor* out) {
  auto shape = input.find("shape");
  if (shape == input.end() || !shape->is_array()) return Bad(where, "'shape' must be a list");
  for (const json& d : *shape) {
    if (!d.is_number_integer()) return Bad(where, "'shape' must hold integers");
    out->add_shape(d.get<int64_t>());
  }
  return absl::OkStatus();
}

absl::Status ReadParameters(const json& object, const std::string& where,
                            google::protobuf::Map<std::string, inference::InferParameter>* out) {
  auto p = object.find("parameters");
  if (p == object.end()) return absl::OkStatus();
  if (!p->is_object()) return Bad(where, "'parameters' must be an object");
  for (const auto& [key, v] : p->items()) {
    inference::InferParameter& param = (*out)[key];
    if (v.is_boolean()) {
      param.set_bool_param(v.get<bool>());
    } else if (v.is_number_unsigned()) {
      param.set_uint64_param(v.get<uint64_t>());
    } else if (v.is_number_integer()) {
      param.set_int64_param(v.get<int64_t>());
    } else if (v.is_string()) {
      param.set_string_param(v.get<std::string>());
    } else if (v.is_number_float()) {
      param.set_double_param(v.get<double>());
    } else {
      return Bad(where, absl::StrCat("parameter '", key, "' must be a bool, number or string"));
    }
  }
  return absl::OkStatus();
}

json OutputData(const Tensor& t) {
  json data = json::array();
  const char* p = t.bytes.data();
  auto each = [&](auto tag) {
    using T = decltype(tag);
    for (size_t off = 0; off + sizeof(T) <= t.bytes.size(); off += sizeof(T)) {
      T v;
      std::memcpy(&v, p + off, sizeof(T));
      data.push_back(v);
    }
  };
  switch (t.dtype) {
    case DataType::kBool:
      for (char c : t.bytes) data.push_back(c != 0);
      break;
    case DataType::kInt8: each(int8_t{}); break;
    case DataType::kInt16: each(int16_t{}); break;
    case DataType::kInt32: each(int32_t{}); break;
    case DataType::kInt64: each(int64_t{}); break;
    case DataType::kUint8: each(uint8_t{}); break;
    case DataType::kUint16: each(uint16_t{}); break;
    case DataType::kUint32: each(uint32_t{}); break;
    case DataType::kUint64: each(uint64_t{}); break;
    case DataType::kFp32: each(float{}); break;
    case DataType::kFp64: each(double{}); break;
    default:  // FP16, BF16, BYTES: always sent binary
      break;
  }
  return data;
}

}  // namespace

absl::StatusOr<RestInferRequest> ParseRestInferRequest(absl::string_view body,
                                                       std::optional<size_t> json_length,
                                                       const std::string& model,
                                                       const std::string& version) {
  if (json_length && *json_length > body.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Inference-Header-Content-Length is ", *json_length, " but the body has only ",
        body.size(), " bytes"));
  }
  absl::string_view header = json_length ? body.substr(0, *json_length) : body;
  absl::string_view binary = json_length ? body.substr(*json_length) : absl::string_view();
  json j;
  try {
    j = json::parse(header.begin(), header.end());
  } catch (const json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed JSON: ", e.what()));
  }
  if (!j.is_object()) return absl::InvalidArgumentError("the request must be a JSON object");
  RestInferRequest out;
  inference::ModelInferRequest& req = out.request;
  req.set_model_name(model);
  req.set_model_version(version);
  if (auto id = j.find("id"); id != j.end()) {
    if (!id->is_string()) return absl::InvalidArgumentError("'id' must be a string");
    req.set_id(id->get<std::string>());
  }
  if (absl::Status s = ReadParameters(j, "request", req.mutable_parameters()); !s.ok()) return s;
  out.all_outputs_binary = BoolParameter(j, "binary_data_output");
  auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_array()) {
    return absl::InvalidArgumentError("'inputs' must be a list of tensors");
  }
  size_t offset = 0;
  for (size_t i = 0; i < inputs->size(); ++i) {
    const json& in = (*inputs)[i];
    std::string where = absl::StrCat("inputs[", i, "]");
    if (!in.is_object()) return Bad(where, "must be an object");
    auto* tensor = req.add_inputs();
    auto name = in.find("name");
    if (name == in.end() || !name->is_string()) return Bad(where, "'name' must be a string");
    tensor->set_name(name->get<std::string>());
    where = absl::StrCat("input '", tensor->name(), "'");
    auto dtype_name = in.find("datatype");
    if (dtype_name == in.end() || !dtype_name->is_string()) {
      return Bad(where, "'datatype' must be a string such as \"FP32\"");
    }
    tensor->set_datatype(dtype_name->get<std::string>());
    if (absl::Status s = ReadShape(in, where, tensor); !s.ok()) return s;
    std::string* raw = req.add_raw_input_contents();
    if (std::optional<uint64_t> size = SizeParameter(in, "binary_data_size")) {
      if (!json_length) {
        return Bad(where, "binary_data_size needs the Inference-Header-Content-Length header");
      }
      if (*size > binary.size() - offset) {
        return Bad(where, absl::StrCat("binary_data_size ", *size, " runs past the end of the "
                                       "body (", binary.size() - offset, " bytes left)"));
      }
      raw->assign(binary.data() + offset, *size);
      offset += *size;
      continue;
    }
    auto data = in.find("data");
    if (data == in.end()) return Bad(where, "needs 'data' (or parameters.binary_data_size)");
    DataType dtype = ParseDataType(tensor->datatype());
    if (dtype == DataType::kInvalid) {
      return Bad(where, absl::StrCat("unknown datatype '", tensor->datatype(), "'"));
    }
    int64_t count = 0;
    if (absl::Status s = AppendData(*data, dtype, raw, &count); !s.ok()) {
      return Bad(where, s.message());
    }
  }
  if (offset != binary.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        binary.size() - offset, " bytes of binary data after the JSON belong to no input"));
  }
  if (auto outputs = j.find("outputs"); outputs != j.end()) {
    if (!outputs->is_array()) return absl::InvalidArgumentError("'outputs' must be a list");
    for (size_t i = 0; i < outputs->size(); ++i) {
      const json& o = (*outputs)[i];
      auto name = o.is_object() ? o.find("name") : o.end();
      if (!o.is_object() || name == o.end() || !name->is_string()) {
        return Bad(absl::StrCat("outputs[", i, "]"), "needs a 'name' string");
      }
      req.add_outputs()->set_name(name->get<std::string>());
      if (BoolParameter(o, "binary_data")) out.binary_outputs.insert(name->get<std::string>());
    }
  }
  return out;
}

HttpReply EncodeRestInferResponse(const InferenceResult& result, const std::string& model,
                                  const std::string& version, const std::string& id,
                                  const RestInferRequest& asked) {
  json j = {{"model_name", model}, {"model_version", version}};
  if (!id.empty()) j["id"] = id;
  json outputs = json::array();
  std::string binary;
  for (size_t i = 0; i < result.outputs.size(); ++i) {
    const Tensor& t = result.outputs[i];
    const std::string& name = result.output_names[i];
    json o = {{"name", name}, {"datatype", std::string(DataTypeName(t.dtype))}, {"shape", t.shape}};
    // FP16 and BF16 have no JSON form: always binary.
    bool as_binary = asked.all_outputs_binary || asked.binary_outputs.count(name) > 0 ||
                     t.dtype == DataType::kFp16 || t.dtype == DataType::kBf16 ||
                     t.dtype == DataType::kBytes;
    if (as_binary) {
      o["parameters"] = {{"binary_data_size", t.bytes.size()}};
      binary += t.bytes;
    } else {
      o["data"] = OutputData(t);
    }
    outputs.push_back(std::move(o));
  }
  j["outputs"] = std::move(outputs);
  HttpReply reply;
  reply.body = j.dump();
  if (!binary.empty()) {
    reply.headers.emplace_back("Inference-Header-Content-Length",
                               std::to_string(reply.body.size()));
    reply.content_type = "application/octet-stream";
    reply.body += binary;
  }
  return reply;
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    case absl::StatusCode::kUnimplemented: return 501;
    default: return 500;
  }
}

HttpReply JsonReply(const json& body, int status) {
  HttpReply reply;
  reply.status = status;
  reply.body = body.dump();
  return reply;
}

HttpReply RestError(const absl::Status& status, Clock::Duration retry_after) {
  HttpReply reply = JsonReply({{"error", std::string(status.message())}}, HttpStatusFor(status.code()));
  if (retry_after > Clock::Duration(0)) {
    auto seconds = std::chrono::ceil<std::chrono::seconds>(retry_after).count();
    reply.headers.emplace_back("Retry-After", std::to_string(std::max<int64_t>(1, seconds)));
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(retry_after).count();
    reply.headers.emplace_back("retry-after-ms", std::to_string(std::max<int64_t>(1, ms)));
  }
  return reply;
}

json MetadataJson(const inference::ModelMetadataResponse& m) {
  auto tensors = [](const auto& list) {
    json out = json::array();
    for (const auto& t : list) {
      out.push_back({{"name", t.name()},
                     {"datatype", t.datatype()},
                     {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())}});
    }
    return out;
  };
  return {{"name", m.name()},
          {"versions", std::vector<std::string>(m.versions().begin(), m.versions().end())},
          {"platform", m.platform()},
          {"inputs", tensors(m.inputs())},
          {"outputs", tensors(m.outputs())}};
}

}  // namespace fairserve

namespace fairserve {
namespace {

namespace pb = google::protobuf;

nlohmann::json ProtoValue(const pb::Message& m, const pb::FieldDescriptor* f, int i) {
  const pb::Reflection* r = m.GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return rep ? r->GetRepeatedInt32(m, f, i) : r->GetInt32(m, f);
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return rep ? r->GetRepeatedInt64(m, f, i) : r->GetInt64(m, f);
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return rep ? r->GetRepeatedUInt32(m, f, i) : r->GetUInt32(m, f);
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return rep ? r->GetRepeatedUInt64(m, f, i) : r->GetUInt64(m, f);
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      return rep ? r->GetRepeatedDouble(m, f, i) : r->GetDouble(m, f);
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return rep ? r->GetRepeatedFloat(m, f, i) : r->GetFloat(m, f);
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return rep ? r->GetRepeatedBool(m, f, i) : r->GetBool(m, f);
    case pb::FieldDescriptor::CPPTYPE_ENUM:
      return (rep ? r->GetRepeatedEnum(m, f, i) : r->GetEnum(m, f))->name();
    case pb::FieldDescriptor::CPPTYPE_STRING:
      return rep ? r->GetRepeatedString(m, f, i) : r->GetString(m, f);
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      return ProtoJson(rep ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f));
  }
  return nullptr;
}

}  // namespace

nlohmann::json ProtoJson(const pb::Message& message) {
  nlohmann::json out = nlohmann::json::object();
  const pb::Descriptor* d = message.GetDescriptor();
  const pb::Reflection* r = message.GetReflection();
  for (int k = 0; k < d->field_count(); ++k) {
    const pb::FieldDescriptor* f = d->field(k);
    if (f->is_map()) {
      nlohmann::json map = nlohmann::json::object();
      for (int i = 0; i < r->FieldSize(message, f); ++i) {
        const pb::Message& entry = r->GetRepeatedMessage(message, f, i);
        const pb::Descriptor* e = entry.GetDescriptor();
        map[ProtoValue(entry, e->map_key(), -1).get<std::string>()] =
            ProtoValue(entry, e->map_value(), -1);
      }
      out[f->name()] = std::move(map);
    } else if (f->is_repeated()) {
      nlohmann::json list = nlohmann::json::array();
      for (int i = 0; i < r->FieldSize(message, f); ++i) list.push_back(ProtoValue(message, f, i));
      out[f->name()] = std::move(list);
    } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE ||
               f->containing_oneof() != nullptr) {
      if (r->HasField(message, f)) out[f->name()] = ProtoValue(message, f, -1);
    } else {
      out[f->name()] = ProtoValue(message, f, -1);
    }
  }
  return out;
}

}  // namespace fairserve
