// InferCall, the one path every inference call takes, against the real
// components it is composed of in the daemon: the authenticator, local
// admission, the model cache with the TorchScript loader (the test models),
// the fair scheduler and its batch runner, metrics and the access log.
// Only the transport is a stand-in: a reply that records what the call
// answered, on which thread, and what the tenant's admission counts read at
// that moment.
#include "fairserve/server/infer_call.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <pthread.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fairserve/metering/metrics.h"
#include "fairserve/models/executor.h"
#include "fairserve/scheduling/batch_runner.h"
#include "fairserve/tenancy/api_key.h"
#include "spdlog/sinks/ostream_sink.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// What a call answered, and the tenant's admission counts the moment it did.
struct Answer {
  absl::Status status;
  Clock::Duration retry_after{0};
  std::vector<float> output;
  std::string model, version, id;
  int64_t inflight = -1, pending_bytes = -1, waiting = -1;
  std::thread::id thread;
  std::string thread_name;
};

class Outcome {
 public:
  void Set(Answer a) {
    std::lock_guard<std::mutex> lock(mu_);
    ++answers_;
    answer_ = std::move(a);
    cv_.notify_all();
  }
  // Waits (up to 30 s) for the answer.
  Answer Get() {
    std::unique_lock<std::mutex> lock(mu_);
    EXPECT_TRUE(cv_.wait_for(lock, std::chrono::seconds(30), [this] { return answers_ > 0; }))
        << "no answer";
    return answer_.value_or(Answer{});
  }
  int answers() {
    std::lock_guard<std::mutex> lock(mu_);
    return answers_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int answers_ = 0;
  std::optional<Answer> answer_;
};

// The transport stand-in. Reads the tenant's admission counts as it is
// answered: what a client that sends its next request at once would find.
class RecordingReply : public InferReply {
 public:
  RecordingReply(std::shared_ptr<TenantAdmission> tenant, std::shared_ptr<Outcome> outcome)
      : tenant_(std::move(tenant)), outcome_(std::move(outcome)) {}

  void Reject(const absl::Status& status, Clock::Duration retry_after) override {
    Answer a = Counts();
    a.status = status;
    a.retry_after = retry_after;
    outcome_->Set(std::move(a));
  }
  void Finish(InferenceResult result, const std::string& model, const std::string& version,
              const std::string& id) override {
    Answer a = Counts();
    a.model = model;
    a.version = version;
    a.id = id;
    if (!result.outputs.empty()) {
      const std::string& bytes = result.outputs[0].bytes;
      a.output.resize(bytes.size() / sizeof(float));
      std::memcpy(a.output.data(), bytes.data(), a.output.size() * sizeof(float));
    }
    outcome_->Set(std::move(a));
  }

 private:
  Answer Counts() const {
    Answer a;
    a.inflight = tenant_->inflight().load();
    a.pending_bytes = tenant_->pending_bytes().load();
    a.waiting = tenant_->waiting().load();
    a.thread = std::this_thread::get_id();
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    a.thread_name = name;
    return a;
  }
  std::shared_ptr<TenantAdmission> tenant_;
  std::shared_ptr<Outcome> outcome_;
};

// Holds every batch's answers until the test lets them go, as the usage
// ledger does until its commit (reply_after_commit).
class HeldGate : public ReplyGate {
 public:
  void AfterRecorded(std::function<void()> send) override {
    std::lock_guard<std::mutex> lock(mu_);
    held_.push_back(std::move(send));
    cv_.notify_all();
  }
  void WaitForHeld(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(30), [&] { return held_.size() >= n; }));
  }
  void ReleaseAll() {
    std::vector<std::function<void()>> sends;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sends.swap(held_);
    }
    for (auto& send : sends) send();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::function<void()>> held_;
};

std::string Yaml() {
  return absl::StrCat(
      "model_repository: ", TEST_MODELS_DIR, "\n",
      "devices: [{name: cpu, memory_budget: 1GiB}]\n"
      "tenants:\n"
      "  - id: acme\n"
      "    api_keys: [\"", HashApiKey("acme-key"), "\"]\n"
      "    max_inflight: 1\n"
      "    models: [add_one, slow, corrupt]\n"
      "  - id: globex\n"
      "    api_keys: [\"", HashApiKey("globex-key"), "\"]\n"
      "    rate_limit: {requests_per_second: 1, burst: 1}\n"
      "    models: [add_one]\n");
}

class InferCallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::shared_ptr<const Config>> config = ParseConfig(Yaml(), "test.yaml", "");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    ASSERT_TRUE(models_.Scan(config_->model_repository).ok());
    models_.SetLimits(*config_);
    runtime_.Set(std::make_shared<RuntimeSnapshot>(RuntimeSnapshot{
        std::make_shared<TenantRegistry>(config_), admission_.BuildTable(*config_, nullptr)}));
    access_log_ = std::make_unique<AccessLog>(
        8192, std::vector<std::shared_ptr<spdlog::sinks::sink>>{
                  std::make_shared<spdlog::sinks::ostream_sink_mt>(log_)});
  }

  void TearDown() override {
    if (scheduler_) scheduler_->Shutdown(std::chrono::milliseconds(0));
    executor_.Shutdown();
  }

  // Builds the scheduler (one worker; `gate` optional) and the call's deps.
  void StartScheduler(ReplyGate* gate = nullptr) {
    runner_ = std::make_unique<BatchRunner>(clock_, std::vector<BatchObserver*>{&metrics_}, gate);
    SchedulerOptions options;
    options.workers = 1;
    scheduler_ = MakeScheduler(options, clock_, *runner_);
    deps_.runtime = &runtime_;
    deps_.authenticator = &authenticator_;
    deps_.admission = &admission_;
    deps_.models = &models_;
    deps_.scheduler = scheduler_.get();
    deps_.metrics = &metrics_;
    deps_.access_log = access_log_.get();
    deps_.clock = &clock_;
    deps_.executor = &executor_;
    deps_.ready = &ready_;
    deps_.max_response_bytes = 1 << 20;
    // Resident, so calls to it stay on the caller's thread (a miss loads on
    // the cache's loader and continues on the executor).
    ASSERT_TRUE(models_.AcquireSync("add_one", "").ok());
  }

  std::shared_ptr<TenantAdmission> Tenant(const std::string& id) {
    return runtime_.Get()->admission->Find(id);
  }

  // One call's request, kept alive until the test ends (the front end owns
  // it until the answer).
  inference::ModelInferRequest* Request(const std::string& model, std::vector<float> values,
                                        int64_t columns, const std::string& id = "") {
    auto req = std::make_unique<inference::ModelInferRequest>();
    req->set_model_name(model);
    req->set_id(id);
    auto* in = req->add_inputs();
    in->set_name("INPUT0");
    in->set_datatype("FP32");
    in->add_shape(static_cast<int64_t>(values.size()) / columns);
    in->add_shape(columns);
    req->add_raw_input_contents(std::string(reinterpret_cast<const char*>(values.data()),
                                            values.size() * sizeof(float)));
    requests_.push_back(std::move(req));
    return requests_.back().get();
  }

  // Starts a call with `key` on this thread; returns where its answer lands.
  std::shared_ptr<Outcome> Call(const std::string& key, const inference::ModelInferRequest* req,
                                const std::string& tenant_for_counts = "acme") {
    auto outcome = std::make_shared<Outcome>();
    const std::string authorization = "Bearer " + key;
    Credentials credentials;
    credentials.peer = "ipv4:127.0.0.1";
    credentials.authorization = authorization;
    InferCall::Start(deps_, credentials, req, Clock::TimePoint::max(),
                     std::make_shared<std::atomic<bool>>(false),
                     std::make_unique<RecordingReply>(Tenant(tenant_for_counts), outcome));
    return outcome;
  }

  // The access log's lines so far (writes out what is pending first).
  std::string LogText() {
    access_log_.reset();
    deps_.access_log = nullptr;
    return log_.str();
  }

  // Declared first, destroyed last: a call reads its request until it ends.
  std::vector<std::unique_ptr<inference::ModelInferRequest>> requests_;
  Clock& clock_ = SteadyClock::Get();
  std::shared_ptr<const Config> config_;
  ModelCache models_{MakeTorchModelLoader(), SteadyClock::Get()};
  Admission admission_{SteadyClock::Get()};
  Runtime runtime_;
  AuthThrottle throttle_{SteadyClock::Get(), {/*failures_per_second=*/100, /*burst=*/100,
                                              /*max_peers=*/100}};
  Authenticator authenticator_{throttle_};
  Registry registry_;
  ServerMetrics metrics_{registry_};
  std::ostringstream log_;
  std::unique_ptr<AccessLog> access_log_;
  std::atomic<bool> ready_{true};
  TaskExecutor executor_{2, "fs-calls"};
  HeldGate gate_;
  std::unique_ptr<BatchRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
  InferCallDeps deps_;
};

std::vector<float> Iota(int n, float start) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

// A call that ran is answered with its model's output, after its tenant's
// in-flight slot, pending bytes and queue place were given back: a client
// that sends its next request the moment it has this answer finds them free.
TEST_F(InferCallTest, AnAnswerFindsTheCallsSlotsAlreadyGivenBack) {
  StartScheduler();
  for (int round = 0; round < 20; ++round) {
    const std::string id = "r" + std::to_string(round);
    Answer a = Call("acme-key", Request("add_one", Iota(32, round), 16, id))->Get();
    ASSERT_TRUE(a.status.ok()) << a.status;
    EXPECT_EQ(a.model, "add_one");
    EXPECT_EQ(a.version, "1");
    EXPECT_EQ(a.id, id);
    EXPECT_EQ(a.output, Iota(32, round + 1));
    EXPECT_EQ(a.inflight, 0) << round;
    EXPECT_EQ(a.pending_bytes, 0) << round;
    EXPECT_EQ(a.waiting, 0) << round;
    EXPECT_EQ(a.thread_name, "fs-worker-0") << "answered by the worker that ran it";
  }
  EXPECT_EQ(Tenant("acme")->rejected_total(), 0);
  EXPECT_THAT(LogText(), HasSubstr("access tenant=acme model=add_one version=1 id=r19 status=ok "
                                   "rows=2"));
}

// Refusals after admission (a model the tenant may not use, one that does
// not exist, input of the wrong shape, a bad timeout) answer once, with the
// precise code, after the slots went back; each is logged and counted.
TEST_F(InferCallTest, RefusalsAfterAdmissionGiveTheirSlotsBackBeforeAnswering) {
  StartScheduler();
  struct Case {
    inference::ModelInferRequest* request;
    absl::StatusCode code;
    std::string message;
  } cases[] = {
      {Request("mlp", Iota(64, 0), 64), absl::StatusCode::kPermissionDenied,
       "tenant 'acme' may not use model 'mlp'"},
      {Request("no_such_model", Iota(16, 0), 16), absl::StatusCode::kNotFound, "no_such_model"},
      {Request("add_one", Iota(15, 0), 15), absl::StatusCode::kInvalidArgument, "INPUT0"},
      {Request("add_one", Iota(16, 0), 16), absl::StatusCode::kInvalidArgument, "timeout"},
  };
  (*cases[3].request->mutable_parameters())["timeout"].set_string_param("soon");
  for (const Case& c : cases) {
    std::shared_ptr<Outcome> outcome = Call("acme-key", c.request);
    Answer a = outcome->Get();
    EXPECT_EQ(a.status.code(), c.code) << a.status;
    EXPECT_THAT(std::string(a.status.message()), HasSubstr(c.message));
    EXPECT_EQ(a.inflight, 0) << a.status;
    EXPECT_EQ(a.pending_bytes, 0) << a.status;
    EXPECT_EQ(a.waiting, 0) << a.status;
    EXPECT_EQ(a.thread, std::this_thread::get_id()) << "refused on the caller's thread";
    EXPECT_EQ(outcome->answers(), 1);
  }
  // max_inflight is 1: a slot kept by any of them would refuse this one.
  EXPECT_TRUE(Call("acme-key", Request("add_one", Iota(16, 0), 16))->Get().status.ok());
  EXPECT_EQ(Tenant("acme")->rejected_total(), 0) << "refusals after admission are not admission's";
  const std::string log = LogText();
  EXPECT_THAT(log, HasSubstr("model=mlp version=- id=- status=permission_denied"));
  EXPECT_THAT(log, HasSubstr("model=no_such_model version=- id=- status=not_found"));
  EXPECT_THAT(log, HasSubstr("model=add_one version=- id=- status=invalid_argument"));
}

// A model that is not resident is loaded on the cache's loader thread; the
// call then continues on the server's executor (fs-calls-N), never on the
// loader's thread, and a refusal from there (the load failed; the input does
// not fit the model just loaded) still gives the slots back first.
TEST_F(InferCallTest, ACacheMissContinuesOnTheServersExecutor) {
  StartScheduler();
  Answer corrupt = Call("acme-key", Request("corrupt", Iota(4, 0), 4))->Get();
  EXPECT_EQ(corrupt.status.code(), absl::StatusCode::kUnavailable) << corrupt.status;
  EXPECT_THAT(std::string(corrupt.status.message()), HasSubstr("corrupt"));
  EXPECT_THAT(corrupt.thread_name, StartsWith("fs-calls-"));
  EXPECT_EQ(corrupt.inflight, 0);
  EXPECT_EQ(corrupt.waiting, 0);
  // `slow` takes 4 columns.
  Answer wrong = Call("acme-key", Request("slow", Iota(5, 0), 5))->Get();
  EXPECT_EQ(wrong.status.code(), absl::StatusCode::kInvalidArgument) << wrong.status;
  EXPECT_THAT(wrong.thread_name, StartsWith("fs-calls-"));
  EXPECT_EQ(wrong.inflight, 0);
  EXPECT_EQ(wrong.pending_bytes, 0);
  // Resident now: the next call is decoded and queued on this thread.
  Answer ok = Call("acme-key", Request("slow", std::vector<float>(4, 1.0f), 4))->Get();
  EXPECT_TRUE(ok.status.ok()) << ok.status;
  EXPECT_EQ(ok.thread_name, "fs-worker-0");
}

// Refusals before admission take no slot and cost no access-log line:
// no key, a wrong key, and a rate limit (with its retry hint).
TEST_F(InferCallTest, RefusalsBeforeAdmissionTakeNoSlotAndWriteNoLine) {
  StartScheduler();
  Answer none = Call("", Request("add_one", Iota(16, 0), 16))->Get();
  EXPECT_EQ(none.status.code(), absl::StatusCode::kUnauthenticated) << none.status;
  Answer wrong = Call("guess", Request("add_one", Iota(16, 0), 16))->Get();
  EXPECT_EQ(wrong.status.code(), absl::StatusCode::kUnauthenticated) << wrong.status;

  // globex: 1 request a second, burst 1.
  Answer first = Call("globex-key", Request("add_one", Iota(16, 0), 16), "globex")->Get();
  ASSERT_TRUE(first.status.ok()) << first.status;
  Answer limited = Call("globex-key", Request("add_one", Iota(16, 0), 16), "globex")->Get();
  EXPECT_EQ(limited.status.code(), absl::StatusCode::kResourceExhausted) << limited.status;
  // The hint is the time until the next token: under a second at 1/s, less
  // by however long the first call took.
  EXPECT_GT(limited.retry_after, Clock::Duration(0));
  EXPECT_LE(limited.retry_after, std::chrono::seconds(1));
  EXPECT_EQ(limited.inflight, 0);
  EXPECT_EQ(limited.waiting, 0);
  EXPECT_EQ(Tenant("globex")->rejected_total(), 1);
  const std::string log = LogText();
  EXPECT_THAT(log, HasSubstr("tenant=globex model=add_one version=1 id=- status=ok"));
  EXPECT_THAT(log, Not(HasSubstr("resource_exhausted")));
  EXPECT_THAT(log, Not(HasSubstr("unauthenticated")));
}

// In reply_after_commit mode the ledger's gate holds a batch's answers until
// its record is durable; the call keeps its in-flight slot until then (its
// client has no answer yet, so max_inflight still counts it), and gives it
// back just before the answer goes out.
TEST_F(InferCallTest, AGateKeepsTheSlotUntilTheAnswerLeaves) {
  StartScheduler(&gate_);
  std::shared_ptr<Outcome> first = Call("acme-key", Request("add_one", Iota(16, 0), 16));
  gate_.WaitForHeld(1);
  EXPECT_EQ(first->answers(), 0);
  EXPECT_EQ(Tenant("acme")->inflight().load(), 1);
  EXPECT_EQ(Tenant("acme")->waiting().load(), 0) << "it ran: it no longer waits";
  // The client's second call is refused: its first is still unanswered.
  Answer second = Call("acme-key", Request("add_one", Iota(16, 0), 16))->Get();
  EXPECT_EQ(second.status.code(), absl::StatusCode::kResourceExhausted) << second.status;
  EXPECT_THAT(std::string(second.status.message()), HasSubstr("max_inflight 1"));
  gate_.ReleaseAll();
  Answer a = first->Get();
  ASSERT_TRUE(a.status.ok()) << a.status;
  EXPECT_EQ(a.inflight, 0);
  EXPECT_EQ(a.pending_bytes, 0);
  // Given back: the next call is admitted (and held by the gate in turn).
  std::shared_ptr<Outcome> third = Call("acme-key", Request("add_one", Iota(16, 0), 16));
  gate_.WaitForHeld(1);
  gate_.ReleaseAll();
  EXPECT_TRUE(third->Get().status.ok());
}

// A call still queued when the scheduler shuts down is answered UNAVAILABLE,
// its slots given back first.
TEST_F(InferCallTest, ShutdownAnswersAQueuedCallWithItsSlotsGivenBack) {
  StartScheduler();
  // acme keeps the one worker busy with `slow` (x[0][0] = 500 matrix
  // products), globex queues add_one behind it.
  std::vector<float> slow(4, 0.0f);
  slow[0] = 500;
  std::shared_ptr<Outcome> busy = Call("acme-key", Request("slow", slow, 4));
  // The worker has taken `slow` once its queue place is given back.
  for (int i = 0; i < 30000 && Tenant("acme")->waiting().load() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  ASSERT_EQ(Tenant("acme")->waiting().load(), 0);
  std::shared_ptr<Outcome> queued =
      Call("globex-key", Request("add_one", Iota(16, 0), 16), "globex");
  ASSERT_EQ(Tenant("globex")->waiting().load(), 1) << "add_one should wait behind slow";
  scheduler_->Shutdown(std::chrono::milliseconds(0));
  Answer a = queued->Get();
  EXPECT_EQ(a.status.code(), absl::StatusCode::kUnavailable) << a.status;
  EXPECT_THAT(std::string(a.status.message()), HasSubstr("shut down"));
  EXPECT_EQ(a.inflight, 0);
  EXPECT_EQ(a.waiting, 0);
  EXPECT_EQ(a.pending_bytes, 0);
  EXPECT_TRUE(busy->Get().status.ok()) << "a running batch finishes";
  // A call admitted after shutdown is refused by the scheduler's Submit:
  // through Reject, once, its slots given back first.
  std::shared_ptr<Outcome> late = Call("acme-key", Request("add_one", Iota(16, 0), 16));
  Answer l = late->Get();
  EXPECT_EQ(l.status.code(), absl::StatusCode::kUnavailable) << l.status;
  EXPECT_EQ(l.inflight, 0);
  EXPECT_EQ(l.waiting, 0);
  EXPECT_EQ(late->answers(), 1);
}

}  // namespace
}  // namespace fairserve
