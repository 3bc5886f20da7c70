#include "fairserve/config/yaml_reader.h"

#include <cerrno>
#include <cstring>
#include <fstream>
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
  return GetScalar(key, out, required, "a number");
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

}  // namespace

absl::Status LoadYamlString(const std::string& text, const std::string& name, YAML::Node* out) {
  try {
    *out = YAML::Load(text);
    return absl::OkStatus();
  } catch (const YAML::Exception& e) {
    return ParseError(name, e);
  }
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
