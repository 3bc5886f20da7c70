#include "fairserve/models/model_cache.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/common/units.h"
#include "fairserve/models/model_repository.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace fs = std::filesystem;

namespace {

const char* StateName(int s) {
  static const char* kNames[] = {"UNLOADED", "LOADING", "READY", "UNAVAILABLE"};
  return kNames[s];
}

std::string PartitionName(const std::string& p) {
  return p.empty() ? "the shared pool" : absl::StrCat("tenant '", p, "''s memory quota");
}

std::string PartitionName(const std::string& device, const std::string& p) {
  return absl::StrCat(PartitionName(p), " on ", device);
}

}  // namespace

ModelCache::ModelCache(std::unique_ptr<ModelLoader> loader, Clock& clock)
    : loader_(std::move(loader)), clock_(clock) {
  loader_thread_ = std::thread([this] { LoaderLoop(); });
}

ModelCache::~ModelCache() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  loader_thread_.join();
}

absl::Status ModelCache::Scan(const std::string& root) {
  absl::StatusOr<std::vector<RepositoryModel>> repository = ScanRepository(root);
  if (!repository.ok()) return repository.status();
  // Servables dropped by the rescan, freed after the lock (requests in
  // flight keep theirs: a removed or changed model drains).
  std::vector<std::shared_ptr<const Servable>> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  const bool rescan = scanned_;
  scanned_ = true;
  root_ = root;
  auto reset = [&dropped](Entry& e, const RepositoryVersion& v) {
    if (e.servable) dropped.push_back(std::move(e.servable));
    e.file = v.file;
    e.state = v.problem.empty() ? State::kUnloaded : State::kFailed;
    e.reason = v.problem;
    e.charge = 0;
    e.measured = 0;  // a changed model is measured anew
    e.pinned = false;
  };
  std::set<std::string> seen;
  for (RepositoryModel& m : *repository) {
    seen.insert(m.name);
    if (!m.config.ok()) {
      spdlog::error("model '{}' is unavailable: {}", m.name,
                    std::string(m.config.status().message()));
    } else if (m.versions.empty()) {
      spdlog::error("model '{}' has no version to serve (expected {}/{}/<version>/{})", m.name,
                    root, m.name, m.config->model_filename);
    }
    auto [it, added] = models_.try_emplace(m.name);
    Model& model = it->second;
    if (added && rescan) spdlog::info("model '{}' added to the repository", m.name);
    const bool changed = !added && model.config_text != m.config_text;
    if (changed) spdlog::info("model '{}': its config changed; versions reload on next use", m.name);
    model.config = std::move(m.config);
    model.config_text = std::move(m.config_text);
    std::set<int64_t> present;
    for (const RepositoryVersion& v : m.versions) {
      present.insert(v.version);
      auto [e, fresh] = model.versions.try_emplace(v.version);
      if (fresh) {
        e->second.name = m.name;
        e->second.version = v.version;
        if (!added && rescan) spdlog::info("model '{}' version {} added", m.name, v.version);
        reset(e->second, v);
      } else if (e->second.state != State::kLoading &&
                 (changed || e->second.file != v.file || e->second.state == State::kFailed)) {
        // A rescan also retries what failed (a file put right, say).
        reset(e->second, v);
      }
    }
    RemoveVersions(m.name, model, present, &dropped);
  }
  for (auto it = models_.begin(); it != models_.end();) {
    if (seen.count(it->first) == 0) {
      RemoveVersions(it->first, it->second, {}, &dropped);
      if (it->second.versions.empty()) {
        spdlog::info("model '{}' removed from the repository", it->first);
        it = models_.erase(it);
        continue;
      }
    }
    ++it;
  }
  return absl::OkStatus();
}

absl::Status ModelCache::Rescan() {
  std::string root;
  {
    std::lock_guard<std::mutex> lock(mu_);
    root = root_;
  }
  return Scan(root);
}

void ModelCache::RemoveVersions(const std::string& name, Model& model,
                                const std::set<int64_t>& keep,
                                std::vector<std::shared_ptr<const Servable>>* dropped) {
  for (auto v = model.versions.begin(); v != model.versions.end();) {
    if (keep.count(v->first) > 0) {
      ++v;
    } else if (v->second.state == State::kLoading) {
      // The loader thread holds this entry; it goes at the next rescan.
      spdlog::info("model '{}' version {} left the repository while loading; it goes on the "
                   "next rescan", name, v->first);
      ++v;
    } else {
      spdlog::info("model '{}' version {} removed{}", name, v->first,
                   v->second.servable ? "; requests in flight finish on it" : "");
      if (v->second.servable) dropped->push_back(std::move(v->second.servable));
      v = model.versions.erase(v);
    }
  }
}

void ModelCache::SetLimits(const Config& config) {
  std::vector<std::shared_ptr<const Servable>> evicted;  // destroyed after the lock
  std::lock_guard<std::mutex> lock(mu_);
  // Device names only change with a restart (devices[].name); budgets and
  // quotas change live.
  std::vector<Device> devices;
  for (size_t d = 0; d < config.devices.size(); ++d) {
    devices.push_back({config.devices[d].name, MemoryPartitions(config, d)});
  }
  if (devices.empty()) devices.push_back({"cpu", {}});
  devices_ = std::move(devices);
  // Re-home resident models: a model's partition follows its owner's quota
  // (a tenant that lost its quota leaves its models in the shared pool),
  // then every partition over its new capacity sheds idle models.
  for (auto& [name, model] : models_) {
    if (!model.config.ok()) continue;
    for (auto& [v, e] : model.versions) {
      if (e.state == State::kReady || e.state == State::kLoading) {
        if (e.device >= devices_.size()) e.device = 0;
        e.partition = PartitionOf(e.device, *model.config);
      }
    }
  }
  for (size_t d = 0; d < devices_.size(); ++d) {
    std::vector<std::string> partitions = {""};
    for (const auto& [tenant, q] : devices_[d].partitions.quotas()) partitions.push_back(tenant);
    for (const std::string& p : partitions) {
      const uint64_t cap = Capacity(d, p);
      if (cap == 0) continue;
      if (!EvictIdleUntil(d, p, cap, nullptr, "the new limits", &evicted)) {
        spdlog::warn("{} holds {} over its new size {} in models that are in use or pinned; "
                     "they are evicted as they go idle and other loads wait",
                     PartitionName(devices_[d].name, p), FormatBytes(Used(d, p)),
                     FormatBytes(cap));
      }
    }
  }
}

bool ModelCache::EvictIdleUntil(size_t device, const std::string& partition, uint64_t limit,
                                const Entry* keep, const std::string& reason,
                                std::vector<std::shared_ptr<const Servable>>* evicted) {
  while (Used(device, partition) > limit) {
    // The least recently used idle model of the partition goes first.
    Entry* victim = nullptr;
    for (auto& [name, model] : models_) {
      for (auto& [v, other] : model.versions) {
        bool idle = other.state == State::kReady && !other.pinned &&
                    other.servable.use_count() == 1 && &other != keep;
        if (idle && other.device == device && other.partition == partition &&
            (!victim || other.last_used < victim->last_used)) {
          victim = &other;
        }
      }
    }
    if (!victim) return false;
    spdlog::info("evicting model '{}' version {} ({}) from {} to make room for {}", victim->name,
                 victim->version, FormatBytes(victim->charge),
                 PartitionName(devices_[device].name, victim->partition), reason);
    // Freed by the caller once the lock is released: tearing down a large
    // module takes milliseconds that other requests' lookups must not wait.
    evicted->push_back(std::move(victim->servable));
    victim->state = State::kUnloaded;
    victim->charge = 0;
    ++counters_.evictions;
  }
  return true;
}

std::string ModelCache::PartitionOf(size_t device, const ModelConfig& config) const {
  return devices_[device].partitions.PartitionOf(config.owner);
}

uint64_t ModelCache::Capacity(size_t device, const std::string& partition) const {
  return devices_[device].partitions.Capacity(partition);
}

uint64_t ModelCache::Used(size_t device, const std::string& partition) const {
  uint64_t used = 0;
  for (const auto& [name, model] : models_) {
    for (const auto& [v, e] : model.versions) {
      if ((e.state == State::kReady || e.state == State::kLoading) && e.device == device &&
          e.partition == partition) {
        used += e.charge;
      }
    }
  }
  return used;
}

uint64_t ModelCache::Free(size_t device, const ModelConfig& config) const {
  const std::string partition = PartitionOf(device, config);
  const uint64_t cap = Capacity(device, partition);
  if (cap == 0) return UINT64_MAX;
  const uint64_t used = Used(device, partition);
  return cap > used ? cap - used : 0;
}

absl::StatusOr<size_t> ModelCache::Place(const ModelConfig& config) const {
  if (!config.device.empty()) {
    for (size_t d = 0; d < devices_.size(); ++d) {
      if (devices_[d].name == config.device) return d;
    }
    std::string names;
    for (const Device& d : devices_) absl::StrAppend(&names, names.empty() ? "" : ", ", d.name);
    return absl::UnavailableError(absl::StrCat(
        "model '", config.name, "' asks for device ", config.device,
        ", which is not in the server's devices (", names,
        "); change the model's device or add it to devices"));
  }
  size_t best = 0;
  for (size_t d = 1; d < devices_.size(); ++d) {
    if (Free(d, config) > Free(best, config)) best = d;
  }
  return best;
}

absl::StatusOr<ModelCache::Entry*> ModelCache::Resolve(const std::string& name,
                                                       const std::string& version) {
  auto it = models_.find(name);
  if (it == models_.end()) return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  Model& model = it->second;
  if (!model.config.ok()) {
    return absl::UnavailableError(absl::StrCat("model '", name, "' is unavailable: its config is "
                                               "invalid (see RepositoryIndex)"));
  }
  if (version.empty()) {
    for (auto v = model.versions.rbegin(); v != model.versions.rend(); ++v) {
      if (v->second.state != State::kFailed) return &v->second;
    }
    if (model.versions.empty()) {
      return absl::UnavailableError(absl::StrCat("model '", name, "' has no version"));
    }
    return &model.versions.rbegin()->second;  // failed: its reason is reported
  }
  int64_t number = 0;
  auto v = absl::SimpleAtoi(version, &number) ? model.versions.find(number) : model.versions.end();
  if (v == model.versions.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version, "'"));
  }
  return &v->second;
}

absl::Status ModelCache::MakeRoom(Entry& e, uint64_t size,
                                  std::vector<std::shared_ptr<const Servable>>* evicted) {
  const Device& device = devices_[e.device];
  const uint64_t cap = Capacity(e.device, e.partition);
  std::string what = absl::StrCat("model '", e.name, "' version ", e.version, " needs ",
                                  FormatBytes(size));
  const uint64_t budget = device.partitions.budget();
  if (budget > 0 && size > budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, ", more than the memory budget of ", device.name, " (", FormatBytes(budget),
        ", devices[].memory_budget)"));
  }
  const std::string where = PartitionName(device.name, e.partition);
  if (cap > 0 && size > cap) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ", more than ", where, " (", FormatBytes(cap), ")"));
  }
  if (cap > 0 &&
      !EvictIdleUntil(e.device, e.partition, cap - size, &e, absl::StrCat("'", e.name, "'"),
                      evicted)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, " but ", where, " (", FormatBytes(cap), ") holds ",
        FormatBytes(Used(e.device, e.partition)),
        " of models that are in use or pinned; retry later"));
  }
  return absl::OkStatus();
}

absl::Status ModelCache::Reserve(Entry& e, const ModelConfig& config,
                                 std::vector<std::shared_ptr<const Servable>>* evicted) {
  std::error_code ec;
  uint64_t size = config.memory_estimate;
  if (size == 0) size = static_cast<uint64_t>(fs::file_size(e.file, ec));
  if (ec) size = 0;
  // A model measured before is charged what it measured: a quota it
  // overflowed then refuses it now, before another load.
  size = std::max(size, e.measured);
  absl::StatusOr<size_t> device = Place(config);
  if (!device.ok()) return device.status();
  e.device = *device;
  e.partition = PartitionOf(e.device, config);
  RETURN_IF_ERROR(MakeRoom(e, size, evicted));
  e.charge = size;
  e.state = State::kLoading;
  return absl::OkStatus();
}

void ModelCache::Acquire(const std::string& name, const std::string& version, Callback done,
                         const LoadGate& may_load) {
  absl::Status error;
  std::shared_ptr<const Servable> hit;
  std::vector<std::shared_ptr<const Servable>> evicted;  // destroyed after the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<Entry*> entry = Resolve(name, version);
    if (!entry.ok()) {
      error = entry.status();
    } else {
      Entry& e = **entry;
      switch (e.state) {
        case State::kReady:
          e.last_used = clock_.Now();
          hit = e.servable;
          ++counters_.hits;
          break;
        case State::kFailed:
          error = absl::UnavailableError(absl::StrCat("model '", name, "' version ", e.version,
                                                      " is unavailable: ", e.reason));
          break;
        case State::kLoading:
          e.waiters.push_back(std::move(done));
          return;
        case State::kUnloaded:
          ++counters_.misses;
          if (may_load) error = may_load();
          if (error.ok()) error = Reserve(e, *models_[name].config, &evicted);
          if (error.ok()) {
            e.waiters.push_back(std::move(done));
            jobs_.push_back(&e);
            cv_.notify_all();
            return;
          }
          break;
      }
    }
  }
  if (hit) {
    done(std::move(hit));
  } else {
    done(error);
  }
}

std::shared_ptr<const Servable> ModelCache::AcquireIfReady(const std::string& name,
                                                           const std::string& version) {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Entry*> entry = Resolve(name, version);
  if (!entry.ok() || (*entry)->state != State::kReady) return nullptr;
  (*entry)->last_used = clock_.Now();
  ++counters_.hits;
  return (*entry)->servable;
}

absl::StatusOr<std::shared_ptr<const Servable>> ModelCache::AcquireSync(
    const std::string& name, const std::string& version) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<std::shared_ptr<const Servable>>>>();
  auto future = promise->get_future();
  Acquire(name, version, [promise](absl::StatusOr<std::shared_ptr<const Servable>> s) {
    promise->set_value(std::move(s));
  });
  return future.get();
}

void ModelCache::LoaderLoop() {
  // Loads are background work: they run under SCHED_IDLE (only on CPU time
  // nothing else wants; nice 19 where that is refused), so a tenant that keeps
  // missing the cache slows its own loads, not everyone's inference. Measured
  // (bench/noisy_neighbor.sh --only cache): with nice 10 instead, another
  // tenant's p99 rose by about 50% while one tenant churned through its quota.
  sched_param idle{};
  if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle) != 0 &&
      setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19) != 0) {
    spdlog::debug("model loader: cannot lower its priority: {}", std::strerror(errno));
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) break;
    Entry* e = jobs_.front();
    jobs_.pop_front();
    ModelConfig config = *models_[e->name].config;
    config.device = devices_[e->device].name;  // the placement
    std::string file = e->file;
    lock.unlock();
    auto start = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<Executor>> executor = loader_->Load(config, file);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    lock.lock();
    std::vector<Callback> waiters;
    waiters.swap(e->waiters);
    absl::StatusOr<std::shared_ptr<const Servable>> result;
    std::vector<std::shared_ptr<const Servable>> evicted;  // destroyed after the lock
    std::unique_ptr<Executor> refused;                      // likewise
    absl::Status fits = absl::OkStatus();
    if (executor.ok()) {
      if (uint64_t measured = (*executor)->memory_bytes(); measured > 0) {
        e->measured = measured;
        if (measured > e->charge) {
          e->charge = 0;  // room for the measured size in place of the estimate
          fits = MakeRoom(*e, measured, &evicted);
        }
        if (fits.ok()) e->charge = measured;
      }
    }
    if (executor.ok() && !fits.ok()) {
      // Quotas hold on what was measured: the load is dropped, and the next
      // request is refused up front from e->measured (Reserve).
      refused = std::move(*executor);
      e->state = State::kUnloaded;
      e->charge = 0;
      ++counters_.load_failures;
      spdlog::warn("model '{}' version {} measured {} once loaded on {}: {}", e->name, e->version,
                   FormatBytes(e->measured), devices_[e->device].name,
                   std::string(fits.message()));
      result = absl::ResourceExhaustedError(
          absl::StrCat("model '", e->name, "' version ", e->version, " measured ",
                       FormatBytes(e->measured), " once loaded: ", fits.message()));
    } else if (executor.ok()) {
      auto servable = std::make_shared<Servable>();
      servable->config = config;
      servable->version = absl::StrCat(e->version);
      servable->executor = std::move(*executor);
      e->servable = servable;
      e->state = State::kReady;
      e->last_used = clock_.Now();
      ++counters_.loads;
      spdlog::info("model '{}' version {} loaded in {:.3f} s ({} in {})", e->name, e->version,
                   seconds, FormatBytes(e->charge),
                   PartitionName(devices_[e->device].name, e->partition));
      result = std::shared_ptr<const Servable>(servable);
    } else {
      e->state = State::kFailed;
      e->reason = std::string(executor.status().message());
      e->charge = 0;
      ++counters_.load_failures;
      spdlog::error("model '{}' version {} is unavailable: {}", e->name, e->version, e->reason);
      result = absl::UnavailableError(absl::StrCat("model '", e->name, "' version ", e->version,
                                                   " is unavailable: ", e->reason));
    }
    lock.unlock();
    evicted.clear();
    refused.reset();
    // The last waiter gets our reference itself, so once the waiters are done
    // nothing here still holds the model (which would look "in use" to
    // eviction).
    for (size_t i = 0; i + 1 < waiters.size(); ++i) waiters[i](result);
    if (!waiters.empty()) waiters.back()(std::move(result));
    waiters.clear();
    lock.lock();
  }
  // Whoever still waits is told, not left hanging.
  for (Entry* e : jobs_) {
    for (Callback& w : e->waiters) w(absl::UnavailableError("the server is shutting down"));
    e->waiters.clear();
  }
}

absl::Status ModelCache::Preload() {
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, model] : models_) {
      if (model.config.ok() && model.config->preload) names.push_back(name);
    }
  }
  for (const std::string& name : names) {
    auto s = AcquireSync(name, "");
    if (!s.ok()) return s.status();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [v, e] : models_[name].versions) {
      if (e.servable == *s) e.pinned = true;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Servable>> ModelCache::GetResident(
    const std::string& name, const std::string& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Entry*> entry = const_cast<ModelCache*>(this)->Resolve(name, version);
  if (!entry.ok()) return entry.status();
  if ((*entry)->state != State::kReady) {
    return absl::UnavailableError(absl::StrCat("model '", name, "' is not loaded"));
  }
  return (*entry)->servable;
}

absl::Status ModelCache::CheckServable(const std::string& name,
                                       const std::string& version) const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Entry*> entry = const_cast<ModelCache*>(this)->Resolve(name, version);
  if (!entry.ok()) return entry.status();
  if ((*entry)->state == State::kFailed) {
    return absl::UnavailableError(
        absl::StrCat("model '", name, "' is unavailable: ", (*entry)->reason));
  }
  return absl::OkStatus();
}

absl::Status ModelCache::Unload(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end()) return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  for (auto& [v, e] : it->second.versions) {
    if (e.state == State::kReady || e.state == State::kFailed) {
      e.servable.reset();
      e.state = State::kUnloaded;
      e.charge = 0;
      e.pinned = false;
      e.reason.clear();
    }
  }
  spdlog::info("model '{}' unloaded", name);
  return absl::OkStatus();  // (an unloaded module is freed here, rarely: an operator action)
}

absl::StatusOr<ModelConfig> ModelCache::GetConfig(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end() || !it->second.config.ok()) {
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  return *it->second.config;
}

absl::StatusOr<std::string> ModelCache::Owner(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end() || !it->second.config.ok()) {
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  return it->second.config->owner;
}

std::vector<std::string> ModelCache::Versions(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  auto it = models_.find(name);
  if (it == models_.end()) return out;
  for (const auto& v : it->second.versions) out.push_back(absl::StrCat(v.first));
  return out;
}

std::vector<ModelState> ModelCache::Index() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ModelState> out;
  for (const auto& [name, model] : models_) {
    if (!model.config.ok()) {
      out.push_back({name, "", "UNAVAILABLE", std::string(model.config.status().message()), "", 0, ""});
      continue;
    }
    if (model.versions.empty()) {
      out.push_back({name, "", "UNAVAILABLE", "no version directory with its model file", "", 0, ""});
    }
    for (const auto& [version, e] : model.versions) {
      const bool placed = e.state == State::kReady || e.state == State::kLoading;
      out.push_back({name, absl::StrCat(version), StateName(static_cast<int>(e.state)), e.reason,
                     model.config->owner, e.charge, placed ? devices_[e.device].name : ""});
    }
  }
  return out;
}

std::vector<PartitionUsage> ModelCache::Partitions() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<PartitionUsage> out;
  for (size_t d = 0; d < devices_.size(); ++d) {
    const std::string& device = devices_[d].name;
    out.push_back({device, "", Used(d, ""), Capacity(d, "")});
    for (const auto& [tenant, q] : devices_[d].partitions.quotas()) {
      out.push_back({device, tenant, Used(d, tenant), q});
    }
  }
  return out;
}

ModelCache::Counters ModelCache::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

}  // namespace fairserve
