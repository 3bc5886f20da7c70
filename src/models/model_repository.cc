#include "fairserve/models/model_repository.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "fairserve/models/triton_config.h"

namespace fairserve {
namespace fs = std::filesystem;
namespace {

// A model directory's config: config.yaml (fairserve's) or config.pbtxt
// (Triton's), never both. `text` gets the file's bytes.
absl::StatusOr<ModelConfig> LoadAnyModelConfig(const fs::path& dir, const std::string& name,
                                               std::string* text) {
  std::error_code ec;
  const fs::path yaml = dir / "config.yaml";
  const fs::path pbtxt = dir / "config.pbtxt";
  const bool has_yaml = fs::exists(yaml, ec);
  const bool has_pbtxt = fs::exists(pbtxt, ec);
  if (has_yaml && has_pbtxt) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir.string(), ": has both config.yaml and config.pbtxt; keep one of them"));
  }
  const fs::path path = has_pbtxt ? pbtxt : yaml;
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        dir.string(), ": no config.yaml or config.pbtxt; add one (docs/models.md)"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  *text = buffer.str();
  return has_pbtxt ? ParseTritonConfig(*text, path.string(), name)
                   : ParseModelConfig(*text, path.string(), name);
}

// The version directories (non-negative integers) the config's version
// policy serves, ascending; those without the model file are kept with
// their problem.
std::vector<RepositoryVersion> ScanVersions(const fs::path& dir, const ModelConfig& config) {
  std::error_code ec;
  std::vector<int64_t> found;
  for (const fs::directory_entry& vdir : fs::directory_iterator(dir, ec)) {
    int64_t version = 0;
    if (vdir.is_directory() && absl::SimpleAtoi(vdir.path().filename().string(), &version) &&
        version >= 0) {
      found.push_back(version);
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<RepositoryVersion> out;
  for (int64_t version : config.version_policy.Select(found)) {
    RepositoryVersion v;
    v.version = version;
    v.file = (dir / std::to_string(version) / config.model_filename).string();
    if (!fs::exists(v.file, ec)) v.problem = absl::StrCat(v.file, ": no such file");
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<RepositoryModel>> ScanRepository(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "model repository '", root, "' is not a readable directory; set model_repository in "
        "the config or pass --model-repository DIR"));
  }
  std::vector<RepositoryModel> out;
  for (const fs::directory_entry& dir : fs::directory_iterator(root, ec)) {
    if (!dir.is_directory()) continue;
    std::string name = dir.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    RepositoryModel model;
    model.name = name;
    model.config = LoadAnyModelConfig(dir.path(), name, &model.config_text);
    if (model.config.ok()) model.versions = ScanVersions(dir.path(), *model.config);
    out.push_back(std::move(model));
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot read model repository '", root, "': ", ec.message()));
  }
  std::sort(out.begin(), out.end(),
            [](const RepositoryModel& a, const RepositoryModel& b) { return a.name < b.name; });
  return out;
}

std::set<std::string> ModelNames(const std::vector<RepositoryModel>& models) {
  std::set<std::string> names;
  for (const RepositoryModel& m : models) names.insert(m.name);
  return names;
}

absl::Status CheckConfigModels(const Config& config) {
  absl::StatusOr<std::vector<RepositoryModel>> models = ScanRepository(config.model_repository);
  if (!models.ok()) return absl::OkStatus();  // not there yet: checked at start
  return CheckTenantModels(config, ModelNames(*models));
}

absl::StatusOr<std::shared_ptr<const Config>> LoadAndCheckConfig(const std::string& path) {
  absl::StatusOr<std::shared_ptr<const Config>> config = LoadConfigFile(path);
  if (!config.ok()) return config.status();
  if (absl::Status known = CheckConfigModels(**config); !known.ok()) return known;
  return config;
}

}  // namespace fairserve
