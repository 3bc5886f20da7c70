#include "fairserve/config/yaml_reader.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fairserve/common/units.h"

namespace fairserve {

void ConfigErrors::Add(const YAML::Mark& at, absl::string_view field,
                       absl::string_view message) {
  std::string where = file_;
  if (!at.is_null()) absl::StrAppend(&where, ":", at.line + 1, ":", at.column + 1);
  if (field.empty()) {
    messages_.push_back(absl::StrCat(where, ": ", message));
  } else {
    messages_.push_back(absl::StrCat(where, ": ", field, ": ", message));
  }
}

void ConfigErrors::NoteField(const std::string& path) {
  // "tenants[12].rate_limit" -> "tenants[].rate_limit"
  std::string normal;
  normal.reserve(path.size());
  bool in_index = false;
  for (char c : path) {
    if (c == '[') in_index = true;
    if (in_index && c != '[' && c != ']') continue;
    if (c == ']') in_index = false;
    normal.push_back(c);
  }
  fields_.insert(std::move(normal));
}

absl::Status ConfigErrors::ToStatus() const {
  if (messages_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(messages_, "\n"));
}

MapReader::MapReader(const YAML::Node& node, std::string path, ConfigErrors* errors)
    : node_(node), path_(std::move(path)), errors_(errors), mark_(node.Mark()) {
  if (!node.IsMap()) {
    valid_ = false;
    errors_->Add(mark_, path_.empty() ? "(top level)" : path_,
                 node.IsNull() ? "is empty; expected a mapping of keys to values"
                               : "expected a mapping of keys to values");
  }
}

std::string MapReader::FieldPath(absl::string_view key) const {
  return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
}

bool MapReader::Has(absl::string_view key) const {
  return valid_ && node_[std::string(key)].IsDefined();
}

YAML::Node MapReader::Lookup(absl::string_view key, bool required) {
  known_.insert(std::string(key));
  errors_->NoteField(FieldPath(key));
  if (!valid_) return YAML::Node(YAML::NodeType::Undefined);
  YAML::Node child = node_[std::string(key)];
  if (!child.IsDefined() && required) {
    errors_->Add(mark_, FieldPath(key), "is required but missing");
  }
  return child;
}

template <typename T>
bool MapReader::GetScalar(absl::string_view key, T* out, bool required, const char* what) {
  YAML::Node child = Lookup(key, required);
  if (!child.IsDefined()) return false;
  if (!child.IsScalar()) {
    errors_->Add(child.Mark(), FieldPath(key), absl::StrCat("expected ", what));
    return false;
  }
  try {
    *out = child.as<T>();
    return true;
  } catch (const YAML::Exception&) {
    errors_->Add(child.Mark(), FieldPath(key),
                 absl::StrCat("expected ", what, ", got '", child.Scalar(), "'"));
    return false;
  }
}

bool MapReader::Get(absl::string_view key, std::string* out, bool required) {
  return GetScalar(key, out, required, "a string");
}
bool MapReader::Get(absl::string_view key, int64_t* out, bool required) {
  return GetScalar(key, out, required, "an integer");
}
bool MapReader::Get(absl::string_view key, double* out, bool required) {
  double value = 0;
  if (!GetScalar(key, &value, required, "a number")) return false;
  if (!std::isfinite(value)) {
    errors_->Add(node_[std::string(key)].Mark(), FieldPath(key),
                 absl::StrCat("must be a finite number, got '", node_[std::string(key)].Scalar(),
                              "'"));
    return false;
  }
  *out = value;
  return true;
}

namespace {

// 1000000 rather than 1e+06 in messages.
std::string FormatNumber(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrCat(v);
}

}  // namespace

void MapReader::ReportRange(absl::string_view key, const std::string& range,
                            absl::string_view note) {
  errors_->Add(node_[std::string(key)].Mark(), FieldPath(key),
               absl::StrCat("must be ", range, note.empty() ? "" : " ", note, ", got ",
                            node_[std::string(key)].Scalar()));
}

bool MapReader::GetInRange(absl::string_view key, double* out, double min, double max,
                           absl::string_view note, bool required) {
  double value = 0;
  if (!Get(key, &value, required)) return false;
  if (value < min || value > max) {
    ReportRange(key, absl::StrCat("between ", FormatNumber(min), " and ", FormatNumber(max)), note);
    return false;
  }
  *out = value;
  return true;
}

bool MapReader::GetInRange(absl::string_view key, int64_t* out, int64_t min, int64_t max,
                           absl::string_view note, bool required) {
  int64_t value = 0;
  if (!Get(key, &value, required)) return false;
  if (value < min || value > max) {
    ReportRange(key, absl::StrCat("between ", min, " and ", max), note);
    return false;
  }
  *out = value;
  return true;
}

void MapReader::ReportEnum(absl::string_view key, const std::string& value,
                           const std::vector<std::string>& allowed) {
  errors_->Add(node_[std::string(key)].Mark(), FieldPath(key),
               absl::StrCat("unknown value '", value, "'; use ", absl::StrJoin(allowed, ", ")));
}
bool MapReader::Get(absl::string_view key, bool* out, bool required) {
  return GetScalar(key, out, required, "true or false");
}

bool MapReader::Get(absl::string_view key, std::vector<std::string>* out, bool required) {
  YAML::Node child = Lookup(key, required);
  if (!child.IsDefined()) return false;
  if (!child.IsSequence()) {
    errors_->Add(child.Mark(), FieldPath(key), "expected a list of strings");
    return false;
  }
  std::vector<std::string> values;
  for (size_t i = 0; i < child.size(); ++i) {
    if (!child[i].IsScalar()) {
      errors_->Add(child[i].Mark(), absl::StrCat(FieldPath(key), "[", i, "]"),
                   "expected a string");
      return false;
    }
    values.push_back(child[i].Scalar());
  }
  *out = std::move(values);
  return true;
}

bool MapReader::Get(absl::string_view key, std::vector<int64_t>* out, bool required) {
  YAML::Node child = Lookup(key, required);
  if (!child.IsDefined()) return false;
  if (!child.IsSequence()) {
    errors_->Add(child.Mark(), FieldPath(key), "expected a list of integers");
    return false;
  }
  std::vector<int64_t> values;
  for (size_t i = 0; i < child.size(); ++i) {
    try {
      values.push_back(child[i].as<int64_t>());
    } catch (const YAML::Exception&) {
      errors_->Add(child[i].Mark(), absl::StrCat(FieldPath(key), "[", i, "]"),
                   "expected an integer");
      return false;
    }
  }
  *out = std::move(values);
  return true;
}

bool MapReader::GetBytes(absl::string_view key, uint64_t* out, bool required) {
  YAML::Node child = Lookup(key, required);
  if (!child.IsDefined()) return false;
  if (!child.IsScalar()) {
    errors_->Add(child.Mark(), FieldPath(key), "expected a byte size such as 512MiB");
    return false;
  }
  absl::StatusOr<uint64_t> bytes = ParseByteSize(child.Scalar());
  if (!bytes.ok()) {
    errors_->Add(child.Mark(), FieldPath(key), bytes.status().message());
    return false;
  }
  *out = *bytes;
  return true;
}

YAML::Node MapReader::Child(absl::string_view key, bool required) {
  return Lookup(key, required);
}

void MapReader::Finish() {
  if (!valid_) return;
  for (const auto& kv : node_) {
    std::string key = kv.first.Scalar();
    if (known_.count(key) == 0) {
      std::vector<std::string> names(known_.begin(), known_.end());
      errors_->Add(kv.first.Mark(), FieldPath(key),
                   absl::StrCat("unknown key; allowed here: ", absl::StrJoin(names, ", ")));
    }
  }
}

namespace {

absl::Status ParseError(const std::string& name, const YAML::Exception& e) {
  std::string where = name;
  if (!e.mark.is_null()) absl::StrAppend(&where, ":", e.mark.line + 1, ":", e.mark.column + 1);
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": YAML syntax error: ", e.msg));
}

// Reports every key given twice in one mapping, anywhere below `node`.
// `budget` bounds the nodes visited: aliases can make a small file expand
// into an exponential number of nodes ("billion laughs").
void CheckDuplicateKeys(const YAML::Node& node, const std::string& path, ConfigErrors* errors,
                        int64_t* budget) {
  if (--*budget == 0) {
    errors->Add(node.Mark(), path, "the document expands to too many nodes (aliases?)");
  }
  if (*budget <= 0) return;
  if (node.IsSequence()) {
    for (size_t i = 0; i < node.size(); ++i) {
      CheckDuplicateKeys(node[i], absl::StrCat(path, "[", i, "]"), errors, budget);
    }
    return;
  }
  if (!node.IsMap()) return;
  std::map<std::string, YAML::Mark> seen;
  for (const auto& kv : node) {
    std::string key = kv.first.Scalar();
    std::string field = path.empty() ? key : absl::StrCat(path, ".", key);
    auto [it, first] = seen.emplace(key, kv.first.Mark());
    if (!first) {
      errors->Add(kv.first.Mark(), field,
                  absl::StrCat("key given twice (first at line ", it->second.line + 1,
                               "); YAML keeps only one of them, so merge the two into one"));
    }
    CheckDuplicateKeys(kv.second, field, errors, budget);
  }
}

}  // namespace

absl::Status LoadYamlString(const std::string& text, const std::string& name, YAML::Node* out) {
  try {
    *out = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return ParseError(name, e);
  }
  ConfigErrors errors(name);
  int64_t budget = 1'000'000;
  CheckDuplicateKeys(*out, "", &errors, &budget);
  return errors.ToStatus();
}


absl::Status LoadYamlFile(const std::string& path, YAML::Node* out) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open file: ", std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return LoadYamlString(buffer.str(), path, out);
}

}  // namespace fairserve
