// The bad-input matrix against the real daemon: every field of ModelInfer
// wrong in turn, plus bad metadata. Each gets the right status and a message
// naming the problem, the daemon stays up, and a second tenant sending valid
// requests all the while sees no failure.

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <limits>
#include <map>
#include <thread>

#include "inference/grpc_service.grpc.pb.h"
#include "integration/daemon_process.h"

namespace fairserve {
namespace {

using namespace testing_util;
using inference::ModelInferRequest;
using inference::ModelInferResponse;
using ::testing::HasSubstr;

struct Case {
  std::string what;
  std::function<void(ModelInferRequest*)> mutate;
  grpc::StatusCode code;
  std::string message;
};

// add_one: one FP32 input INPUT0 [-1, 16], max batch 64.
std::vector<Case> RequestCases() {
  constexpr int64_t kHuge = int64_t{1} << 62;
  auto in = [](ModelInferRequest* r) { return r->mutable_inputs(0); };
  auto to_typed = [](ModelInferRequest* r) { r->clear_raw_input_contents(); };
  return {
      {"empty request", [](ModelInferRequest* r) { r->Clear(); },
       grpc::StatusCode::INVALID_ARGUMENT, "model name is empty"},
      {"unknown model", [](ModelInferRequest* r) { r->set_model_name("no_such_model"); },
       grpc::StatusCode::NOT_FOUND, "no_such_model"},
      {"unknown version", [](ModelInferRequest* r) { r->set_model_version("99"); },
       grpc::StatusCode::NOT_FOUND, "99"},
      {"wrong datatype", [=](ModelInferRequest* r) { in(r)->set_datatype("INT8"); },
       grpc::StatusCode::INVALID_ARGUMENT, "datatype 'INT8' does not match the model's FP32"},
      {"unknown datatype", [=](ModelInferRequest* r) { in(r)->set_datatype("FP128"); },
       grpc::StatusCode::INVALID_ARGUMENT, "FP128"},
      {"wrong rank", [=](ModelInferRequest* r) { in(r)->add_shape(1); },
       grpc::StatusCode::INVALID_ARGUMENT, "has rank 3"},
      {"negative dimension", [=](ModelInferRequest* r) { in(r)->set_shape(0, -1); },
       grpc::StatusCode::INVALID_ARGUMENT, "-1"},
      {"huge dimension", [=](ModelInferRequest* r) { in(r)->set_shape(0, kHuge); },
       grpc::StatusCode::INVALID_ARGUMENT, "batch size"},
      {"product overflows int64",
       [=](ModelInferRequest* r) {
         in(r)->set_datatype("FP32");
         in(r)->clear_shape();
         for (int i = 0; i < 4; ++i) in(r)->add_shape(kHuge);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "INPUT0"},
      {"raw one byte short",
       [](ModelInferRequest* r) { r->mutable_raw_input_contents(0)->pop_back(); },
       grpc::StatusCode::INVALID_ARGUMENT, "holds 63 bytes, expected 64"},
      {"raw one byte long",
       [](ModelInferRequest* r) { r->mutable_raw_input_contents(0)->push_back('x'); },
       grpc::StatusCode::INVALID_ARGUMENT, "holds 65 bytes, expected 64"},
      {"raw and typed both",
       [=](ModelInferRequest* r) { in(r)->mutable_contents()->add_fp32_contents(1); },
       grpc::StatusCode::INVALID_ARGUMENT, "both contents and raw_input_contents"},
      {"more raw buffers than inputs",
       [](ModelInferRequest* r) { r->add_raw_input_contents("x"); },
       grpc::StatusCode::INVALID_ARGUMENT, "raw_input_contents"},
      {"typed contents of the wrong type",
       [=](ModelInferRequest* r) {
         to_typed(r);
         for (int i = 0; i < 16; ++i) in(r)->mutable_contents()->add_int_contents(i);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "INPUT0"},
      {"typed contents, wrong count",
       [=](ModelInferRequest* r) {
         to_typed(r);
         for (int i = 0; i < 15; ++i) in(r)->mutable_contents()->add_fp32_contents(i);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "15"},
      {"no contents at all", [=](ModelInferRequest* r) { to_typed(r); },
       grpc::StatusCode::INVALID_ARGUMENT, "INPUT0"},
      {"missing input",
       [](ModelInferRequest* r) {
         r->clear_inputs();
         r->clear_raw_input_contents();
       },
       grpc::StatusCode::INVALID_ARGUMENT, "request has no inputs"},
      {"duplicate input",
       [](ModelInferRequest* r) {
         *r->add_inputs() = r->inputs(0);
         r->add_raw_input_contents(r->raw_input_contents(0));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "given more than once"},
      {"unknown input", [=](ModelInferRequest* r) { in(r)->set_name("NOPE"); },
       grpc::StatusCode::INVALID_ARGUMENT, "NOPE"},
      {"unknown requested output", [](ModelInferRequest* r) { r->add_outputs()->set_name("NOPE"); },
       grpc::StatusCode::INVALID_ARGUMENT, "requested output 'NOPE' does not exist"},
      {"batch over the limit", [=](ModelInferRequest* r) {
         in(r)->set_shape(0, 65);
         r->set_raw_input_contents(0, std::string(65 * 64, '\0'));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "batch size 65 exceeds the maximum of 64"},
      {"negative timeout",
       [](ModelInferRequest* r) { (*r->mutable_parameters())["timeout"].set_int64_param(-5); },
       grpc::StatusCode::INVALID_ARGUMENT, "parameter 'timeout' must be >= 0 microseconds"},
      {"timeout that is not an integer",
       [](ModelInferRequest* r) { (*r->mutable_parameters())["timeout"].set_string_param("1s"); },
       grpc::StatusCode::INVALID_ARGUMENT, "parameter 'timeout' must be an integer"},
      {"message over the size limit",
       [](ModelInferRequest* r) { r->set_raw_input_contents(0, std::string(2 << 20, '\0')); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
  };
}

class HostileInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string config = TestConfigYaml();
    std::string server_end = "drain_timeout_s: 10}";
    config.replace(config.find(server_end), server_end.size(),
                   "drain_timeout_s: 10, max_message_bytes: 1MiB}");
    daemon_ = new DaemonProcess(config);
  }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(daemon_->serving()) << daemon_->Log(); }

  // A valid add_one request from a second tenant, in a loop, until stopped:
  // every answer must be OK.
  class Bystander {
   public:
    Bystander() : client_(*daemon_) {
      thread_ = std::thread([this] {
        while (!stop_) {
          grpc::Status s = client_.Infer(kGlobexKey);
          (s.ok() ? ok_ : failed_)++;
          if (!s.ok()) last_error_ = s.error_message();
        }
      });
    }
    void Finish() {
      WaitFor([this] { return ok_ + failed_ >= 20; });
      stop_ = true;
      thread_.join();
      EXPECT_EQ(failed_.load(), 0) << "the other tenant saw failures, last: " << last_error_;
      EXPECT_GE(ok_.load(), 20);
    }

   private:
    Client client_;
    std::atomic<bool> stop_{false};
    std::atomic<int> ok_{0}, failed_{0};
    std::string last_error_;
    std::thread thread_;
  };

  grpc::Status Call(const ModelInferRequest& req,
                    const std::multimap<std::string, std::string>& metadata) {
    auto stub = inference::GRPCInferenceService::NewStub(OwnConnection(daemon_->grpc_address()));
    grpc::ClientContext ctx;
    for (const auto& [k, v] : metadata) ctx.AddMetadata(k, v);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    ModelInferResponse resp;
    return stub->ModelInfer(&ctx, req, &resp);
  }

  static DaemonProcess* daemon_;
};

DaemonProcess* HostileInputTest::daemon_ = nullptr;

TEST_F(HostileInputTest, EveryBadFieldGetsAPreciseErrorAndHarmsNobody) {
  Bystander bystander;
  for (const Case& c : RequestCases()) {
    ModelInferRequest req = FloatRequest("add_one", RandomFloats(16, 7), {1, 16});
    c.mutate(&req);
    grpc::Status s = Call(req, {{"x-api-key", kAcmeKey}});
    EXPECT_EQ(s.error_code(), c.code) << c.what << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.what;
  }
  bystander.Finish();
  EXPECT_TRUE(Client(*daemon_).Infer(kAcmeKey).ok()) << "the daemon did not survive";
}

// now + INT64_MAX microseconds used to overflow (signed-overflow UB; a
// deadline in the past in practice). Such timeouts mean "no timeout".
TEST_F(HostileInputTest, HugeTimeoutsAreServed) {
  for (bool as_uint : {false, true}) {
    ModelInferRequest req = FloatRequest("add_one", RandomFloats(16, 7), {1, 16});
    auto& p = (*req.mutable_parameters())["timeout"];
    if (as_uint) {
      p.set_uint64_param(UINT64_MAX);
    } else {
      p.set_int64_param(INT64_MAX);
    }
    grpc::Status s = Call(req, {{"x-api-key", kAcmeKey}});
    EXPECT_TRUE(s.ok()) << (as_uint ? "uint64" : "int64") << ": " << s.error_message();
  }
}

TEST_F(HostileInputTest, BadMetadataIsUnauthenticatedAndHarmsNobody) {
  Bystander bystander;
  ModelInferRequest req = FloatRequest("add_one", RandomFloats(16, 7), {1, 16});
  const std::vector<std::multimap<std::string, std::string>> bad = {
      {},
      {{"authorization", ""}},
      {{"authorization", "Bearer"}},
      {{"authorization", "Bearer "}},
      {{"authorization", "Basic YWNtZTpkZW1v"}},
      {{"authorization", "bearer-acme-demo-key"}},
      {{"authorization", std::string("Bearer ") + kAcmeKey + "x"}},
      {{"authorization", std::string("Bearer ") + std::string(kAcmeKey).substr(1)}},
      {{"x-api-key", std::string(4000, 'k')}},
  };
  for (const auto& metadata : bad) {
    grpc::Status s = Call(req, metadata);
    std::string what = metadata.empty() ? "(none)" : metadata.begin()->second.substr(0, 40);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << what << ": "
                                                                  << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("missing or invalid API key")) << what;
    EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr(kAcmeKey))) << what;
  }
  // Headers beyond gRPC's metadata limit are refused by the transport; the
  // daemon never sees them and lives on.
  grpc::Status huge = Call(req, {{"x-api-key", kAcmeKey}, {"x-junk", std::string(1 << 20, 'j')}});
  EXPECT_FALSE(huge.ok());
  bystander.Finish();
  EXPECT_TRUE(Client(*daemon_).Infer(kAcmeKey).ok()) << "the daemon did not survive";
  EXPECT_THAT(daemon_->Log(), ::testing::Not(HasSubstr(kAcmeKey)));
}

TEST(AuthThrottleIntegrationTest, GuessingPeerIsThrottledThenRecovers) {
  std::string config = TestConfigYaml();
  std::string server_end = "drain_timeout_s: 10}";
  config.replace(config.find(server_end), server_end.size(),
                 "drain_timeout_s: 10, auth_failures_per_second: 2, auth_failure_burst: 5}");
  DaemonProcess d(config);
  ASSERT_TRUE(d.serving()) << d.Log();
  auto channel = grpc::CreateChannel(d.grpc_address(), grpc::InsecureChannelCredentials());
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  ModelInferRequest req = FloatRequest("add_one", RandomFloats(16, 7), {1, 16});
  auto call = [&](const std::string& key, std::string* retry_after = nullptr) {
    grpc::ClientContext ctx;
    SetTestDeadline(&ctx);
    ctx.AddMetadata("x-api-key", key);
    ModelInferResponse resp;
    grpc::Status s = stub->ModelInfer(&ctx, req, &resp);
    auto it = ctx.GetServerTrailingMetadata().find("retry-after-ms");
    if (retry_after && it != ctx.GetServerTrailingMetadata().end()) {
      *retry_after = std::string(it->second.data(), it->second.size());
    }
    return s;
  };
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(call("guess-" + std::to_string(i)).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  std::string retry_after;
  grpc::Status throttled = call("guess-5", &retry_after);
  EXPECT_EQ(throttled.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(throttled.error_message(), HasSubstr("too many failed authentications"));
  EXPECT_FALSE(retry_after.empty());
  // A guesser must not learn that a guess was right: the real key is refused too.
  EXPECT_EQ(call(kAcmeKey).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(WaitFor([&] { return call(kAcmeKey).ok(); }, 5));
  EXPECT_GE(Metric(d, "fairserve_auth_throttled_requests_total"), 2);
  EXPECT_THAT(d.Log(), ::testing::Not(HasSubstr(kAcmeKey)));
  EXPECT_THAT(d.Log(), ::testing::Not(HasSubstr("guess-")));
}

// Each failed login counts once, whatever the RPC: RepositoryIndex used to
// check for an admin key and then a tenant key, counting one wrong key twice.
// A call with no credentials at all guessed nothing and is not counted.
TEST(AuthThrottleIntegrationTest, EachWrongKeyCountsOnceAndMissingKeysNotAtAll) {
  std::string config = TestConfigYaml();
  std::string server_end = "drain_timeout_s: 10}";
  config.replace(config.find(server_end), server_end.size(),
                 "drain_timeout_s: 10, auth_failures_per_second: 0.1, auth_failure_burst: 5}");
  DaemonProcess d(config);
  ASSERT_TRUE(d.serving()) << d.Log();
  auto stub = inference::GRPCInferenceService::NewStub(
      grpc::CreateChannel(d.grpc_address(), grpc::InsecureChannelCredentials()));
  auto index = [&](const std::string& key) {
    grpc::ClientContext ctx;
    if (!key.empty()) ctx.AddMetadata("x-api-key", key);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    inference::RepositoryIndexRequest req;
    inference::RepositoryIndexResponse resp;
    return stub->RepositoryIndex(&ctx, req, &resp).error_code();
  };
  for (int i = 0; i < 20; ++i) EXPECT_EQ(index(""), grpc::StatusCode::UNAUTHENTICATED) << i;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(index("guess-" + std::to_string(i)), grpc::StatusCode::UNAUTHENTICATED) << i;
  }
  EXPECT_EQ(index("guess-5"), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

}  // namespace
}  // namespace fairserve
