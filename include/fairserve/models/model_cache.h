#ifndef FAIRSERVE_MODELS_MODEL_CACHE_H_
#define FAIRSERVE_MODELS_MODEL_CACHE_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "fairserve/common/clock.h"
#include "fairserve/config/config.h"
#include "fairserve/config/partitions.h"
#include "fairserve/models/executor.h"
#include "fairserve/models/model_config.h"

namespace fairserve {

// One loaded version of a model. Immutable and shared: every queued or
// running request holds a shared_ptr, which is what keeps a model that has
// work from being evicted, and keeps an unloaded model's memory alive until
// its last request finishes.
struct Servable {
  ModelConfig config;
  std::string version;
  std::shared_ptr<Executor> executor;
};

// What RepositoryIndex reports for one model version.
struct ModelState {
  std::string name;
  std::string version;
  std::string state;   // READY (resident), LOADING, UNLOADED (loads on demand), UNAVAILABLE
  std::string reason;  // why it is unavailable
  std::string owner;   // tenant of a private model; empty = shared
  uint64_t bytes = 0;  // charged bytes (resident or loading)
  std::string device;  // where it is placed (resident or loading); empty otherwise
};

// Memory of one partition of one device: a tenant's quota, or the shared
// pool ("").
struct PartitionUsage {
  std::string device;
  std::string partition;
  uint64_t used = 0;
  uint64_t capacity = 0;  // 0 = unlimited
};

// The model repository on disk and a byte-budgeted LRU cache of loaded
// models: `<repository>/<model>/config.yaml` and
// `<repository>/<model>/<version>/model.pt`.
//
// - Models load on first use (or at start with `preload: true`, which also
//   pins them); concurrent requests for a model being loaded wait for that
//   one load (single flight); loads run on the cache's own thread.
// - Every configured device (cpu, cuda:N) has its own budget
//   (devices[].memory_budget), split into strict partitions: each tenant
//   with a memory_limit / memory_share_percent owns a partition on every
//   device holding its private models (config `owner`); every other model
//   lives in that device's shared pool (budget minus all tenant
//   partitions). A load only ever evicts from its own partition on its own
//   device, least recently used idle model first, so no tenant can push
//   out another tenant's models.
// - Placement: a model version goes to its config's `device`, or else to
//   the device whose partition for it has the most free bytes (ties: the
//   first listed). The loader gets the config with `device` set to the
//   placement; a rescan or an eviction forgets it, and the next load
//   places the model again.
// - A model with queued or running work, or a pinned one, is never evicted.
// - A load that cannot fit even after evicting every idle model of its
//   partition fails with RESOURCE_EXHAUSTED naming the limit and the size.
// - A model's charge is what the loaded executor measured (memory_bytes():
//   parameters and buffers on the CPU; allocator bytes plus the warm-up's
//   activation peak on a GPU); before that, the larger of its
//   memory_estimate (or file size) and what its last load measured. A load
//   whose measured charge does not fit its partition (after evicting idle
//   models) or its device's budget is dropped and fails RESOURCE_EXHAUSTED,
//   so quotas hold on measured bytes, not on estimates.
// Thread-safe.
class ModelCache {
 public:
  using Callback = std::function<void(absl::StatusOr<std::shared_ptr<const Servable>>)>;

  // Decides whether the caller may start another model load now; returns
  // RESOURCE_EXHAUSTED (with when to retry) if not. Runs under the cache's
  // lock, on the calling thread: it must be quick and must not call back
  // into the cache.
  using LoadGate = std::function<absl::Status()>;

  ModelCache(std::unique_ptr<ModelLoader> loader, Clock& clock);
  ~ModelCache();

  // Reads the repository's model configs (nothing is loaded). Bad models are
  // recorded with their reason. Fails only when the directory is unreadable.
  // Called again (a reload, RepositoryModelLoad, polling), it rescans in
  // place: new models and versions appear; removed ones go, their servables
  // living on only in requests already in flight (they drain); a model
  // whose config file changed, and a version that failed, start over
  // (unloaded, loaded on next use). A version being loaded is left alone
  // until the next rescan.
  absl::Status Scan(const std::string& root);
  // Scans the root of the last Scan again.
  absl::Status Rescan();

  // Sets the devices, their budgets and tenant partitions from `config` (at
  // start and on every reload; before the first call there is one
  // unlimited cpu device). Resident models are re-homed into the new partitions (a
  // model whose owner lost its quota moves to the shared pool), and a
  // partition over its new size evicts idle models, least recently used
  // first, until it fits. Models in use or pinned stay until they are idle.
  void SetLimits(const Config& config);

  // Loads and pins the models marked preload; returns the first failure.
  absl::Status Preload();

  // The servable for `name` at `version` (empty = the highest version that
  // is not unavailable). Resident: `done` runs before Acquire returns.
  // Otherwise the load is queued and `done` runs on the loader thread.
  // Errors: NOT_FOUND (unknown model or version), UNAVAILABLE (bad config or
  // file), RESOURCE_EXHAUSTED (does not fit).
  // `may_load`, when given, is asked before a cache miss starts a load (the
  // caller passes its tenant's model_loads_per_second budget), so a tenant
  // that thrashes its partition is held to its budget instead of keeping
  // the machine busy loading. The cache itself knows nothing of tenants'
  // budgets.
  void Acquire(const std::string& name, const std::string& version, Callback done,
               const LoadGate& may_load = nullptr);
  absl::StatusOr<std::shared_ptr<const Servable>> AcquireSync(const std::string& name,
                                                              const std::string& version);
  // Acquire's hit, synchronously: the servable when the version Acquire
  // would pick is resident and ready (touched and counted as a hit, as
  // Acquire does), else nullptr, and the caller goes through Acquire. Spares
  // the per-call callbacks on the common path.
  std::shared_ptr<const Servable> AcquireIfReady(const std::string& name,
                                                 const std::string& version);

  // The servable only if it is resident now (no load, no LRU touch).
  absl::StatusOr<std::shared_ptr<const Servable>> GetResident(const std::string& name,
                                                              const std::string& version) const;

  // Whether `name` at `version` can serve a request now, resident or
  // loaded on first use: NOT_FOUND (unknown model or version), UNAVAILABLE
  // (bad config, missing file, or its last load failed), else OK.
  absl::Status CheckServable(const std::string& name, const std::string& version) const;

  // Drops every resident version of `name` from the cache (requests in
  // flight keep theirs) and clears a failed load so the next use retries.
  absl::Status Unload(const std::string& name);

  absl::StatusOr<ModelConfig> GetConfig(const std::string& name) const;
  // The tenant that owns `name` ("" = any tenant its `models` allow), with
  // GetConfig's errors, without copying the config (it runs on every call).
  absl::StatusOr<std::string> Owner(const std::string& name) const;
  std::vector<std::string> Versions(const std::string& name) const;
  std::vector<ModelState> Index() const;
  std::vector<PartitionUsage> Partitions() const;

  struct Counters {
    int64_t loads = 0, load_failures = 0, evictions = 0, hits = 0, misses = 0;
  };
  Counters counters() const;

 private:
  enum class State { kUnloaded, kLoading, kReady, kFailed };
  struct Entry {
    std::string name;
    int64_t version = 0;
    std::string file;
    State state = State::kUnloaded;
    std::string reason;
    std::shared_ptr<const Servable> servable;
    uint64_t charge = 0;
    uint64_t measured = 0;  // what the last load measured (kept across evictions)
    size_t device = 0;      // index into devices_, while loading or resident
    std::string partition;
    Clock::TimePoint last_used{};
    bool pinned = false;
    std::vector<Callback> waiters;
  };
  struct Model {
    absl::StatusOr<ModelConfig> config = absl::UnknownError("not scanned");
    std::string config_text;  // the file's bytes, to tell a change on a rescan
    std::map<int64_t, Entry> versions;
  };

  // Drops the versions of `model` not in `keep` that are not loading; their
  // servables go to *dropped, to be freed by the caller outside the lock.
  void RemoveVersions(const std::string& name, Model& model, const std::set<int64_t>& keep,
                      std::vector<std::shared_ptr<const Servable>>* dropped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::StatusOr<Entry*> Resolve(const std::string& name, const std::string& version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string PartitionOf(size_t device, const ModelConfig& config) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t Capacity(size_t device, const std::string& partition) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t Used(size_t device, const std::string& partition) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Free bytes of `config`'s partition on `device` (UINT64_MAX: unlimited).
  uint64_t Free(size_t device, const ModelConfig& config) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The device `config` is placed on, or why it cannot be.
  absl::StatusOr<size_t> Place(const ModelConfig& config) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `bytes` fit e's partition and device budget, evicting idle
  // models of the partition (never `e`) if needed; else RESOURCE_EXHAUSTED.
  absl::Status MakeRoom(Entry& e, uint64_t bytes,
                        std::vector<std::shared_ptr<const Servable>>* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes room for `e` in its partition (evicting idle models) and marks it
  // loading, or says why it cannot fit.
  // Evicted servables are moved to *evicted for the caller to free unlocked.
  absl::Status Reserve(Entry& e, const ModelConfig& config,
                       std::vector<std::shared_ptr<const Servable>>* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts idle models of `partition` (never `keep`), least recently used
  // first, until it uses at most `limit` bytes; false when only busy or
  // pinned models are left. Evicted servables go to *evicted, to be freed
  // by the caller outside the lock. `reason` is for the log.
  bool EvictIdleUntil(size_t device, const std::string& partition, uint64_t limit,
                      const Entry* keep,
                      const std::string& reason,
                      std::vector<std::shared_ptr<const Servable>>* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LoaderLoop();

  std::unique_ptr<ModelLoader> loader_;
  Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Model> models_ ABSL_GUARDED_BY(mu_);
  struct Device {
    std::string name;
    MemoryPartitions partitions;
  };
  std::vector<Device> devices_ ABSL_GUARDED_BY(mu_) = {Device{"cpu", {}}};
  std::deque<Entry*> jobs_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool scanned_ ABSL_GUARDED_BY(mu_) = false;  // a first scan happened
  std::string root_ ABSL_GUARDED_BY(mu_);
  Counters counters_ ABSL_GUARDED_BY(mu_);
  std::thread loader_thread_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_MODELS_MODEL_CACHE_H_
