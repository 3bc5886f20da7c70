#ifndef FAIRSERVE_MODELS_MODEL_REPOSITORY_H_
#define FAIRSERVE_MODELS_MODEL_REPOSITORY_H_

// The model repository on disk, read the one way the daemon and the offline
// checks (fairserve --check-config, fairctl validate) both use:
// `<root>/<model>/config.yaml` (or Triton's `config.pbtxt`) and
// `<root>/<model>/<version>/model.pt` (or the config's model file name).
// Only the versions the config's version policy selects are listed.
// Knows nothing of loading; the ModelCache keeps the state of what it read.

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fairserve/config/config.h"
#include "fairserve/models/model_config.h"

namespace fairserve {

struct RepositoryVersion {
  int64_t version = 0;
  std::string file;     // <root>/<model>/<version>/<model file>
  std::string problem;  // why it cannot be served (the file is missing); empty if none
};

struct RepositoryModel {
  std::string name;
  // Its config.yaml or config.pbtxt, parsed; an error makes the whole model unavailable.
  absl::StatusOr<ModelConfig> config = absl::UnknownError("not read");
  std::string config_text;  // the config file's bytes, to tell a changed config on a rescan
  std::vector<RepositoryVersion> versions;  // ascending
};

// Reads every model directory under `root` (hidden ones skipped), in name
// order. A model with a bad config or no version is listed with its
// problem, not dropped: it is known, and reported as unavailable. NOT_FOUND
// when `root` is not a readable directory.
absl::StatusOr<std::vector<RepositoryModel>> ScanRepository(const std::string& root);

// The model names of a scan.
std::set<std::string> ModelNames(const std::vector<RepositoryModel>& models);

// For offline checks: every tenant's `models` names a model of the
// repository, when the repository can be read; a repository that is not
// there (yet) is not an error here. The daemon applies the same rule to
// the models it scanned (CheckTenantModels).
absl::Status CheckConfigModels(const Config& config);

// What `fairctl validate FILE` and `fairserve --check-config FILE` check: the
// file parses and validates, and its tenants name known models.
absl::StatusOr<std::shared_ptr<const Config>> LoadAndCheckConfig(const std::string& path);

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_MODEL_REPOSITORY_H_
