// Micro-benchmarks of fairserve's hot paths (Google Benchmark):
//   build/bin/hot_paths_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "fairserve/models/executor.h"
#include "fairserve/models/model_cache.h"

#include "fairserve/admission/admission.h"
#include "fairserve/admission/token_bucket.h"
#include "fairserve/metering/ledger.h"
#include "fairserve/metering/metrics.h"
#include "fairserve/metering/server_metrics.h"
#include "fairserve/scheduling/batch_runner.h"
#include "fairserve/scheduling/queue_policy.h"
#include "fairserve/scheduling/scheduler.h"
#include "fairserve/server/collectors.h"
#include "fairserve/server/runtime.h"
#include "fairserve/server/tensor_codec.h"
#include "fairserve/tenancy/api_key.h"
#include "fairserve/tenancy/authenticator.h"
#include "fairserve/tenancy/auth_throttle.h"
#include "fairserve/tenancy/tenant_registry.h"

namespace fairserve {
namespace {

void BM_CounterIncrement(benchmark::State& state) {
  static Counter counter;
  for (auto _ : state) counter.Increment(0.5);
}
BENCHMARK(BM_CounterIncrement)->Threads(1)->Threads(2);

void BM_HistogramObserve(benchmark::State& state) {
  static Histogram h(ExponentialBounds(0.0001, 2, 20));
  double v = 0.0003;
  for (auto _ : state) h.Observe(v += 1e-7);
}
BENCHMARK(BM_HistogramObserve)->Threads(1)->Threads(2);

void BM_FamilyLookup(benchmark::State& state) {
  static Registry registry;
  static Family<Counter>& f = registry.AddCounter("x_total", "x");
  for (auto _ : state) f.Add({{"tenant_id", "acme"}, {"model_name", "mlp"}}).Increment();
}
BENCHMARK(BM_FamilyLookup)->Threads(1)->Threads(2);

BatchRecord MakeBatch(int requests) {
  BatchRecord r;
  r.model_name = "mlp";
  for (int i = 0; i < requests; ++i) {
    BatchItem item;
    item.tenant_id = i % 2 ? "acme" : "globex";
    item.samples = 1;
    item.compute_seconds = 0.001;
    r.items.push_back(item);
  }
  r.samples = requests;
  r.compute_seconds = 0.001 * requests;
  return r;
}

// Per-batch metrics update (what every completed batch costs in metering).
void BM_ServerMetricsOnBatch(benchmark::State& state) {
  Registry registry;
  ServerMetrics metrics(registry);
  BatchRecord batch = MakeBatch(static_cast<int>(state.range(0)));
  for (auto _ : state) metrics.OnBatch(batch);
}
BENCHMARK(BM_ServerMetricsOnBatch)->Arg(1)->Arg(32);

std::string TempLedger() {
  auto path = std::filesystem::temp_directory_path() / "fairserve-bench-ledger.sqlite";
  std::filesystem::remove(path);
  std::filesystem::remove(path.string() + "-wal");
  return path.string();
}

// Adding a batch to the pending window (on the worker thread).
void BM_LedgerOnBatch(benchmark::State& state) {
  LedgerWriter::Options o;
  o.path = TempLedger();
  auto ledger = *LedgerWriter::Open(o);
  BatchRecord batch = MakeBatch(static_cast<int>(state.range(0)));
  for (auto _ : state) ledger->OnBatch(batch);
}
BENCHMARK(BM_LedgerOnBatch)->Arg(1)->Arg(32);

// One group commit holding one window's rows (off the request path).
void BM_LedgerCommit(benchmark::State& state) {
  LedgerWriter::Options o;
  o.path = TempLedger();
  o.commit_interval = std::chrono::hours(1);
  auto ledger = *LedgerWriter::Open(o);
  BatchRecord batch = MakeBatch(32);
  for (auto _ : state) {
    for (int i = 0; i < state.range(0); ++i) ledger->OnBatch(batch);
    benchmark::DoNotOptimize(ledger->Flush());
  }
  state.SetLabel("batches per commit: " + std::to_string(state.range(0)));
}
BENCHMARK(BM_LedgerCommit)->Arg(1)->Arg(100)->Unit(benchmark::kMicrosecond);

void BM_SerializeText(benchmark::State& state) {
  Registry registry;
  ServerMetrics metrics(registry);
  for (int t = 0; t < state.range(0); ++t) {
    BatchRecord b = MakeBatch(1);
    b.items[0].tenant_id = "tenant-" + std::to_string(t);
    metrics.OnBatch(b);
    metrics.RequestDone(b.items[0].tenant_id, "mlp", absl::StatusCode::kOk,
                        std::chrono::milliseconds(3));
  }
  for (auto _ : state) benchmark::DoNotOptimize(SerializeText(registry.Collect()));
  state.SetLabel(std::to_string(state.range(0)) + " tenants");
}
BENCHMARK(BM_SerializeText)->Arg(10)->Arg(100)->Unit(benchmark::kMicrosecond);

void BM_TokenBucket(benchmark::State& state) {
  static TokenBucket bucket(1e9, 1e9);
  for (auto _ : state) benchmark::DoNotOptimize(bucket.TryAcquire(SteadyClock::Get().Now()));
}
BENCHMARK(BM_TokenBucket)->Threads(1)->Threads(2);

std::shared_ptr<Config> TenantsConfig(int n) {
  auto config = std::make_shared<Config>();
  for (int i = 0; i < n; ++i) {
    TenantConfig t;
    t.id = "tenant-" + std::to_string(i);
    t.api_key_hashes = {HashApiKey("key-" + std::to_string(i))};
    t.rate_limit = {10, 10};
    config->tenants.push_back(t);
  }
  return config;
}

// The whole rejection path minus gRPC, as InferCall runs it: the
// runtime snapshot, the Authenticator (throttle check, key hash), then
// admission (table lookup, queue, bytes, in-flight, token bucket).
void BM_AuthenticateAndReject(benchmark::State& state) {
  auto config = TenantsConfig(static_cast<int>(state.range(0)));
  AuthThrottle throttle(SteadyClock::Get(), {});
  Authenticator authenticator(throttle);
  Admission admission(SteadyClock::Get());
  Runtime runtime(std::make_shared<RuntimeSnapshot>(RuntimeSnapshot{
      std::make_shared<TenantRegistry>(config), admission.BuildTable(*config, nullptr)}));
  auto drained = runtime.Get()->admission->Find("tenant-1");
  for (int i = 0; i < 100; ++i) admission.Admit(drained);  // drain its bucket
  Credentials credentials;
  credentials.peer = "ipv4:10.0.0.1";
  credentials.authorization = "Bearer key-1";
  for (auto _ : state) {
    std::shared_ptr<const RuntimeSnapshot> snapshot = runtime.Get();
    absl::StatusOr<Principal> p = authenticator.AuthenticateTenant(snapshot->tenants, credentials);
    benchmark::DoNotOptimize(admission.Admit(snapshot->admission->Find(p->tenant->id), 4096));
  }
  state.SetLabel(std::to_string(state.range(0)) + " tenants");
}
BENCHMARK(BM_AuthenticateAndReject)->Arg(10)->Arg(10000);  // target at 10,000: <= 1 us

// /metrics as the daemon renders it, at tenant scale: 10,000 configured
// tenants (their admission and settings families, collected at scrape
// time) of which `range(0)` have served 3 models each. Target for 1,000
// active: <= 50 ms.
void BM_MetricsPageAtScale(benchmark::State& state) {
  auto config = TenantsConfig(10000);
  Admission admission(SteadyClock::Get());
  auto table = admission.BuildTable(*config, nullptr);
  auto tenants = std::make_shared<TenantRegistry>(config);
  Registry registry;
  ServerMetrics metrics(registry);
  registry.AddCollectable([&table] { return CollectAdmissionMetrics(*table); });
  registry.AddCollectable([&tenants] { return CollectTenantSettings(*tenants); });
  for (int t = 0; t < state.range(0); ++t) {
    for (const char* model : {"mlp", "mlp_large", "add_one"}) {
      BatchRecord b = MakeBatch(1);
      b.model_name = model;
      b.items[0].tenant_id = "tenant-" + std::to_string(t);
      metrics.OnBatch(b);
      metrics.RequestDone(b.items[0].tenant_id, model, absl::StatusCode::kOk,
                          std::chrono::milliseconds(3));
    }
  }
  size_t bytes = 0;
  const bool collect_only = state.range(1) == 1;
  if (state.range(1) == 2) {
    const std::vector<CollectedFamily> families = registry.Collect();
    for (auto _ : state) {
      std::string page = SerializeText(families);
      bytes = page.size();
      benchmark::DoNotOptimize(page);
    }
    state.SetLabel(std::to_string(state.range(0)) + " active of 10000 tenants x 3 models, "
                   "text only (collected once), " + std::to_string(bytes >> 10) + " KiB");
    return;
  }
  for (auto _ : state) {
    if (collect_only) {
      auto families = registry.Collect();
      bytes = families.size();
      benchmark::DoNotOptimize(families);
      continue;
    }
    std::string page = SerializeText(registry.Collect());
    bytes = page.size();
    benchmark::DoNotOptimize(page);
  }
  if (collect_only) {
    state.SetLabel(std::to_string(state.range(0)) + " active of 10000 tenants x 3 models, "
                   "collection only (no text)");
    return;
  }
  state.SetLabel(std::to_string(state.range(0)) + " active of 10000 tenants x 3 models, " +
                 std::to_string(bytes >> 10) + " KiB");
}
// Args: active tenants; 0 = the whole page, 1 = collection only (the
// registry's part of the page), 2 = the text only.
BENCHMARK(BM_MetricsPageAtScale)
    ->Args({1000, 0})
    ->Args({1000, 1})
    ->Args({1000, 2})
    ->Unit(benchmark::kMillisecond);

// The per-call failed-authentication throttle check, with no peer tracked
// (the usual case) and with N peers tracked (an ongoing guessing attack).
void BM_AuthThrottleCheck(benchmark::State& state) {
  AuthThrottle throttle(SteadyClock::Get(), {5, 20, 100000});
  for (int i = 0; i < state.range(0); ++i) throttle.RecordFailure("ipv4:10.1." + std::to_string(i));
  for (auto _ : state) benchmark::DoNotOptimize(throttle.Blocked("ipv4:192.168.0.1"));
  state.SetLabel(std::to_string(state.range(0)) + " peers tracked");
}
BENCHMARK(BM_AuthThrottleCheck)->Arg(0)->Arg(1000);

// Validating and decoding a raw mlp_large request (batch 32 x 1024 FP32).
void BM_DecodeRawRequest(benchmark::State& state) {
  ModelConfig config;
  config.name = "mlp_large";
  config.max_batch_size = 32;
  config.inputs = {{"INPUT0", DataType::kFp32, {-1, 1024}}};
  config.outputs = {{"OUTPUT0", DataType::kFp32, {-1, 1024}}};
  inference::ModelInferRequest req;
  req.set_model_name("mlp_large");
  auto* in = req.add_inputs();
  in->set_name("INPUT0");
  in->set_datatype("FP32");
  in->add_shape(state.range(0));
  in->add_shape(1024);
  req.add_raw_input_contents(std::string(state.range(0) * 1024 * 4, '\0'));
  for (auto _ : state) {
    InferenceRequest out;
    benchmark::DoNotOptimize(DecodeInferRequest(req, config, 0, &out));
  }
}
BENCHMARK(BM_DecodeRawRequest)->Arg(1)->Arg(32);

// Fair policy: push + pop + done for one request among many backlogged tenants.
void BM_FairPolicyCycle(benchmark::State& state) {
  FairPolicy policy;
  auto servable = std::make_shared<Servable>();
  servable->config.name = "m";
  servable->config.max_batch_size = 1;
  servable->version = "1";
  Clock::TimePoint now = SteadyClock::Get().Now();
  int tenants = static_cast<int>(state.range(0));
  auto make = [&](int t) {
    auto r = std::make_unique<InferenceRequest>();
    r->tenant_id = "t" + std::to_string(t);
    r->servable = servable;
    r->arrival = now;
    r->on_done = [](absl::StatusOr<InferenceResult>) {};
    return r;
  };
  for (int t = 0; t < tenants; ++t) policy.Push(make(t), now);
  int next = 0;
  for (auto _ : state) {
    policy.Push(make(next++ % tenants), now);
    Dispatch d;
    Clock::TimePoint wake;
    policy.Pop(now, false, &d, &wake);
    BatchRecord record;
    record.samples = 1;
    record.compute_seconds = 0.001;
    record.device_seconds = 0.001;
    policy.Done(d, record);
  }
  state.SetLabel(std::to_string(tenants) + " backlogged tenants");
}
BENCHMARK(BM_FairPolicyCycle)->Arg(2)->Arg(100)->Arg(1000);  // target at 1,000: <= 2 us

// Copies its input batch out as its output, once, as the TorchScript
// executor copies a result out of its tensor: a shared batch's rows go
// straight to each request's part (RunSplit).
class EchoExecutor : public Executor {
 public:
  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>& inputs) override {
    Tensor out;
    out.dtype = inputs[0].dtype;
    out.shape = inputs[0].shape;
    for (absl::string_view part : inputs[0].parts) out.bytes.append(part.data(), part.size());
    return std::vector<Tensor>{std::move(out)};
  }
  absl::StatusOr<std::vector<SplitOutput>> RunSplit(const std::vector<BatchInput>& inputs,
                                                    const std::vector<int64_t>& part_rows,
                                                    RunTiming* timing) override {
    if (part_rows.empty()) return Executor::RunSplit(inputs, part_rows, timing);  // moved whole
    std::vector<SplitOutput> out(1);  // not an initializer list: that would copy the parts
    out[0].dtype = inputs[0].dtype;
    out[0].shape = inputs[0].shape;
    for (absl::string_view part : inputs[0].parts) out[0].parts.emplace_back(part);
    return out;
  }
  uint64_t memory_bytes() const override { return 1; }
};

// One batch through BatchRunner around a model that costs nothing (it echoes
// its input): gathering the requests' inputs, splitting the output among
// them, the answers. Arguments: requests in the batch, rows per request, for
// mlp_large's 4 KiB rows. Each request's rows are copied out of the model
// once, to its own answer.
void BM_BatchRunnerRun(benchmark::State& state) {
  const int64_t requests = state.range(0), rows = state.range(1);
  auto servable = std::make_shared<Servable>();
  servable->config.name = "echo";
  servable->config.max_batch_size = requests * rows;
  servable->config.inputs = {{"INPUT0", DataType::kFp32, {-1, 1024}}};
  servable->config.outputs = {{"OUTPUT0", DataType::kFp32, {-1, 1024}}};
  servable->version = "1";
  servable->executor = std::make_shared<EchoExecutor>();
  const std::string payload(static_cast<size_t>(rows) * 1024 * 4, '\1');
  BatchRunner runner(SteadyClock::Get(), {});
  int64_t answered = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<std::unique_ptr<InferenceRequest>> batch;
    for (int64_t i = 0; i < requests; ++i) {
      auto r = std::make_unique<InferenceRequest>();
      r->servable = servable;
      r->inputs = {TensorView{DataType::kFp32, {rows, 1024}, payload}};
      r->output_indexes = {0};
      r->batch_size = rows;
      r->on_done = [&answered](absl::StatusOr<InferenceResult> result) {
        answered += result.ok() ? 1 : 0;
        benchmark::DoNotOptimize(result);
      };
      batch.push_back(std::move(r));
    }
    state.ResumeTiming();
    runner.Run(std::move(batch));
  }
  if (answered != state.iterations() * requests) state.SkipWithError("a request failed");
  state.SetLabel(std::to_string(requests) + " request(s) of " + std::to_string(rows) +
                 " row(s), 4 KiB a row");
}
BENCHMARK(BM_BatchRunnerRun)->Args({1, 32})->Args({4, 8})->Args({32, 1})->Unit(benchmark::kMicrosecond);

// Requests handed to the scheduler's workers and answered: a burst of N
// one-row requests (16 bytes) submitted back to back from this thread, as
// a gRPC thread submits calls that arrive together, through the fair
// policy and two workers, around a model that costs nothing; the time is
// until the last answer is in. What it measures is the hand-off: waking a
// worker, its taking a batch, the answers. Counters: batches a burst (one
// wake-up per batch at best), and requests a second.
void BM_SchedulerHandOff(benchmark::State& state) {
  const int64_t burst = state.range(0);
  auto servable = std::make_shared<Servable>();
  servable->config.name = "echo";
  servable->config.max_batch_size = 64;
  servable->config.inputs = {{"INPUT0", DataType::kFp32, {-1, 4}}};
  servable->config.outputs = {{"OUTPUT0", DataType::kFp32, {-1, 4}}};
  servable->version = "1";
  servable->executor = std::make_shared<EchoExecutor>();
  const std::string payload(16, '\1');
  struct Counter : BatchObserver {
    void OnBatch(const BatchRecord&) override { batches.fetch_add(1); }
    std::atomic<int64_t> batches{0};
  } counter;
  BatchRunner runner(SteadyClock::Get(), {&counter});
  SchedulerOptions options;
  options.workers = 2;
  options.run_on_caller_below = std::chrono::microseconds(0);  // always a hand-off
  std::unique_ptr<Scheduler> scheduler = MakeScheduler(options, SteadyClock::Get(), runner);
  std::mutex mu;
  std::condition_variable cv;
  int64_t answered = 0, failed = 0, target = 0;  // under mu
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<std::unique_ptr<InferenceRequest>> requests;
    for (int64_t i = 0; i < burst; ++i) {
      auto r = std::make_unique<InferenceRequest>();
      r->tenant_id = "t";
      r->servable = servable;
      r->inputs = {TensorView{DataType::kFp32, {1, 4}, payload}};
      r->output_indexes = {0};
      r->batch_size = 1;
      r->on_done = [&](absl::StatusOr<InferenceResult> result) {
        std::lock_guard<std::mutex> lock(mu);
        if (!result.ok()) ++failed;
        if (++answered >= target || failed > 0) cv.notify_one();
      };
      requests.push_back(std::move(r));
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      target = answered + burst;
    }
    state.ResumeTiming();
    bool refused = false;
    for (auto& r : requests) refused = !scheduler->Submit(std::move(r)).ok() || refused;
    std::unique_lock<std::mutex> lock(mu);
    if (refused) ++failed;
    cv.wait(lock, [&] { return answered >= target || failed > 0; });
    if (failed > 0) break;
  }
  scheduler->Shutdown(std::chrono::milliseconds(100));
  if (failed > 0) state.SkipWithError("a request failed");
  state.counters["batches_per_burst"] = benchmark::Counter(
      static_cast<double>(counter.batches.load()) / std::max<int64_t>(1, state.iterations()));
  state.SetItemsProcessed(state.iterations() * burst);
}
BENCHMARK(BM_SchedulerHandOff)->Arg(1)->Arg(8)->Arg(32)->Unit(benchmark::kMicrosecond)->UseRealTime();

class NullExecutor : public Executor {
 public:
  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>&) override {
    return std::vector<Tensor>{};
  }
  uint64_t memory_bytes() const override { return 1; }
};
class NullLoader : public ModelLoader {
 public:
  absl::StatusOr<std::unique_ptr<Executor>> Load(const ModelConfig&, const std::string&) override {
    return std::unique_ptr<Executor>(new NullExecutor());
  }
};

// A request's model lookup when the model is resident (the cache-hit path).
void BM_ModelCacheHit(benchmark::State& state) {
  auto root = std::filesystem::temp_directory_path() / "fairserve-bench-repo";
  std::filesystem::remove_all(root);
  for (int i = 0; i < state.range(0); ++i) {
    auto dir = root / ("m" + std::to_string(i));
    std::filesystem::create_directories(dir / "1");
    std::ofstream(dir / "config.yaml") << "max_batch_size: 1\n"
        "inputs: [{name: X, datatype: FP32, shape: [-1, 2]}]\n"
        "outputs: [{name: Y, datatype: FP32, shape: [-1, 2]}]\n";
    std::ofstream(dir / "1" / "model.pt") << "x";
  }
  ModelCache cache(std::make_unique<NullLoader>(), SteadyClock::Get());
  cache.Scan(root.string()).IgnoreError();
  cache.AcquireSync("m0", "").IgnoreError();
  for (auto _ : state) {
    cache.Acquire("m0", "", [](absl::StatusOr<std::shared_ptr<const Servable>> s) {
      benchmark::DoNotOptimize(s);
    });
  }
  state.SetLabel(std::to_string(state.range(0)) + " models in the repository");
}
BENCHMARK(BM_ModelCacheHit)->Arg(3)->Arg(100);

// One batch through the TorchScript executor: the input tensor built from
// the requests' bytes, the forward pass, the outputs copied out. add_one
// (16 floats a row) measures what a tiny model's batch costs beyond its
// arithmetic. The second argument, when not 0, walks that many KiB of other
// memory (untimed) before each run, as the daemon's gRPC and batching work
// does between batches: what a batch costs with cold caches. The third, when
// not 0, sleeps that many microseconds (untimed) before each run, as a
// thread does between one client's sequential calls: the run then meets a
// CPU woken from idle and caches that lost its state, which is most of why
// the daemon's access log shows 27 us per batch at one call at a time.
// Needs the demo models (scripts/make-demo-models.sh build/demo-models).
void BM_TorchExecutorRun(benchmark::State& state) {
  ModelCache cache(MakeTorchModelLoader(), SteadyClock::Get());
  if (!cache.Scan(FAIRSERVE_DEMO_MODELS).ok()) {
    state.SkipWithError("no demo models: run scripts/make-demo-models.sh build/demo-models");
    return;
  }
  absl::StatusOr<std::shared_ptr<const Servable>> add_one = cache.AcquireSync("add_one", "");
  if (!add_one.ok()) {
    state.SkipWithError(std::string(add_one.status().message()).c_str());
    return;
  }
  const int64_t rows = state.range(0);
  std::string bytes(rows * 16 * sizeof(float), '\0');
  std::vector<BatchInput> inputs(1);
  inputs[0].dtype = DataType::kFp32;
  inputs[0].shape = {rows, 16};
  inputs[0].parts = {bytes};
  std::vector<char> other(static_cast<size_t>(state.range(1)) << 10);
  for (auto _ : state) {
    if (state.range(2) > 0) {
      state.PauseTiming();
      std::this_thread::sleep_for(std::chrono::microseconds(state.range(2)));
      state.ResumeTiming();
    }
    if (!other.empty()) {
      state.PauseTiming();
      for (size_t i = 0; i < other.size(); i += 64) other[i]++;
      benchmark::DoNotOptimize(other.data());
      state.ResumeTiming();
    }
    absl::StatusOr<std::vector<Tensor>> out = (*add_one)->executor->Run(inputs);
    benchmark::DoNotOptimize(out);
  }
  state.SetLabel("add_one, " + std::to_string(rows) + " row(s)" +
                 (other.empty() ? "" : ", caches cold") +
                 (state.range(2) > 0 ? ", after " + std::to_string(state.range(2)) + " us asleep"
                                     : ""));
}
BENCHMARK(BM_TorchExecutorRun)
    ->Args({1, 0, 0})
    ->Args({8, 0, 0})
    ->Args({1, 4096, 0})
    ->Args({1, 0, 200})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace fairserve

BENCHMARK_MAIN();
