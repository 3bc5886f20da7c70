// End to end: the limits a tenant is promised, against the real daemon. A
// "slow" test model (x[0][0] matrix products, 0.5 to 1.5 ms each) keeps the
// single worker busy while the requests under test wait.

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <future>
#include <thread>

#include "fairserve/tenancy/api_key.h"
#include "inference/grpc_service.grpc.pb.h"
#include "integration/daemon_process.h"

namespace fairserve {
namespace {

using namespace testing_util;
using inference::GRPCInferenceService;
using inference::ModelInferRequest;
using inference::ModelInferResponse;
using ::testing::HasSubstr;

std::string LimitsConfig(const std::string& scheduler, const std::string& acme,
                         const std::string& globex) {
  return "server: {listen_address: 127.0.0.1, grpc_port: 0, http_port: 0, data_dir: data, "
         "drain_timeout_s: 10}\n"
         "model_repository: " TEST_MODELS_DIR "\n"
         "scheduler: {workers: 1, intra_op_threads: 1" + scheduler + "}\n"
         "tenants:\n"
         "  - id: acme\n"
         "    api_keys: [\"" + HashApiKey(kAcmeKey) + "\"]\n" + acme +
         "  - id: globex\n"
         "    api_keys: [\"" + HashApiKey(kGlobexKey) + "\"]\n"
         "    models: [add_one, slow]\n" + globex;
}

struct Answer {
  grpc::Status status;
  std::string retry_after_ms;
};

// One call on its own connection; `cancel_after` > 0 cancels it then.
Answer Call(const DaemonProcess& d, const std::string& key, const ModelInferRequest& req,
            std::chrono::milliseconds deadline = std::chrono::seconds(30),
            std::chrono::milliseconds cancel_after = std::chrono::milliseconds(0)) {
  auto stub = GRPCInferenceService::NewStub(OwnConnection(d.grpc_address()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-api-key", key);
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  std::thread canceller;
  if (cancel_after.count() > 0) {
    canceller = std::thread([&ctx, cancel_after] {
      std::this_thread::sleep_for(cancel_after);
      ctx.TryCancel();
    });
  }
  ModelInferResponse resp;
  Answer a{stub->ModelInfer(&ctx, req, &resp), ""};
  if (canceller.joinable()) canceller.join();
  auto it = ctx.GetServerTrailingMetadata().find("retry-after-ms");
  if (it != ctx.GetServerTrailingMetadata().end()) {
    a.retry_after_ms = std::string(it->second.data(), it->second.size());
  }
  return a;
}

// `n` matrix products on the one worker: 0.5 to 1.5 ms each.
ModelInferRequest Slow(int n) { return FloatRequest("slow", {float(n), 0, 0, 0}, {1, 4}); }
ModelInferRequest AddOne() { return FloatRequest("add_one", RandomFloats(16, 3), {1, 16}); }

// True once `tenant`'s one admitted request has left the waiting state
// (rate check, model load, queue) and runs on the worker.
bool Running(const DaemonProcess& d, const std::string& tenant) {
  std::string labels = "{tenant_id=\"" + tenant + "\"}";
  return Metric(d, "fairserve_inflight_requests" + labels) == 1 &&
         Metric(d, "fairserve_queue_depth" + labels) == 0;
}

// Starts a call in the background.
std::future<Answer> Async(const DaemonProcess& d, const std::string& key, ModelInferRequest req) {
  return std::async(std::launch::async, [&d, key, req] { return Call(d, key, req); });
}

TEST(LimitsTest, MaxInflightAndMaxQueueHoldEndToEnd) {
  DaemonProcess d(LimitsConfig("", "    max_inflight: 2\n", "    max_queue: 2\n"));
  ASSERT_TRUE(d.serving()) << d.Log();
  // The worker runs acme's slow request (~1 s): everything below waits.
  std::future<Answer> running = Async(d, kAcmeKey, Slow(2000));
  ASSERT_TRUE(WaitFor([&] { return Running(d, "acme"); }));
  std::future<Answer> second = Async(d, kAcmeKey, AddOne());
  ASSERT_TRUE(WaitFor(
      [&] { return Metric(d, "fairserve_inflight_requests{tenant_id=\"acme\"}") == 2; }));
  // acme: two in flight (one running, one queued) -> the third is refused.
  Answer third = Call(d, kAcmeKey, AddOne());
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.status.error_message(), HasSubstr("max_inflight 2"));
  EXPECT_FALSE(third.retry_after_ms.empty());
  // globex: two waiting -> the third is refused; its own limit, not acme's.
  std::future<Answer> g1 = Async(d, kGlobexKey, AddOne());
  std::future<Answer> g2 = Async(d, kGlobexKey, AddOne());
  ASSERT_TRUE(
      WaitFor([&] { return Metric(d, "fairserve_queue_depth{tenant_id=\"globex\"}") == 2; }));
  Answer g3 = Call(d, kGlobexKey, AddOne());
  EXPECT_EQ(g3.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(g3.status.error_message(), HasSubstr("max_queue 2"));
  for (std::future<Answer>* f : {&running, &second, &g1, &g2}) {
    Answer a = f->get();
    EXPECT_TRUE(a.status.ok()) << a.status.error_message();
  }
  EXPECT_EQ(Metric(d, "fairserve_rejected_requests_total{reason=\"max_inflight\",tenant_id=\"acme\"}"), 1);
  EXPECT_EQ(Metric(d, "fairserve_rejected_requests_total{reason=\"max_queue\",tenant_id=\"globex\"}"), 1);
  EXPECT_EQ(Metric(d, "fairserve_inflight_requests{tenant_id=\"acme\"}"), 0);
  EXPECT_EQ(Metric(d, "fairserve_queue_depth{tenant_id=\"globex\"}"), 0);
  EXPECT_EQ(Metric(d, "fairserve_pending_request_bytes{tenant_id=\"globex\"}"), 0);
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

// A client that sends each request as soon as it has the last answer never
// finds its max_inflight slot still taken by the call it saw answered,
// whether that call ran or was refused after admission (a model it may not
// use, input of the wrong shape). A slot kept by a refused call fails this
// at once; one given back only after its answer (as before) failed
// MaxInflightAndMaxQueueHoldEndToEnd in CI, and is what
// BatchRunnerTest.EachInflightSlotIsGivenBackBeforeItsAnswer pins down.
TEST(LimitsTest, AClientWaitingForEachAnswerIsNeverRefusedForMaxInflight) {
  DaemonProcess d(LimitsConfig("", "", "    max_inflight: 1\n"));
  ASSERT_TRUE(d.serving()) << d.Log();
  auto stub = GRPCInferenceService::NewStub(OwnConnection(d.grpc_address()));
  const ModelInferRequest good = AddOne();
  const ModelInferRequest bad_shape = FloatRequest("add_one", RandomFloats(15, 3), {1, 15});
  const ModelInferRequest not_allowed = FloatRequest("mlp", RandomFloats(16, 3), {1, 16});
  const std::pair<const ModelInferRequest*, grpc::StatusCode> calls[] = {
      {&good, grpc::StatusCode::OK},
      {&bad_shape, grpc::StatusCode::INVALID_ARGUMENT},
      {&not_allowed, grpc::StatusCode::PERMISSION_DENIED}};
  for (int i = 0; i < 100; ++i) {
    for (const auto& [req, expected] : calls) {
      grpc::ClientContext ctx;
      ctx.AddMetadata("x-api-key", kGlobexKey);
      ModelInferResponse resp;
      grpc::Status status = stub->ModelInfer(&ctx, *req, &resp);
      ASSERT_EQ(status.error_code(), expected)
          << "round " << i << ", " << req->model_name() << ": " << status.error_message();
    }
  }
  EXPECT_EQ(
      Metric(d, "fairserve_rejected_requests_total{reason=\"max_inflight\",tenant_id=\"globex\"}"),
      0);
  stub.reset();  // the drain waits for an idle channel left open (about 5 s here)
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

// A client's deadline, and a client that gives up, while the request waits
// in its queue: answered, never run, never billed.
TEST(LimitsTest, DeadlineAndCancelWhileQueuedNeverRun) {
  DaemonProcess d(LimitsConfig("", "", ""));
  ASSERT_TRUE(d.serving()) << d.Log();
  std::future<Answer> running = Async(d, kAcmeKey, Slow(2000));
  ASSERT_TRUE(WaitFor([&] { return Running(d, "acme"); }));
  Answer late = Call(d, kGlobexKey, AddOne(), std::chrono::milliseconds(200));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  Answer gone = Call(d, kGlobexKey, AddOne(), std::chrono::seconds(30),
                     std::chrono::milliseconds(100));
  EXPECT_EQ(gone.status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(running.get().status.ok());
  // The server answered both without running them.
  EXPECT_TRUE(WaitFor([&] {
    return Metric(d, "tenant_requests_total{status=\"cancelled\",tenant_id=\"globex\"}") == 1 &&
           Metric(d, "tenant_requests_total{status=\"deadline_exceeded\",tenant_id=\"globex\"}") == 1;
  })) << d.Log();
  EXPECT_EQ(Metric(d, "tenant_samples_total{model_name=\"add_one\",tenant_id=\"globex\"}"), 0);
  EXPECT_EQ(Metric(d, "fairserve_inflight_requests{tenant_id=\"globex\"}"), 0);
  EXPECT_TRUE(Call(d, kGlobexKey, AddOne()).status.ok());
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

// scheduler.policy fifo end to end, and max_queue_wait_s: a request that
// waits longer than that is answered DEADLINE_EXCEEDED without running.
// With server.rejection_hold_per_tenant, a rate-limited gRPC call is
// answered at its retry point instead of at once, up to the tenant's cap;
// past it, and on REST (whose handler thread would wait), at once.
TEST(LimitsTest, RefusalsAreHeldUntilTheirRetryPointUpToTheCap) {
  std::string config =
      "server: {listen_address: 127.0.0.1, grpc_port: 0, http_port: 0, data_dir: data, "
      "rejection_hold_per_tenant: 2, rejection_hold_max_ms: 5000}\n"
      "model_repository: " TEST_MODELS_DIR "\n"
      "scheduler: {workers: 1, intra_op_threads: 1}\n"
      "tenants:\n"
      "  - id: acme\n"
      "    api_keys: [\"" + HashApiKey(kAcmeKey) + "\"]\n"
      "    rate_limit: {requests_per_second: 1, burst: 1}\n";
  DaemonProcess d(config);
  ASSERT_TRUE(d.serving()) << d.Log();
  // The burst. It is admitted after `first`, so the next token, the retry
  // point of the refusals below, is at least 1 s after `first`.
  const auto first = std::chrono::steady_clock::now();
  ASSERT_TRUE(Call(d, kAcmeKey, AddOne()).status.ok());
  std::vector<std::thread> calls;
  std::vector<Answer> answers(4);
  std::vector<double> seconds(4);  // from `first` to the answer
  for (int i = 0; i < 4; ++i) {
    calls.emplace_back([&, i] {
      answers[i] = Call(d, kAcmeKey, AddOne());
      seconds[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - first).count();
    });
  }
  for (std::thread& t : calls) t.join();
  int held = 0;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(answers[i].status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    // A held answer cannot leave before the retry point (less a
    // millisecond of the hint's rounding); the others are answered at once,
    // which on a loaded machine may also be late, hence at least 2. (This
    // counted from each call's own start before, so calls that started
    // late on a busy machine were held for less and not counted.)
    if (seconds[i] >= 0.999) ++held;
  }
  EXPECT_EQ(Metric(d, "fairserve_rejections_held_total"), 2);
  EXPECT_EQ(Metric(d, "fairserve_rejections_hold_overflow_total"), 2);
  EXPECT_GE(held, 2);  // the two held ones waited for the retry point
  EXPECT_EQ(Metric(d, "fairserve_rejections_held"), 0);
  // REST: refused at once, never held.
  httplib::Client http("127.0.0.1", d.http_port());
  httplib::Headers auth{{"Authorization", std::string("Bearer ") + kAcmeKey}};
  bool refused = false;
  for (int i = 0; i < 3 && !refused; ++i) {
    auto r = http.Post("/v2/models/add_one/infer", auth,
                       R"({"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,16],)"
                       R"("data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]})",
                       "application/json");
    ASSERT_TRUE(r);
    refused = r->status == 429;
  }
  EXPECT_TRUE(refused);
  EXPECT_EQ(Metric(d, "fairserve_rejections_held_total"), 2);
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

TEST(LimitsTest, FifoAndMaxQueueWait) {
  DaemonProcess d(LimitsConfig(", policy: fifo, max_queue_wait_s: 0.3", "", ""));
  ASSERT_TRUE(d.serving()) << d.Log();
  EXPECT_THAT(d.Log(), HasSubstr("scheduler on cpu: policy fifo"));
  // add_one resident first: otherwise its cold load (slow under ASan) can
  // outlast the held worker, and the request queues too late to expire.
  ASSERT_TRUE(Call(d, kGlobexKey, AddOne()).status.ok());
  std::future<Answer> running = Async(d, kAcmeKey, Slow(2000));
  ASSERT_TRUE(WaitFor([&] { return Running(d, "acme"); }));
  Answer waited = Call(d, kGlobexKey, AddOne());  // no deadline of its own
  EXPECT_EQ(waited.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << waited.status.error_message();
  EXPECT_TRUE(running.get().status.ok());
  // Only the call that loaded add_one ran; the one that waited too long did not.
  EXPECT_EQ(Metric(d, "tenant_samples_total{model_name=\"add_one\",tenant_id=\"globex\"}"), 1);
  // Both tenants are served once the worker is free.
  std::vector<std::future<Answer>> calls;
  for (int i = 0; i < 6; ++i) calls.push_back(Async(d, i % 2 ? kAcmeKey : kGlobexKey, AddOne()));
  for (auto& f : calls) EXPECT_TRUE(f.get().status.ok());
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace fairserve
