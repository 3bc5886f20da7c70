#ifndef FAIRSERVE_CONFIG_YAML_READER_H_
#define FAIRSERVE_CONFIG_YAML_READER_H_

// Helpers that read YAML into typed structs and report every problem with the
// file, line, column and field it concerns, so an operator can fix a config in
// one pass. Used by the daemon config and by model configs.

#include <cstdint>
#include <utility>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "yaml-cpp/yaml.h"

namespace fairserve {

// Collects problems found while reading one file.
class ConfigErrors {
 public:
  explicit ConfigErrors(std::string file) : file_(std::move(file)) {}

  // Records "file:line:col: field: message". `at` gives the position; a null
  // node (a missing key) reports the position of the nearest parent instead.
  void Add(const YAML::Mark& at, absl::string_view field, absl::string_view message);

  bool empty() const { return messages_.empty(); }
  const std::vector<std::string>& messages() const { return messages_; }
  const std::string& file() const { return file_; }

  // OK when nothing was recorded, else INVALID_ARGUMENT listing every problem,
  // one per line.
  absl::Status ToStatus() const;

  // Every field path a MapReader looked up while reading this file, with
  // list indexes written as "[]" (e.g. "tenants[].rate_limit.burst"). The
  // reload table's test uses it to find settings the table does not list.
  void NoteField(const std::string& path);
  const std::set<std::string>& fields() const { return fields_; }

 private:
  std::string file_;
  std::vector<std::string> messages_;
  std::set<std::string> fields_;
};

// Reads the keys of one YAML mapping. Every key read is remembered, and
// Finish() reports the keys nobody asked for (typos in configs are errors, not
// silently ignored settings).
class MapReader {
 public:
  // `path` names the mapping for messages, e.g. "tenants[2]".
  MapReader(const YAML::Node& node, std::string path, ConfigErrors* errors);

  bool valid() const { return valid_; }
  bool Has(absl::string_view key) const;

  // Optional scalar getters: leave *out unchanged when the key is absent and
  // return whether a valid value was read. A value of the wrong type is
  // reported, and so is a number that is not finite (.inf, .nan): no setting
  // means "infinite". `required` getters report a missing key.
  bool Get(absl::string_view key, std::string* out, bool required = false);
  bool Get(absl::string_view key, int64_t* out, bool required = false);
  bool Get(absl::string_view key, double* out, bool required = false);
  bool Get(absl::string_view key, bool* out, bool required = false);
  bool Get(absl::string_view key, std::vector<std::string>* out, bool required = false);
  bool Get(absl::string_view key, std::vector<int64_t>* out, bool required = false);
  // A byte size: an integer or a string such as "512MiB".
  bool GetBytes(absl::string_view key, uint64_t* out, bool required = false);

  // A number that must lie in [min, max]. Out of range is reported as
  // "must be between min and max" plus `note` (e.g. "(0 = unlimited)"), and
  // *out keeps its default. Returns whether a valid value was read.
  bool GetInRange(absl::string_view key, double* out, double min, double max,
                  absl::string_view note = "", bool required = false);
  bool GetInRange(absl::string_view key, int64_t* out, int64_t min, int64_t max,
                  absl::string_view note = "", bool required = false);

  // One of a fixed set of names, parsed into an enum. An unknown name is
  // reported with the names allowed.
  template <typename E, size_t N>
  bool GetEnum(absl::string_view key, E* out, const std::pair<absl::string_view, E> (&names)[N],
               bool required = false) {
    std::string text;
    if (!Get(key, &text, required)) return false;
    std::vector<std::string> allowed;
    for (const auto& [name, value] : names) {
      if (name == text) {
        *out = value;
        return true;
      }
      allowed.emplace_back(name);
    }
    ReportEnum(key, text, allowed);
    return false;
  }

  // A nested node (map or sequence) for the caller to read; null when absent.
  YAML::Node Child(absl::string_view key, bool required = false);

  // Field path for messages: "<path>.<key>".
  std::string FieldPath(absl::string_view key) const;
  const YAML::Mark& mark() const { return mark_; }
  ConfigErrors* errors() const { return errors_; }

  // Reports keys that were never read.
  void Finish();

 private:
  YAML::Node Lookup(absl::string_view key, bool required);
  template <typename T>
  bool GetScalar(absl::string_view key, T* out, bool required, const char* what);
  void ReportEnum(absl::string_view key, const std::string& value,
                  const std::vector<std::string>& allowed);
  void ReportRange(absl::string_view key, const std::string& range, absl::string_view note);

  YAML::Node node_;
  std::string path_;
  ConfigErrors* errors_;
  YAML::Mark mark_;
  bool valid_ = true;
  std::set<std::string> known_;
};

// Loads a YAML file, turning parse errors into a Status that names the file
// and line. A key given twice in one mapping, at any depth, is an error too:
// YAML parsers keep the first and drop the second silently, so a second
// `api_keys:` added to revoke a leaked key would be ignored.
absl::Status LoadYamlFile(const std::string& path, YAML::Node* out);
absl::Status LoadYamlString(const std::string& text, const std::string& name, YAML::Node* out);

}  // namespace fairserve

#endif  // FAIRSERVE_CONFIG_YAML_READER_H_
