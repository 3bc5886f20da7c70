#include "fairserve/models/model_manager.h"

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fairserve/common/units.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace fs = std::filesystem;

ModelManager::ModelManager(std::unique_ptr<ModelLoader> loader) : loader_(std::move(loader)) {}

absl::Status ModelManager::LoadRepository(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "model repository '", root, "' is not a readable directory; set model_repository in "
        "the config or pass --model-repository DIR"));
  }
  std::map<std::string, ModelEntry> scanned;
  for (const fs::directory_entry& dir : fs::directory_iterator(root, ec)) {
    if (!dir.is_directory()) continue;
    std::string name = dir.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    ModelEntry entry;
    entry.config = LoadModelConfig((dir.path() / "config.yaml").string(), name);
    if (!entry.config.ok()) {
      spdlog::error("model '{}' is unavailable: {}", name, std::string(entry.config.status().message()));
      scanned[name] = std::move(entry);
      continue;
    }
    for (const fs::directory_entry& vdir : fs::directory_iterator(dir.path(), ec)) {
      int64_t version = 0;
      if (!vdir.is_directory() ||
          !absl::SimpleAtoi(vdir.path().filename().string(), &version) || version < 0) {
        continue;
      }
      VersionEntry v;
      std::string file = (vdir.path() / "model.pt").string();
      auto executor = loader_->Load(*entry.config, file);
      if (executor.ok()) {
        auto servable = std::make_shared<Servable>();
        servable->config = *entry.config;
        servable->version = absl::StrCat(version);
        servable->executor = std::move(*executor);
        spdlog::info("model '{}' version {} loaded ({})", name, version,
                     FormatBytes(servable->executor->memory_bytes()));
        v.servable = std::move(servable);
      } else {
        v.reason = std::string(executor.status().message());
        spdlog::error("model '{}' version {} is unavailable: {}", name, version, v.reason);
      }
      entry.versions[version] = std::move(v);
    }
    if (entry.versions.empty()) {
      spdlog::error("model '{}' has no version directory with a model.pt (expected {}/1/model.pt)",
                    name, dir.path().string());
    }
    scanned[name] = std::move(entry);
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot read model repository '", root, "': ", ec.message()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  models_ = std::move(scanned);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Servable>> ModelManager::Get(
    const std::string& name, const std::string& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  const ModelEntry& entry = it->second;
  if (!entry.config.ok()) {
    return absl::UnavailableError(absl::StrCat("model '", name, "' is unavailable: its config is "
                                               "invalid (see RepositoryIndex)"));
  }
  if (version.empty()) {
    for (auto v = entry.versions.rbegin(); v != entry.versions.rend(); ++v) {
      if (v->second.servable) return v->second.servable;
    }
    return absl::UnavailableError(absl::StrCat("model '", name, "' has no ready version"));
  }
  int64_t number = 0;
  auto v = absl::SimpleAtoi(version, &number) ? entry.versions.find(number) : entry.versions.end();
  if (v == entry.versions.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version, "'"));
  }
  if (!v->second.servable) {
    return absl::UnavailableError(absl::StrCat("model '", name, "' version ", version,
                                               " is unavailable: ", v->second.reason));
  }
  return v->second.servable;
}

absl::StatusOr<ModelConfig> ModelManager::GetConfig(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end() || !it->second.config.ok()) {
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  return *it->second.config;
}

std::vector<std::string> ModelManager::Versions(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  auto it = models_.find(name);
  if (it == models_.end()) return out;
  for (const auto& v : it->second.versions) out.push_back(absl::StrCat(v.first));
  return out;
}

std::vector<ModelState> ModelManager::Index() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ModelState> out;
  for (const auto& [name, entry] : models_) {
    if (!entry.config.ok()) {
      out.push_back({name, "", "UNAVAILABLE", std::string(entry.config.status().message())});
      continue;
    }
    if (entry.versions.empty()) {
      out.push_back({name, "", "UNAVAILABLE", "no version directory with a model.pt"});
    }
    for (const auto& [version, v] : entry.versions) {
      out.push_back({name, absl::StrCat(version), v.servable ? "READY" : "UNAVAILABLE", v.reason});
    }
  }
  return out;
}

}  // namespace fairserve
