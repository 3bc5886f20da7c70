#include "fairserve/models/triton_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "fairserve/common/units.h"
#include "fairserve/config/config.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

namespace pb = google::protobuf;
using Tree = pb::TextFormat::ParseInfoTree;

constexpr int64_t kMaxBatch = 65536;
constexpr uint64_t kMaxQueueDelayUs = 10'000'000;

// TextFormat's syntax errors, as "file:line:col: message".
class Collector final : public pb::io::ErrorCollector {
 public:
  explicit Collector(const std::string& source) : source_(source) {}
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    errors.push_back(absl::StrCat(source_, ":", line + 1, ":", column + 1, ": ", message));
  }
  std::vector<std::string> errors;

 private:
  const std::string& source_;
};

// Semantic errors, each placed at the field it is about.
class Errors {
 public:
  Errors(const std::string& source, const std::string& text) : source_(source), text_(text) {}

  // For what has no place in the parse tree (a map entry): at the first
  // occurrence of `needle` in the file.
  void AddAt(absl::string_view needle, absl::string_view path, absl::string_view problem) {
    size_t pos = text_.find(std::string(needle));
    if (pos == std::string::npos) {
      messages_.push_back(absl::StrCat(source_, ": ", path, ": ", problem));
      return;
    }
    size_t line_start = text_.rfind('\n', pos);
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    int line = 1 + static_cast<int>(std::count(text_.begin(), text_.begin() + pos, '\n'));
    messages_.push_back(absl::StrCat(source_, ":", line, ":", pos - line_start + 1, ": ", path,
                                     ": ", problem));
  }

  // `tree` holds the message that has `field`; `index` is the element of a
  // repeated field, -1 otherwise. A field not in the file (a default) is
  // reported at the start of its message.
  void Add(const Tree* tree, const pb::Message& msg, const char* field, int index,
           absl::string_view path, absl::string_view problem) {
    pb::TextFormat::ParseLocation at;
    const pb::FieldDescriptor* fd = msg.GetDescriptor()->FindFieldByName(field);
    if (fd != nullptr && fd->is_repeated()) {
      // GetLocation needs an element that exists; point at the nearest one.
      const int size = msg.GetReflection()->FieldSize(msg, fd);
      index = size == 0 ? -2 : std::min(std::max(index, 0), size - 1);
    }
    if (tree != nullptr && fd != nullptr && index != -2) at = tree->GetLocation(fd, index);
    if (at.line < 0) {
      messages_.push_back(absl::StrCat(source_, ": ", path, ": ", problem));
    } else {
      messages_.push_back(
          absl::StrCat(source_, ":", at.line + 1, ":", at.column + 1, ": ", path, ": ", problem));
    }
  }
  absl::Status ToStatus() const {
    if (messages_.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrJoin(messages_, "\n"));
  }

 private:
  const std::string& source_;
  const std::string& text_;
  std::vector<std::string> messages_;
};

const Tree* Nested(const Tree* tree, const pb::Message& msg, const char* field, int index) {
  if (tree == nullptr) return nullptr;
  return tree->GetTreeForNested(msg.GetDescriptor()->FindFieldByName(field), index);
}

// TYPE_FP32 <-> FP32; Triton's TYPE_STRING is the protocol's BYTES.
DataType FromTritonType(inference::DataType t) {
  if (t == inference::TYPE_STRING) return DataType::kBytes;
  if (t == inference::TYPE_INVALID) return DataType::kInvalid;
  std::string name = inference::DataType_Name(t);
  return ParseDataType(absl::string_view(name).substr(5));  // after "TYPE_"
}

inference::DataType ToTritonType(DataType t) {
  if (t == DataType::kBytes) return inference::TYPE_STRING;
  inference::DataType out = inference::TYPE_INVALID;
  inference::DataType_Parse(absl::StrCat("TYPE_", DataTypeName(t)), &out);
  return out;
}

// One `input` or `output` entry (both have name, data_type, dims);
// `parent` is the ModelConfig and `tree` its parse tree.
template <typename T>
void ReadTensor(const T& in, const pb::Message& parent, const Tree* tree, const char* list, int i,
                bool batched, std::set<std::string>* names, std::vector<TensorSpec>* out,
                Errors* errors) {
  const Tree* t = Nested(tree, parent, list, i);
  const std::string path = absl::StrCat(list, "[", i, "]");
  TensorSpec spec;
  spec.name = in.name();
  if (spec.name.empty()) {
    errors->Add(tree, parent, list, i, path, "needs a name");
  } else if (!names->insert(spec.name).second) {
    errors->Add(t, in, "name", -1, path + ".name",
                absl::StrCat("'", spec.name, "' is declared twice"));
  }
  spec.dtype = FromTritonType(in.data_type());
  if (spec.dtype == DataType::kInvalid) {
    errors->Add(t, in, "data_type", -1, path + ".data_type",
                "needs a data_type such as TYPE_FP32");
  } else if (spec.dtype == DataType::kBytes) {
    errors->Add(t, in, "data_type", -1, path + ".data_type",
                "TYPE_STRING tensors are not supported by the TorchScript backend");
  }
  bool dims_ok = in.dims_size() > 0;
  for (int64_t d : in.dims()) dims_ok = dims_ok && (d == -1 || d > 0);
  if (!dims_ok) {
    errors->Add(t, in, "dims", 0, path + ".dims",
                "expected a non-empty list of dimensions, each > 0 or -1 (variable)");
  }
  if (batched) spec.shape.push_back(-1);
  spec.shape.insert(spec.shape.end(), in.dims().begin(), in.dims().end());
  out->push_back(std::move(spec));
}

void ReadVersionPolicy(const inference::ModelConfig& in, const Tree* tree, VersionPolicy* policy,
                       Errors* errors) {
  // Triton's default: the latest version.
  policy->kind = VersionPolicy::Kind::kLatest;
  policy->num_versions = 1;
  if (!in.has_version_policy()) return;
  const inference::ModelVersionPolicy& p = in.version_policy();
  const Tree* t = Nested(tree, in, "version_policy", -1);
  switch (p.policy_choice_case()) {
    case inference::ModelVersionPolicy::kLatest:
      policy->num_versions = p.latest().num_versions();
      if (policy->num_versions == 0) {
        errors->Add(t, p, "latest", -1, "version_policy.latest.num_versions",
                    "must be at least 1");
      }
      return;
    case inference::ModelVersionPolicy::kAll:
      policy->kind = VersionPolicy::Kind::kAll;
      return;
    case inference::ModelVersionPolicy::kSpecific:
      policy->kind = VersionPolicy::Kind::kSpecific;
      policy->versions.assign(p.specific().versions().begin(), p.specific().versions().end());
      if (policy->versions.empty()) {
        errors->Add(t, p, "specific", -1, "version_policy.specific.versions",
                    "lists no version; list at least one, or use latest or all");
      }
      return;
    case inference::ModelVersionPolicy::POLICY_CHOICE_NOT_SET:
      return;
  }
}

void ReadInstanceGroups(const inference::ModelConfig& in, const Tree* tree,
                        const std::string& source, std::string* device, Errors* errors) {
  std::set<std::string> devices;
  for (int i = 0; i < in.instance_group_size(); ++i) {
    const inference::ModelInstanceGroup& g = in.instance_group(i);
    const Tree* t = Nested(tree, in, "instance_group", i);
    const std::string path = absl::StrCat("instance_group[", i, "]");
    std::string d;
    switch (g.kind()) {
      case inference::ModelInstanceGroup::KIND_CPU:
        d = "cpu";
        break;
      case inference::ModelInstanceGroup::KIND_GPU:
        if (g.gpus_size() > 1) {
          errors->Add(t, g, "gpus", 1, path + ".gpus",
                      "fairserve places a model version on one device; list one GPU");
        }
        d = g.gpus_size() == 0 ? "cuda:0" : absl::StrCat("cuda:", g.gpus(0));
        break;
      case inference::ModelInstanceGroup::KIND_AUTO:
        break;  // placed by the server
      default:
        errors->Add(t, g, "kind", -1, path + ".kind",
                    "use KIND_CPU, KIND_GPU or KIND_AUTO; fairserve places the model itself");
    }
    if (g.kind() != inference::ModelInstanceGroup::KIND_GPU && g.gpus_size() > 0) {
      errors->Add(t, g, "gpus", 0, path + ".gpus", "only a KIND_GPU group lists gpus");
    }
    if (g.count() > 1 || !g.name().empty()) {
      spdlog::warn("{}: {}: count and name are ignored; fairserve runs the workers of its "
                   "devices (server.workers_per_device)", source, path);
    }
    devices.insert(d);
  }
  if (devices.size() > 1) {
    errors->Add(tree, in, "instance_group", 1, "instance_group",
                "names more than one device; fairserve places a model version on one device");
  }
  if (devices.size() == 1) *device = *devices.begin();
}

void ReadParameters(const inference::ModelConfig& in, const std::string& source,
                    ModelConfig* config, Errors* errors) {
  for (const auto& [key, value] : in.parameters()) {
    const std::string& v = value.string_value();
    const std::string path = absl::StrCat("parameters[\"", key, "\"]");
    if (key == "fairserve.owner") {
      config->owner = v;
    } else if (key == "fairserve.memory_estimate") {
      absl::StatusOr<uint64_t> bytes = ParseByteSize(v);
      if (!bytes.ok()) {
        errors->AddAt(absl::StrCat("\"", key, "\""), path, bytes.status().message());
      } else {
        config->memory_estimate = *bytes;
      }
    } else if (key == "fairserve.preload") {
      std::string lower = absl::AsciiStrToLower(v);
      if (lower != "true" && lower != "false") {
        errors->AddAt(absl::StrCat("\"", key, "\""), path, "must be \"true\" or \"false\"");
      }
      config->preload = lower == "true";
    } else if (absl::StartsWith(key, "fairserve.")) {
      errors->AddAt(absl::StrCat("\"", key, "\""), path,
                    "unknown fairserve parameter; use fairserve.owner, fairserve.memory_estimate "
                    "or fairserve.preload");
    } else {
      spdlog::warn("{}: {}: ignored (a parameter of another backend)", source, path);
    }
  }
}

}  // namespace

absl::StatusOr<ModelConfig> ParseTritonConfig(const std::string& text, const std::string& source,
                                              const std::string& dir_name) {
  inference::ModelConfig in;
  Tree tree;
  Collector collector(source);
  pb::TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(text, &in)) {
    std::string all = absl::StrJoin(collector.errors, "\n");
    if (absl::StrContains(all, "has no field named")) {
      absl::StrAppend(&all, "\n(fairserve reads the config.pbtxt fields listed in "
                            "docs/models.md; remove the others)");
    }
    return absl::InvalidArgumentError(all.empty() ? source + ": cannot parse" : all);
  }
  Errors errors(source, text);
  ModelConfig config;
  config.name = dir_name;
  config.source = "config.pbtxt";
  if (!in.name().empty() && in.name() != dir_name) {
    errors.Add(&tree, in, "name", -1, "name",
               absl::StrCat("'", in.name(), "' differs from the model's directory name '",
                            dir_name, "'; rename one of them"));
  }
  const bool torch_platform =
      in.platform() == "pytorch_libtorch" || in.platform() == "pytorch_torchscript";
  if (!in.platform().empty() && !torch_platform) {
    errors.Add(&tree, in, "platform", -1, "platform",
               absl::StrCat("unsupported platform '", in.platform(),
                            "'; fairserve runs pytorch_libtorch (TorchScript) models"));
  }
  if (!in.backend().empty() && in.backend() != "pytorch") {
    errors.Add(&tree, in, "backend", -1, "backend",
               absl::StrCat("unsupported backend '", in.backend(),
                            "'; fairserve runs the pytorch backend's TorchScript models"));
  }
  if (in.platform().empty() && in.backend().empty()) {
    errors.Add(&tree, in, "platform", -1, "platform",
               "set platform: \"pytorch_libtorch\" or backend: \"pytorch\"");
  }
  config.max_batch_size = in.max_batch_size();
  if (config.max_batch_size < 0 || config.max_batch_size > kMaxBatch) {
    errors.Add(&tree, in, "max_batch_size", -1, "max_batch_size",
               absl::StrCat("must be between 0 and ", kMaxBatch));
  }
  std::set<std::string> inputs, outputs;
  if (in.input_size() == 0) errors.Add(&tree, in, "input", 0, "input", "declare the inputs");
  if (in.output_size() == 0) errors.Add(&tree, in, "output", 0, "output", "declare the outputs");
  for (int i = 0; i < in.input_size(); ++i) {
    ReadTensor(in.input(i), in, &tree, "input", i, config.batched(), &inputs, &config.inputs,
               &errors);
  }
  for (int i = 0; i < in.output_size(); ++i) {
    ReadTensor(in.output(i), in, &tree, "output", i, config.batched(), &outputs,
               &config.outputs, &errors);
  }
  if (in.has_dynamic_batching()) {
    const inference::ModelDynamicBatching& b = in.dynamic_batching();
    const Tree* t = Nested(&tree, in, "dynamic_batching", -1);
    if (b.max_queue_delay_microseconds() > kMaxQueueDelayUs) {
      errors.Add(t, b, "max_queue_delay_microseconds", -1,
                 "dynamic_batching.max_queue_delay_microseconds",
                 absl::StrCat("must be at most ", kMaxQueueDelayUs));
    }
    config.max_queue_delay_us = static_cast<int64_t>(b.max_queue_delay_microseconds());
    if (b.preferred_batch_size_size() > 0 || b.preserve_ordering()) {
      spdlog::warn("{}: dynamic_batching: preferred_batch_size and preserve_ordering are "
                   "ignored; fairserve batches up to max_batch_size and answers each request "
                   "on its own", source);
    }
  }
  ReadVersionPolicy(in, &tree, &config.version_policy, &errors);
  if (!in.default_model_filename().empty()) {
    const std::string& f = in.default_model_filename();
    if (f == "." || f == ".." || absl::StrContains(f, '/')) {
      errors.Add(&tree, in, "default_model_filename", -1, "default_model_filename",
                 "must be a file name inside the version directory");
    }
    config.model_filename = f;
  }
  ReadInstanceGroups(in, &tree, source, &config.device, &errors);
  ReadParameters(in, source, &config, &errors);
  if (absl::Status s = errors.ToStatus(); !s.ok()) return s;
  return config;
}

inference::ModelConfig ToTritonConfig(const ModelConfig& config) {
  inference::ModelConfig out;
  out.set_name(config.name);
  out.set_platform("pytorch_libtorch");
  out.set_backend("pytorch");
  out.set_max_batch_size(static_cast<int32_t>(config.max_batch_size));
  auto dims = [&](const TensorSpec& s, auto* msg) {
    msg->set_name(s.name);
    msg->set_data_type(ToTritonType(s.dtype));
    for (size_t i = config.batched() ? 1 : 0; i < s.shape.size(); ++i) msg->add_dims(s.shape[i]);
  };
  for (const TensorSpec& s : config.inputs) dims(s, out.add_input());
  for (const TensorSpec& s : config.outputs) dims(s, out.add_output());
  if (config.batched()) {
    out.mutable_dynamic_batching()->set_max_queue_delay_microseconds(
        static_cast<uint64_t>(config.max_queue_delay_us));
  }
  inference::ModelVersionPolicy* policy = out.mutable_version_policy();
  switch (config.version_policy.kind) {
    case VersionPolicy::Kind::kAll:
      policy->mutable_all();
      break;
    case VersionPolicy::Kind::kLatest:
      policy->mutable_latest()->set_num_versions(config.version_policy.num_versions);
      break;
    case VersionPolicy::Kind::kSpecific:
      for (int64_t v : config.version_policy.versions) {
        policy->mutable_specific()->add_versions(v);
      }
      break;
  }
  out.set_default_model_filename(config.model_filename);
  if (!config.device.empty()) {
    inference::ModelInstanceGroup* g = out.add_instance_group();
    g->set_count(1);
    if (absl::StatusOr<int> gpu = ParseDeviceName(config.device); gpu.ok() && *gpu >= 0) {
      g->set_kind(inference::ModelInstanceGroup::KIND_GPU);
      g->add_gpus(*gpu);
    } else {
      g->set_kind(inference::ModelInstanceGroup::KIND_CPU);
    }
  }
  auto& params = *out.mutable_parameters();
  if (!config.owner.empty()) params["fairserve.owner"].set_string_value(config.owner);
  if (config.memory_estimate > 0) {
    params["fairserve.memory_estimate"].set_string_value(std::to_string(config.memory_estimate));
  }
  if (config.preload) params["fairserve.preload"].set_string_value("true");
  return out;
}

}  // namespace fairserve
