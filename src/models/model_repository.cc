#include "fairserve/models/model_repository.h"

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace fairserve {
namespace fs = std::filesystem;

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
    model.config = LoadModelConfig((dir.path() / "config.yaml").string(), name);
    if (model.config.ok()) {
      for (const fs::directory_entry& vdir : fs::directory_iterator(dir.path(), ec)) {
        int64_t version = 0;
        if (!vdir.is_directory() ||
            !absl::SimpleAtoi(vdir.path().filename().string(), &version) || version < 0) {
          continue;
        }
        RepositoryVersion v;
        v.version = version;
        v.file = (vdir.path() / "model.pt").string();
        if (!fs::exists(v.file, ec)) v.problem = absl::StrCat(v.file, ": no such file");
        model.versions.push_back(std::move(v));
      }
      std::sort(model.versions.begin(), model.versions.end(),
                [](const RepositoryVersion& a, const RepositoryVersion& b) {
                  return a.version < b.version;
                });
    }
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

}  // namespace fairserve
