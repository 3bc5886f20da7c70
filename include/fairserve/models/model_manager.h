#ifndef FAIRSERVE_MODELS_MODEL_MANAGER_H_
#define FAIRSERVE_MODELS_MODEL_MANAGER_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "fairserve/models/executor.h"
#include "fairserve/models/model_config.h"

namespace fairserve {

// One loaded version of a model. Immutable and shared: a batch holds a
// shared_ptr for as long as it runs, so unloading never pulls a model from
// under a running batch.
struct Servable {
  ModelConfig config;
  std::string version;
  std::shared_ptr<Executor> executor;
};

// What RepositoryIndex reports for one model version.
struct ModelState {
  std::string name;
  std::string version;
  std::string state;   // READY, UNAVAILABLE
  std::string reason;  // why it is unavailable
};

// The model repository on disk and the models loaded from it:
// `<repository>/<model>/config.yaml` and `<repository>/<model>/<version>/model.pt`
// with numeric versions. A bad model (config error, missing or corrupt file)
// is recorded with its reason and only that model is unavailable.
// Thread-safe.
class ModelManager {
 public:
  explicit ModelManager(std::unique_ptr<ModelLoader> loader);

  // Scans `root` and loads every version of every model. Fails only when the
  // repository itself cannot be read.
  absl::Status LoadRepository(const std::string& root);

  // The servable for `name` at `version` (empty = the highest version that is
  // ready). NOT_FOUND for an unknown model or version, UNAVAILABLE for one
  // that failed to load (with the reason).
  absl::StatusOr<std::shared_ptr<const Servable>> Get(const std::string& name,
                                                      const std::string& version) const;

  // The config of a model (ready or not); NOT_FOUND when the name is unknown
  // or the config itself is broken.
  absl::StatusOr<ModelConfig> GetConfig(const std::string& name) const;

  // Versions of `name` known on disk, ascending.
  std::vector<std::string> Versions(const std::string& name) const;

  std::vector<ModelState> Index() const;

 private:
  struct VersionEntry {
    std::shared_ptr<const Servable> servable;  // null when unavailable
    std::string reason;
  };
  struct ModelEntry {
    absl::StatusOr<ModelConfig> config = absl::UnknownError("not scanned");
    std::map<int64_t, VersionEntry> versions;
  };

  std::unique_ptr<ModelLoader> loader_;
  mutable std::mutex mu_;
  std::map<std::string, ModelEntry> models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_MODEL_MANAGER_H_
