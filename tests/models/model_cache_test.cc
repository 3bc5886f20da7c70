#include "fairserve/models/model_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "testing/test_dir.h"

namespace fairserve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class FakeExecutor : public Executor {
 public:
  explicit FakeExecutor(uint64_t bytes) : bytes_(bytes) {}
  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>&) override {
    return std::vector<Tensor>{};
  }
  uint64_t memory_bytes() const override { return bytes_; }

 private:
  uint64_t bytes_;
};

// "Measures" each model at its config's memory_estimate; fails files whose
// content is "broken"; can hold loads until released; counts loads.
class FakeLoader : public ModelLoader {
 public:
  absl::StatusOr<std::unique_ptr<Executor>> Load(const ModelConfig& config,
                                                 const std::string& file) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++loads_;
      cv_.wait(lock, [this] { return !hold_; });
    }
    std::ifstream in(file);
    std::string content((std::istreambuf_iterator<char>(in)), {});
    if (!in.good() && content.empty()) return absl::NotFoundError(file + ": missing");
    if (content == "broken") return absl::FailedPreconditionError(file + ": corrupt");
    std::lock_guard<std::mutex> lock(mu_);
    devices_[config.name] = config.device;
    auto measured = measured_.find(config.name);
    return std::unique_ptr<Executor>(
        new FakeExecutor(measured != measured_.end() ? measured->second : config.memory_estimate));
  }
  // Makes `model` measure `bytes` once loaded, whatever its estimate says.
  void Measure(const std::string& model, uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    measured_[model] = bytes;
  }
  // The device the last load of `model` was asked to use.
  std::string DeviceOf(const std::string& model) {
    std::lock_guard<std::mutex> lock(mu_);
    return devices_[model];
  }
  void Hold(bool hold) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = hold;
    cv_.notify_all();
  }
  int loads() {
    std::lock_guard<std::mutex> lock(mu_);
    return loads_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int loads_ = 0;
  std::map<std::string, uint64_t> measured_;
  std::map<std::string, std::string> devices_;
};

std::string ModelYaml(uint64_t mib, const std::string& owner = "", bool preload = false) {
  return "max_batch_size: 4\nmemory_estimate: " + std::to_string(mib) + "MiB\n" +
         (owner.empty() ? "" : "owner: " + owner + "\n") + (preload ? "preload: true\n" : "") +
         "inputs: [{name: X, datatype: FP32, shape: [-1, 2]}]\n"
         "outputs: [{name: Y, datatype: FP32, shape: [-1, 2]}]\n";
}

class ModelCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing_util::MakeTestDir("repo");
  }
  void TearDown() override { testing_util::RemoveTestDir(root_); }
  void AddModel(const std::string& name, const std::string& config,
                std::map<std::string, std::string> versions = {{"1", "ok"}}) {
    fs::create_directories(root_ / name);
    std::ofstream(root_ / name / "config.yaml") << config;
    for (const auto& [v, content] : versions) {
      fs::create_directories(root_ / name / v);
      std::ofstream(root_ / name / v / "model.pt") << content;
    }
  }
  // Budget in MiB; tenants: id -> quota MiB. `devices`: name -> budget MiB,
  // in place of one cpu device of `budget_mib`.
  void Start(uint64_t budget_mib, std::map<std::string, uint64_t> quotas = {},
             std::vector<std::pair<std::string, uint64_t>> devices = {}) {
    ASSERT_TRUE(cache_.Scan(root_.string()).ok());
    Config config;
    config.devices = {{"cpu", budget_mib << 20}};
    if (!devices.empty()) config.devices.clear();
    for (const auto& [name, mib] : devices) {
      DeviceConfig d;
      d.name = name;
      d.memory_budget = mib << 20;
      config.devices.push_back(d);
    }
    for (const auto& [id, mib] : quotas) {
      TenantConfig t;
      t.id = id;
      t.memory_limit = mib << 20;
      config.tenants.push_back(t);
    }
    cache_.SetLimits(config);
  }
  absl::Status Use(const std::string& name) {
    clock_.Advance(std::chrono::seconds(1));  // distinct LRU times
    return cache_.AcquireSync(name, "").status();
  }
  std::string State(const std::string& name) {
    for (const ModelState& s : cache_.Index()) {
      if (s.name == name) return s.state;
    }
    return "?";
  }

  fs::path root_;
  FakeClock clock_;
  FakeLoader* loader_ = new FakeLoader();
  ModelCache cache_{std::unique_ptr<ModelLoader>(loader_), clock_};
};

TEST_F(ModelCacheTest, LoadsOnFirstUseAndServesVersions) {
  AddModel("m", ModelYaml(1), {{"1", "ok"}, {"3", "ok"}, {"2", "ok"}});
  Start(0);
  EXPECT_EQ(State("m"), "UNLOADED");
  auto latest = cache_.AcquireSync("m", "");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ((*latest)->version, "3");
  EXPECT_EQ((*cache_.AcquireSync("m", "2"))->version, "2");
  EXPECT_EQ(cache_.AcquireSync("m", "7").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache_.AcquireSync("nope", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache_.Versions("m"), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_TRUE(cache_.GetResident("m", "3").ok());
  EXPECT_FALSE(cache_.GetResident("m", "1").ok());
  EXPECT_EQ(cache_.counters().loads, 2);
}

// The caller's load budget is asked only on a miss, on the calling thread,
// and a refusal starts no load.
TEST_F(ModelCacheTest, LoadGateIsAskedOnlyOnAMiss) {
  AddModel("m", ModelYaml(1));
  Start(0);
  int asked = 0;
  ModelCache::LoadGate refuse = [&] {
    ++asked;
    return absl::ResourceExhaustedError("no more loads; retry after 100 ms");
  };
  absl::Status refused;
  cache_.Acquire("m", "", [&](auto s) { refused = s.status(); }, refuse);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(loader_->loads(), 0);
  EXPECT_EQ(State("m"), "UNLOADED");
  ASSERT_TRUE(Use("m").ok());  // no gate: loads
  bool hit = false;
  cache_.Acquire("m", "", [&](auto s) { hit = s.ok(); }, refuse);
  EXPECT_TRUE(hit);
  EXPECT_EQ(asked, 1);  // a hit never asks
}

uint64_t UsedOf(const ModelCache& cache, const std::string& partition) {
  for (const PartitionUsage& p : cache.Partitions()) {
    if (p.partition == partition) return p.used;
  }
  return UINT64_MAX;
}

// A reload that shrinks or removes a tenant's quota used to leave its models
// charged to partitions that no longer exist, over the new budget.
TEST_F(ModelCacheTest, ReloadReHomesResidentModelsAndEvictsToFit) {
  for (const char* m : {"a1", "a2", "a3"}) AddModel(m, ModelYaml(1, "acme"));
  AddModel("s1", ModelYaml(1));
  Start(10, {{"acme", 4}});
  for (const char* m : {"a1", "a2", "a3", "s1"}) ASSERT_TRUE(Use(m).ok()) << m;
  EXPECT_EQ(UsedOf(cache_, "acme"), 3u << 20);
  auto held = cache_.GetResident("a3", "");  // in use: never evicted
  ASSERT_TRUE(held.ok());

  Config shrunk;
  shrunk.devices = {{"cpu", 10u << 20}};
  TenantConfig acme;
  acme.id = "acme";
  acme.memory_limit = 1u << 20;
  shrunk.tenants = {acme};
  cache_.SetLimits(shrunk);
  // a1 is the least recently used idle model and goes; a3 is busy; a2 would
  // be next, but with a3 busy the partition cannot fit 1 MiB: a2 goes too.
  EXPECT_EQ(State("a1"), "UNLOADED");
  EXPECT_EQ(State("a2"), "UNLOADED");
  EXPECT_EQ(State("a3"), "READY");
  EXPECT_EQ(UsedOf(cache_, "acme"), 1u << 20);

  // acme loses its quota: its models move to the shared pool, which fits.
  Config none;
  none.devices = {{"cpu", 2u << 20}};
  none.tenants = {TenantConfig{}};
  none.tenants[0].id = "acme";
  held = absl::UnavailableError("released");
  cache_.SetLimits(none);
  EXPECT_EQ(UsedOf(cache_, "acme"), UINT64_MAX);  // no such partition any more
  EXPECT_EQ(UsedOf(cache_, ""), 2u << 20);        // a3 and s1
  uint64_t total = 0;
  for (const PartitionUsage& p : cache_.Partitions()) total += p.used;
  EXPECT_LE(total, 2u << 20);
  EXPECT_EQ(cache_.counters().evictions, 2);
}

TEST_F(ModelCacheTest, BadModelsAreUnavailableAloneWithReason) {
  AddModel("good", ModelYaml(1));
  AddModel("corrupt", ModelYaml(1), {{"1", "broken"}});
  AddModel("badcfg", "inputs: 3\n");
  AddModel("empty", ModelYaml(1), {});
  Start(0);
  EXPECT_TRUE(Use("good").ok());
  absl::Status corrupt = Use("corrupt");
  EXPECT_EQ(corrupt.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(corrupt.message()), HasSubstr("corrupt"));
  EXPECT_EQ(Use("badcfg").code(), absl::StatusCode::kUnavailable);
  std::map<std::string, ModelState> index;
  for (const ModelState& s : cache_.Index()) index[s.name] = s;
  EXPECT_EQ(index["good"].state, "READY");
  EXPECT_EQ(index["corrupt"].state, "UNAVAILABLE");
  EXPECT_THAT(index["corrupt"].reason, HasSubstr("corrupt"));
  EXPECT_THAT(index["badcfg"].reason, HasSubstr("config.yaml:1:"));
  EXPECT_EQ(index["empty"].state, "UNAVAILABLE");
  // Fixing the file and unloading retries the load.
  std::ofstream(root_ / "corrupt" / "1" / "model.pt") << "ok";
  ASSERT_TRUE(cache_.Unload("corrupt").ok());
  EXPECT_TRUE(Use("corrupt").ok());
}

TEST_F(ModelCacheTest, EvictsLeastRecentlyUsedIdleModel) {
  AddModel("a", ModelYaml(40));
  AddModel("b", ModelYaml(40));
  AddModel("c", ModelYaml(40));
  Start(100);
  ASSERT_TRUE(Use("a").ok());
  ASSERT_TRUE(Use("b").ok());
  ASSERT_TRUE(Use("a").ok());  // b is now the least recently used
  ASSERT_TRUE(Use("c").ok());
  EXPECT_EQ(State("a"), "READY");
  EXPECT_EQ(State("b"), "UNLOADED");
  EXPECT_EQ(State("c"), "READY");
  EXPECT_EQ(cache_.counters().evictions, 1);
  EXPECT_EQ(cache_.Partitions()[0].used, 80ull << 20);  // accounting matches residents
}

// The synchronous hit: a resident, ready version at once, touched for LRU
// and counted as a hit; anything else (unknown, not loaded, another
// version) nullptr, with no load started.
TEST_F(ModelCacheTest, AcquireIfReadyIsAHitOrNothing) {
  AddModel("a", ModelYaml(40), {{"1", "ok"}, {"2", "ok"}});
  AddModel("b", ModelYaml(40));
  AddModel("c", ModelYaml(40));
  Start(100);
  EXPECT_EQ(cache_.AcquireIfReady("a", ""), nullptr);  // not loaded: no load either
  EXPECT_EQ(cache_.AcquireIfReady("nope", ""), nullptr);
  EXPECT_EQ(loader_->loads(), 0);
  EXPECT_EQ(State("a"), "UNLOADED");

  ASSERT_TRUE(Use("a").ok());
  ASSERT_TRUE(Use("b").ok());
  const int64_t hits = cache_.counters().hits;
  clock_.Advance(std::chrono::seconds(1));
  std::shared_ptr<const Servable> a = cache_.AcquireIfReady("a", "");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->version, "2");
  EXPECT_EQ(cache_.AcquireIfReady("a", "1"), nullptr);  // version 1 is not resident
  EXPECT_EQ(cache_.counters().hits, hits + 1);
  a.reset();
  ASSERT_TRUE(Use("c").ok());  // the touch made b the least recently used
  EXPECT_TRUE(cache_.GetResident("a", "2").ok());
  EXPECT_EQ(State("b"), "UNLOADED");
}

TEST_F(ModelCacheTest, ModelInUseOrPinnedIsNeverEvicted) {
  AddModel("a", ModelYaml(60));
  AddModel("b", ModelYaml(60));
  AddModel("p", ModelYaml(30, "", /*preload=*/true));
  Start(100);
  ASSERT_TRUE(cache_.Preload().ok());
  auto held = cache_.AcquireSync("a", "");  // a request holds it
  ASSERT_TRUE(held.ok());
  absl::Status b = Use("b");
  EXPECT_EQ(b.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(b.message()), HasSubstr("in use or pinned"));
  held = absl::CancelledError("released");
  EXPECT_TRUE(Use("b").ok());  // a is idle now and goes
  EXPECT_EQ(State("a"), "UNLOADED");
  EXPECT_EQ(State("p"), "READY");  // pinned by preload
}

TEST_F(ModelCacheTest, TooBigForBudgetOrQuotaNamesTheLimit) {
  AddModel("huge", ModelYaml(300));
  AddModel("private", ModelYaml(80, "acme"));
  Start(200, {{"acme", 50}});
  absl::Status huge = Use("huge");
  EXPECT_EQ(huge.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(huge.message()),
              HasSubstr("needs 300.0 MiB, more than the memory budget of cpu (200.0 MiB"));
  absl::Status priv = Use("private");
  EXPECT_EQ(priv.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(priv.message()), HasSubstr("tenant 'acme''s memory quota on cpu (50.0 MiB)"));
}

TEST_F(ModelCacheTest, TenantQuotasIsolateTenants) {
  AddModel("a1", ModelYaml(30, "acme"));
  AddModel("a2", ModelYaml(30, "acme"));
  AddModel("a3", ModelYaml(30, "acme"));
  AddModel("g1", ModelYaml(30, "globex"));
  AddModel("shared", ModelYaml(30));
  Start(200, {{"acme", 60}, {"globex", 60}});
  ASSERT_TRUE(Use("g1").ok());
  ASSERT_TRUE(Use("shared").ok());
  // acme cycles through more models than its quota holds: only its own go.
  for (int round = 0; round < 3; ++round) {
    for (const char* m : {"a1", "a2", "a3"}) ASSERT_TRUE(Use(m).ok()) << m;
  }
  EXPECT_EQ(State("g1"), "READY");
  EXPECT_EQ(State("shared"), "READY");
  std::map<std::string, PartitionUsage> parts;
  for (const PartitionUsage& p : cache_.Partitions()) parts[p.partition] = p;
  EXPECT_EQ(parts["acme"].used, 60ull << 20);
  EXPECT_EQ(parts["acme"].capacity, 60ull << 20);
  EXPECT_EQ(parts["globex"].used, 30ull << 20);
  EXPECT_EQ(parts[""].used, 30ull << 20);
  EXPECT_EQ(parts[""].capacity, 80ull << 20);  // budget minus both quotas
}

TEST_F(ModelCacheTest, ConcurrentRequestsShareOneLoad) {
  AddModel("slow", ModelYaml(10));
  Start(0);
  loader_->Hold(true);
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] { ok += cache_.AcquireSync("slow", "").ok(); });
  }
  while (loader_->loads() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(State("slow"), "LOADING");
  loader_->Hold(false);
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(loader_->loads(), 1);
}

uint64_t UsedOn(const ModelCache& cache, const std::string& device,
                const std::string& partition) {
  for (const PartitionUsage& p : cache.Partitions()) {
    if (p.device == device && p.partition == partition) return p.used;
  }
  return UINT64_MAX;
}

std::string DeviceIn(const ModelCache& cache, const std::string& name) {
  for (const ModelState& s : cache.Index()) {
    if (s.name == name) return s.device;
  }
  return "?";
}

// A model without a device goes where its partition has the most free
// bytes; one that names its device goes there; the loader is told.
TEST_F(ModelCacheTest, PlacesEachModelOnTheDeviceWithTheMostFreeBudget) {
  AddModel("big", ModelYaml(60));
  AddModel("next", ModelYaml(30));
  AddModel("third", ModelYaml(30));
  AddModel("pinned_to_1", ModelYaml(10) + "device: cuda:1\n");
  Start(0, {}, {{"cuda:0", 100}, {"cuda:1", 80}});
  ASSERT_TRUE(Use("big").ok());  // 100 vs 80 free: cuda:0
  EXPECT_EQ(DeviceIn(cache_, "big"), "cuda:0");
  EXPECT_EQ(loader_->DeviceOf("big"), "cuda:0");
  ASSERT_TRUE(Use("next").ok());  // 40 vs 80 free: cuda:1
  EXPECT_EQ(DeviceIn(cache_, "next"), "cuda:1");
  ASSERT_TRUE(Use("third").ok());  // 40 vs 50 free: cuda:1
  EXPECT_EQ(DeviceIn(cache_, "third"), "cuda:1");
  ASSERT_TRUE(Use("pinned_to_1").ok());
  EXPECT_EQ(loader_->DeviceOf("pinned_to_1"), "cuda:1");
  auto servable = cache_.AcquireSync("pinned_to_1", "");
  ASSERT_TRUE(servable.ok());
  EXPECT_EQ((*servable)->config.device, "cuda:1");  // the scheduler routes by it
  EXPECT_EQ(UsedOn(cache_, "cuda:0", ""), 60ull << 20);
  EXPECT_EQ(UsedOn(cache_, "cuda:1", ""), 70ull << 20);
}

TEST_F(ModelCacheTest, ModelOnADeviceTheServerLacksIsUnavailable) {
  AddModel("m", ModelYaml(1) + "device: cuda:3\n");
  Start(0, {}, {{"cpu", 0}, {"cuda:0", 100}});
  absl::Status s = Use("m");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("asks for device cuda:3"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("cpu, cuda:0"));
  EXPECT_EQ(loader_->loads(), 0);
}

// Each device evicts only among its own models.
TEST_F(ModelCacheTest, EvictionStaysOnItsDevice) {
  AddModel("a0", ModelYaml(60) + "device: cuda:0\n");
  AddModel("b0", ModelYaml(60) + "device: cuda:0\n");
  AddModel("a1", ModelYaml(60) + "device: cuda:1\n");
  Start(0, {}, {{"cuda:0", 100}, {"cuda:1", 100}});
  ASSERT_TRUE(Use("a1").ok());
  ASSERT_TRUE(Use("a0").ok());
  ASSERT_TRUE(Use("b0").ok());  // evicts a0, not the older a1
  EXPECT_EQ(State("a0"), "UNLOADED");
  EXPECT_EQ(State("a1"), "READY");
}

// Quotas hold on what a load measured, not on the estimate: a model that
// turns out bigger than its owner's quota is dropped, and the next request
// is refused from the measurement without another load.
TEST_F(ModelCacheTest, QuotaRefusesALoadOnItsMeasuredBytes) {
  AddModel("private", ModelYaml(10, "acme"));
  loader_->Measure("private", 50ull << 20);
  Start(1000, {{"acme", 40}});
  absl::Status s = Use("private");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("measured 50.0 MiB once loaded"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("tenant 'acme''s memory quota on cpu"));
  EXPECT_EQ(State("private"), "UNLOADED");
  EXPECT_EQ(UsedOf(cache_, "acme"), 0u);
  EXPECT_EQ(loader_->loads(), 1);
  s = Use("private");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("needs 50.0 MiB, more than"));
  EXPECT_EQ(loader_->loads(), 1);  // refused up front
  // A changed model is measured anew: put right, it loads.
  AddModel("private", ModelYaml(11, "acme"));
  loader_->Measure("private", 30ull << 20);
  ASSERT_TRUE(cache_.Rescan().ok());
  EXPECT_TRUE(Use("private").ok());
  EXPECT_EQ(loader_->loads(), 2);
  EXPECT_EQ(UsedOf(cache_, "acme"), 30ull << 20);
}

// A measured size over the estimate that still fits evicts idle models of
// the same partition to make room, and is what the partition is charged.
TEST_F(ModelCacheTest, MeasuredBytesOverTheEstimateEvictToFit) {
  AddModel("old", ModelYaml(30, "acme"));
  AddModel("grows", ModelYaml(10, "acme"));
  loader_->Measure("grows", 35ull << 20);
  Start(1000, {{"acme", 60}});
  ASSERT_TRUE(Use("old").ok());
  ASSERT_TRUE(Use("grows").ok());
  EXPECT_EQ(State("old"), "UNLOADED");
  EXPECT_EQ(UsedOf(cache_, "acme"), 35ull << 20);
}

TEST_F(ModelCacheTest, MissingRepositoryIsAnError) {
  auto s = cache_.Scan((root_ / "nope").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--model-repository"));
}

}  // namespace
}  // namespace fairserve
