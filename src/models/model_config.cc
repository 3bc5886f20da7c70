#include "fairserve/models/model_config.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/config/config.h"
#include "fairserve/config/yaml_reader.h"
#include "fairserve/models/tensor.h"

namespace fairserve {
namespace {

void ReadTensorSpecs(const YAML::Node& node, const std::string& field, bool batched,
                     std::vector<TensorSpec>* out, ConfigErrors* errors) {
  if (!node.IsSequence() || node.size() == 0) {
    errors->Add(node.Mark(), field, "expected a non-empty list of {name, datatype, shape}");
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < node.size(); ++i) {
    MapReader r(node[i], absl::StrCat(field, "[", i, "]"), errors);
    TensorSpec spec;
    std::string dtype;
    if (r.Get("name", &spec.name, true) && !names.insert(spec.name).second) {
      errors->Add(node[i]["name"].Mark(), r.FieldPath("name"),
                  absl::StrCat("'", spec.name, "' is declared twice"));
    }
    if (r.Get("datatype", &dtype, true)) {
      spec.dtype = ParseDataType(dtype);
      if (spec.dtype == DataType::kInvalid) {
        errors->Add(node[i]["datatype"].Mark(), r.FieldPath("datatype"),
                    absl::StrCat("unknown datatype '", dtype,
                                 "'; use BOOL, UINT8..UINT64, INT8..INT64, FP16, BF16, FP32, "
                                 "FP64 or BYTES"));
      } else if (spec.dtype == DataType::kBytes) {
        errors->Add(node[i]["datatype"].Mark(), r.FieldPath("datatype"),
                    "BYTES tensors are not supported by the TorchScript backend");
      }
    }
    if (r.Get("shape", &spec.shape, true)) {
      bool ok = !spec.shape.empty();
      for (int64_t d : spec.shape) ok = ok && (d == -1 || d > 0);
      if (!ok) {
        errors->Add(node[i]["shape"].Mark(), r.FieldPath("shape"),
                    "expected a non-empty list of dimensions, each > 0 or -1 (variable)");
      } else if (batched && spec.shape[0] != -1) {
        errors->Add(node[i]["shape"].Mark(), r.FieldPath("shape"),
                    absl::StrCat("the first dimension is the batch dimension when "
                                 "max_batch_size > 0 and must be -1, got ",
                                 ShapeString(spec.shape)));
      }
    }
    r.Finish();
    out->push_back(std::move(spec));
  }
}

}  // namespace

std::vector<int64_t> VersionPolicy::Select(const std::vector<int64_t>& available) const {
  switch (kind) {
    case Kind::kAll:
      return available;
    case Kind::kLatest: {
      size_t n = std::min<size_t>(num_versions, available.size());
      return std::vector<int64_t>(available.end() - n, available.end());
    }
    case Kind::kSpecific: {
      std::vector<int64_t> out;
      for (int64_t v : available) {
        if (std::find(versions.begin(), versions.end(), v) != versions.end()) out.push_back(v);
      }
      return out;
    }
  }
  return available;
}

const TensorSpec* ModelConfig::FindInput(const std::string& n) const {
  for (const TensorSpec& s : inputs) {
    if (s.name == n) return &s;
  }
  return nullptr;
}

const TensorSpec* ModelConfig::FindOutput(const std::string& n) const {
  for (const TensorSpec& s : outputs) {
    if (s.name == n) return &s;
  }
  return nullptr;
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& text, const std::string& source,
                                             const std::string& dir_name) {
  YAML::Node root;
  RETURN_IF_ERROR(LoadYamlString(text, source, &root));
  ConfigErrors errors(source);
  ModelConfig config;
  config.name = dir_name;
  MapReader r(root, "", &errors);
  std::string name;
  if (r.Get("name", &name) && name != dir_name) {
    errors.Add(root["name"].Mark(), "name",
               absl::StrCat("'", name, "' differs from the model's directory name '", dir_name,
                            "'; rename one of them"));
  }
  if (r.Get("platform", &config.platform) && config.platform != "pytorch_libtorch" &&
      config.platform != "pytorch_torchscript") {
    errors.Add(root["platform"].Mark(), "platform",
               absl::StrCat("unsupported platform '", config.platform,
                            "'; fairserve runs pytorch_libtorch (TorchScript) models"));
  }
  if (r.Get("max_batch_size", &config.max_batch_size) &&
      (config.max_batch_size < 0 || config.max_batch_size > 65536)) {
    errors.Add(root["max_batch_size"].Mark(), "max_batch_size", "must be between 0 and 65536");
  }
  if (YAML::Node n = r.Child("inputs", true); n.IsDefined()) {
    ReadTensorSpecs(n, "inputs", config.batched(), &config.inputs, &errors);
  }
  if (YAML::Node n = r.Child("outputs", true); n.IsDefined()) {
    ReadTensorSpecs(n, "outputs", config.batched(), &config.outputs, &errors);
  }
  if (r.Get("max_queue_delay_us", &config.max_queue_delay_us) &&
      (config.max_queue_delay_us < 0 || config.max_queue_delay_us > 10'000'000)) {
    errors.Add(root["max_queue_delay_us"].Mark(), "max_queue_delay_us",
               "must be between 0 and 10000000");
  }
  r.GetBytes("memory_estimate", &config.memory_estimate);
  r.Get("owner", &config.owner);
  r.Get("preload", &config.preload);
  if (r.Get("device", &config.device)) {
    if (absl::StatusOr<int> index = ParseDeviceName(config.device); !index.ok()) {
      errors.Add(root["device"].Mark(), "device",
                 absl::StrCat(index.status().message(), " (one of the server's devices)"));
    }
  }
  r.Finish();
  RETURN_IF_ERROR(errors.ToStatus());
  return config;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path, const std::string& dir_name) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open model config"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseModelConfig(buffer.str(), path, dir_name);
}

}  // namespace fairserve
