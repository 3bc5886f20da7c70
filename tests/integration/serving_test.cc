// End to end: the real daemon binary, a real gRPC client, the test models.

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <torch/script.h>

#include <cstring>
#include <random>
#include <thread>

#include "fairserve/models/executor.h"
#include "fairserve/admin/v1/admin.grpc.pb.h"
#include "inference/grpc_service.grpc.pb.h"
#include "fairserve/tenancy/api_key.h"
#include "integration/daemon_process.h"

namespace fairserve {
namespace {

using namespace testing_util;
using inference::GRPCInferenceService;
using inference::ModelInferRequest;
using inference::ModelInferResponse;
using ::testing::HasSubstr;

std::vector<float> OutputFloats(const ModelInferResponse& resp, int i = 0) {
  const std::string& raw = resp.raw_output_contents(i);
  std::vector<float> v(raw.size() / sizeof(float));
  std::memcpy(v.data(), raw.data(), raw.size());
  return v;
}

class ServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new DaemonProcess(TestConfigYaml());
    ASSERT_TRUE(daemon_->serving()) << daemon_->Log();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(256 << 20);
    channel_ = new std::shared_ptr<grpc::Channel>(grpc::CreateCustomChannel(
        daemon_->grpc_address(), grpc::InsecureChannelCredentials(), args));
  }
  static void TearDownTestSuite() {
    // The channel first: gRPC's graceful shutdown waits (about 5 s) for a
    // connected client to hang up after its GOAWAY.
    delete channel_;
    EXPECT_EQ(daemon_->Stop(SIGTERM), 0) << daemon_->Log();
    delete daemon_;
  }

  std::unique_ptr<GRPCInferenceService::Stub> stub() { return GRPCInferenceService::NewStub(*channel_); }

  grpc::Status Infer(const ModelInferRequest& req, ModelInferResponse* resp,
                     const std::string& key = kAcmeKey, const std::string& header = "authorization") {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!key.empty()) ctx.AddMetadata(header, header == "authorization" ? "Bearer " + key : key);
    return stub()->ModelInfer(&ctx, req, resp);
  }

  // In-process reference: the same model.pt through libtorch directly.
  static torch::Tensor Reference(const std::string& model, const std::vector<float>& data,
                                 std::vector<int64_t> shape) {
    torch::jit::Module m = torch::jit::load(std::string(TEST_MODELS_DIR) + "/" + model + "/1/model.pt");
    m.eval();
    c10::InferenceMode guard;
    torch::Tensor x = torch::from_blob(const_cast<float*>(data.data()), shape, torch::kFloat32).clone();
    return m.forward({x}).toTensor().contiguous();
  }

  static DaemonProcess* daemon_;
  static std::shared_ptr<grpc::Channel>* channel_;
};

DaemonProcess* ServingTest::daemon_ = nullptr;
std::shared_ptr<grpc::Channel>* ServingTest::channel_ = nullptr;

TEST_F(ServingTest, HealthEndpoints) {
  grpc::ClientContext c1, c2, c3;
  SetTestDeadline(&c1);
  SetTestDeadline(&c2);
  SetTestDeadline(&c3);
  inference::ServerLiveResponse live;
  ASSERT_TRUE(stub()->ServerLive(&c1, {}, &live).ok());
  EXPECT_TRUE(live.live());
  inference::ServerReadyResponse ready;
  ASSERT_TRUE(stub()->ServerReady(&c2, {}, &ready).ok());
  EXPECT_TRUE(ready.ready());
  inference::ServerMetadataResponse meta;
  ASSERT_TRUE(stub()->ServerMetadata(&c3, {}, &meta).ok());
  EXPECT_EQ(meta.name(), "fairserve");
}

TEST_F(ServingTest, ModelMetadataAndReady) {
  grpc::ClientContext ctx;
  SetTestDeadline(&ctx);
  ctx.AddMetadata("authorization", std::string("Bearer ") + kAcmeKey);
  inference::ModelMetadataRequest req;
  req.set_name("mlp");
  inference::ModelMetadataResponse resp;
  ASSERT_TRUE(stub()->ModelMetadata(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.platform(), "pytorch_libtorch");
  ASSERT_EQ(resp.inputs_size(), 1);
  EXPECT_EQ(resp.inputs(0).name(), "INPUT0");
  EXPECT_THAT(resp.inputs(0).shape(), ::testing::ElementsAre(-1, 64));
  EXPECT_THAT(resp.versions(), ::testing::ElementsAre("1"));

  // Ready means "can serve you now", resident or loaded on first use; a
  // model whose load failed is not.
  ModelInferResponse infer;
  ASSERT_TRUE(Infer(FloatRequest("mlp", RandomFloats(64, 3), {1, 64}), &infer).ok());
  EXPECT_EQ(Infer(FloatRequest("corrupt", RandomFloats(4, 3), {1, 4}), &infer).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  grpc::ClientContext c2, c3;
  SetTestDeadline(&c2);
  SetTestDeadline(&c3);
  c2.AddMetadata("x-api-key", kAcmeKey);
  c3.AddMetadata("x-api-key", kAcmeKey);
  inference::ModelReadyRequest rr;
  rr.set_name("mlp");
  inference::ModelReadyResponse ready;
  ASSERT_TRUE(stub()->ModelReady(&c2, rr, &ready).ok());
  EXPECT_TRUE(ready.ready());
  rr.set_name("corrupt");
  ASSERT_TRUE(stub()->ModelReady(&c3, rr, &ready).ok());
  EXPECT_FALSE(ready.ready());
}

TEST_F(ServingTest, AddOneRawAndTyped) {
  std::vector<float> x = RandomFloats(3 * 16, 1);
  ModelInferResponse resp;
  grpc::Status s = Infer(FloatRequest("add_one", x, {3, 16}), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.model_name(), "add_one");
  EXPECT_EQ(resp.model_version(), "1");
  EXPECT_EQ(resp.id(), "req-42");
  ASSERT_EQ(resp.outputs_size(), 1);
  EXPECT_EQ(resp.outputs(0).name(), "OUTPUT0");
  EXPECT_EQ(resp.outputs(0).datatype(), "FP32");
  EXPECT_THAT(resp.outputs(0).shape(), ::testing::ElementsAre(3, 16));
  std::vector<float> y = OutputFloats(resp);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(y[i], x[i] + 1.0f);

  ModelInferRequest typed = FloatRequest("add_one", x, {3, 16});
  typed.clear_raw_input_contents();
  for (float f : x) typed.mutable_inputs(0)->mutable_contents()->add_fp32_contents(f);
  ModelInferResponse resp2;
  ASSERT_TRUE(Infer(typed, &resp2, kGlobexKey, "x-api-key").ok());
  EXPECT_EQ(OutputFloats(resp2), y);
}

TEST_F(ServingTest, AccessLogLineWithoutTheKey) {
  ModelInferRequest req = FloatRequest("add_one", RandomFloats(32, 9), {2, 16});
  req.set_id("access-log-probe");
  ModelInferResponse resp;
  ASSERT_TRUE(Infer(req, &resp).ok());
  // The access log writes in chunks, every 20 ms under load.
  std::string log;
  for (int i = 0; i < 500 && log.find("id=access-log-probe") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    log = daemon_->Log();
  }
  EXPECT_THAT(log, HasSubstr("access tenant=acme model=add_one version=1 id=access-log-probe "
                             "status=ok rows=2 batch=2"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kAcmeKey)));
}

// Sequential tiny calls on an idle server: once add_one's cost is measured
// (below scheduler.run_on_caller_below_us), its batches run on the call's
// own gRPC thread, and the answers are the same.
TEST_F(ServingTest, TinyCallsRunOnTheirOwnThreadOnceMeasured) {
  const std::string series = "fairserve_batches_run_on_caller_total";
  const double before = Metric(*daemon_, series);
  for (int i = 0; i < 200; ++i) {
    std::vector<float> x = RandomFloats(16, 100 + i);
    ModelInferResponse resp;
    ASSERT_TRUE(Infer(FloatRequest("add_one", x, {1, 16}), &resp).ok());
    std::vector<float> y = OutputFloats(resp);
    for (size_t j = 0; j < x.size(); ++j) ASSERT_EQ(y[j], x[j] + 1.0f);
  }
  EXPECT_GT(Metric(*daemon_, series), before);
}

TEST_F(ServingTest, NumericsMatchInProcessLibtorch) {
  for (const auto& [model, width] : std::vector<std::pair<std::string, int>>{
           {"mlp", 64}, {"mlp_large", 1024}}) {
    std::vector<float> x = RandomFloats(5 * width, 7);
    ModelInferResponse resp;
    grpc::Status s = Infer(FloatRequest(model, x, {5, width}), &resp);
    ASSERT_TRUE(s.ok()) << model << ": " << s.error_message();
    torch::Tensor ref = Reference(model, x, {5, width});
    std::vector<float> got = OutputFloats(resp);
    ASSERT_EQ(got.size(), static_cast<size_t>(ref.numel())) << model;
    const float* want = ref.data_ptr<float>();
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-5f * std::max(1.0f, std::abs(want[i])))
          << model << " element " << i;
    }
  }
}

TEST_F(ServingTest, MultipleInputsOutputsAndSubset) {
  ModelInferRequest req;
  req.set_model_name("two_in_out");
  auto* a = req.add_inputs();
  a->set_name("A");
  a->set_datatype("FP32");
  a->add_shape(1);
  a->add_shape(4);
  for (float f : {1.f, 2.f, 3.f, 4.f}) a->mutable_contents()->add_fp32_contents(f);
  auto* b = req.add_inputs();
  b->set_name("B");
  b->set_datatype("INT32");
  b->add_shape(1);
  b->add_shape(4);
  for (int v : {10, 20, 30, 40}) b->mutable_contents()->add_int_contents(v);
  ModelInferResponse resp;
  ASSERT_TRUE(Infer(req, &resp).ok());
  ASSERT_EQ(resp.outputs_size(), 2);
  EXPECT_THAT(OutputFloats(resp, 0), ::testing::ElementsAre(11, 22, 33, 44));
  EXPECT_EQ(resp.outputs(1).datatype(), "FP64");
  double d[4];
  std::memcpy(d, resp.raw_output_contents(1).data(), sizeof(d));
  EXPECT_EQ(d[3], 8.0);

  req.add_outputs()->set_name("DOUBLE");
  ModelInferResponse only;
  ASSERT_TRUE(Infer(req, &only).ok());
  ASSERT_EQ(only.outputs_size(), 1);
  EXPECT_EQ(only.outputs(0).name(), "DOUBLE");
}

TEST_F(ServingTest, AuthenticationAndAccessErrors) {
  ModelInferRequest req = FloatRequest("add_one", RandomFloats(16, 1), {1, 16});
  ModelInferResponse resp;
  grpc::Status none = Infer(req, &resp, "");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status wrong = Infer(req, &resp, "acme-demo-kex");
  EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // The same message whatever was wrong: no hint which part failed.
  EXPECT_EQ(none.error_message(), wrong.error_message());
  EXPECT_THAT(wrong.error_message(), ::testing::Not(HasSubstr("acme")));
  grpc::ClientContext ctx;
  SetTestDeadline(&ctx);
  ctx.AddMetadata("authorization", "Basic YWNtZTpwdw==");
  EXPECT_EQ(stub()->ModelInfer(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);

  grpc::Status denied = Infer(FloatRequest("mlp_large", RandomFloats(1024, 1), {1, 1024}), &resp,
                              kGlobexKey);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(denied.error_message(), HasSubstr("'globex' may not use model 'mlp_large'"));

  grpc::Status unknown = Infer(FloatRequest("no_such_model", {}, {1}), &resp);
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  ModelInferRequest v = req;
  v.set_model_version("9");
  EXPECT_EQ(Infer(v, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Infer(FloatRequest("corrupt", RandomFloats(4, 1), {1, 4}), &resp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ServingTest, ValidationErrorsAreInvalidArgument) {
  ModelInferResponse resp;
  struct Case {
    std::string what;
    std::function<void(ModelInferRequest*)> mutate;
    std::string message;
  };
  std::vector<Case> cases = {
      {"dtype", [](ModelInferRequest* r) { r->mutable_inputs(0)->set_datatype("FP64"); },
       "datatype 'FP64' does not match the model's FP32"},
      {"rank", [](ModelInferRequest* r) { r->mutable_inputs(0)->add_shape(1); }, "has rank 3"},
      {"fixed dim", [](ModelInferRequest* r) { r->mutable_inputs(0)->set_shape(1, 15); },
       "dimension 1 is 15, expected 16"},
      {"batch", [](ModelInferRequest* r) { r->mutable_inputs(0)->set_shape(0, 65); },
       "batch size 65 exceeds the maximum of 64"},
      {"raw length",
       [](ModelInferRequest* r) { r->mutable_raw_input_contents(0)->push_back('x'); },
       "holds 65 bytes, expected 64"},
      {"both",
       [](ModelInferRequest* r) { r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); },
       "both contents and raw_input_contents"},
      {"missing",
       [](ModelInferRequest* r) {
         r->clear_inputs();
         r->clear_raw_input_contents();
       },
       "request has no inputs"},
      {"duplicate",
       [](ModelInferRequest* r) {
         *r->add_inputs() = r->inputs(0);
         r->add_raw_input_contents(r->raw_input_contents(0));
       },
       "given more than once"},
      {"unknown output", [](ModelInferRequest* r) { r->add_outputs()->set_name("NOPE"); },
       "requested output 'NOPE' does not exist"},
  };
  for (const Case& c : cases) {
    ModelInferRequest req = FloatRequest("add_one", RandomFloats(16, 3), {1, 16});
    c.mutate(&req);
    grpc::Status s = Infer(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.what;
  }
}

TEST_F(ServingTest, FaultyModelFailsOnlyTheBadRequest) {
  // Many concurrent requests so some share batches with the bad one.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, invalid{0}, other{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        bool bad = (t == 0 && i % 3 == 0);
        std::vector<float> x = {1, 2, bad ? -1.f : 3.f, 4};
        ModelInferResponse resp;
        grpc::Status s = Infer(FloatRequest("faulty", x, {1, 4}), &resp);
        if (s.ok() && !bad && OutputFloats(resp)[2] == 6.f) {
          ++ok;
        } else if (bad && s.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
                   s.error_message().find("negative input") != std::string::npos) {
          ++invalid;
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(invalid.load(), 4);
  EXPECT_EQ(ok.load(), 76);
  EXPECT_EQ(other.load(), 0);
}

TEST_F(ServingTest, OutOfMemoryFailsOnlyThatBatchAndTheServerLivesOn) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, exhausted{0}, other{0};
  std::mutex mu;
  std::string unexpected;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        bool hog = (t == 0 && i % 5 == 0);
        ModelInferResponse resp;
        grpc::Status s = Infer(FloatRequest("memory_hog", {1, 2, hog ? 5000.f : 3.f, 4}, {1, 4}),
                               &resp);
        if (s.ok() && !hog && OutputFloats(resp)[2] == 6.f) {
          ++ok;
        } else if (hog && s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
                   s.error_message().find("ran out of memory") != std::string::npos) {
          ++exhausted;
        } else {
          ++other;
          std::lock_guard<std::mutex> lock(mu);
          unexpected = std::to_string(s.error_code()) + " " + s.error_message();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(exhausted.load(), 2);
  EXPECT_EQ(ok.load(), 38);
  EXPECT_EQ(other.load(), 0) << unexpected;
}

TEST_F(ServingTest, ModelReturningWrongTypeOrShapeIsInternal) {
  ModelInferResponse resp;
  grpc::Status dtype = Infer(FloatRequest("wrong_dtype", {1, 2, 3, 4}, {1, 4}), &resp);
  EXPECT_EQ(dtype.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(dtype.error_message(), HasSubstr("config declares FP32"));
  grpc::Status shape = Infer(FloatRequest("wrong_shape", {1, 2, 3, 4}, {1, 4}), &resp);
  EXPECT_EQ(shape.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(shape.error_message(), HasSubstr("with shape [1, 3]"));
}

TEST_F(ServingTest, TimeoutParameterExpiresQueuedRequest) {
  ModelInferRequest req = FloatRequest("add_one", RandomFloats(16, 1), {1, 16});
  (*req.mutable_parameters())["timeout"].set_int64_param(1);  // 1 µs
  ModelInferResponse resp;
  grpc::Status s = Infer(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
}

TEST_F(ServingTest, ConcurrentTenantsAllSucceed) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      const std::string key = t % 2 ? kAcmeKey : kGlobexKey;
      for (int i = 0; i < 30; ++i) {
        std::vector<float> x = RandomFloats(2 * 64, t * 100 + i);
        ModelInferResponse resp;
        grpc::Status s = Infer(FloatRequest("mlp", x, {2, 64}), &resp, key);
        if (!s.ok() || OutputFloats(resp).size() != 20) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// One tenant floods far past its rate limit; another tenant's requests all
// succeed, and the flooder is told when to come back.
TEST(FloodTest, FlooderIsThrottledOthersUnaffected) {
  std::string flood_tenant = std::string("  - id: flood\n    api_keys: [\"") +
                             HashApiKey("flood-key") +
                             "\"]\n    rate_limit: {requests_per_second: 20, burst: 5}\n";
  DaemonProcess daemon(TestConfigYaml(flood_tenant));
  ASSERT_TRUE(daemon.serving()) << daemon.Log();
  auto channel = grpc::CreateChannel(daemon.grpc_address(), grpc::InsecureChannelCredentials());
  auto stub = GRPCInferenceService::NewStub(channel);
  std::atomic<bool> stop{false};
  std::atomic<int> flood_ok{0}, flood_exhausted{0}, flood_other{0}, hints{0};
  std::vector<std::thread> flooders;
  for (int t = 0; t < 4; ++t) {
    flooders.emplace_back([&] {
      ModelInferRequest req = FloatRequest("add_one", RandomFloats(16, 1), {1, 16});
      while (!stop) {
        grpc::ClientContext ctx;
        SetTestDeadline(&ctx);
        ctx.AddMetadata("authorization", "Bearer flood-key");
        ModelInferResponse resp;
        grpc::Status s = stub->ModelInfer(&ctx, req, &resp);
        if (s.ok()) {
          ++flood_ok;
        } else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++flood_exhausted;
          auto it = ctx.GetServerTrailingMetadata().find("retry-after-ms");
          if (it != ctx.GetServerTrailingMetadata().end() && std::stoi(std::string(
              it->second.data(), it->second.size())) > 0 &&
              s.error_message().find("rate limit") != std::string::npos) {
            ++hints;
          }
        } else {
          ++flood_other;
        }
      }
    });
  }
  int victim_ok = 0, victim_failed = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) {
    grpc::ClientContext ctx;
    SetTestDeadline(&ctx);
    ctx.AddMetadata("authorization", std::string("Bearer ") + kAcmeKey);
    ModelInferResponse resp;
    std::vector<float> x = RandomFloats(64, i);
    grpc::Status s = stub->ModelInfer(&ctx, FloatRequest("mlp", x, {1, 64}), &resp);
    (s.ok() ? victim_ok : victim_failed)++;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  for (auto& t : flooders) t.join();
  EXPECT_EQ(victim_ok, 50);
  EXPECT_EQ(victim_failed, 0);
  EXPECT_GT(flood_exhausted.load(), 100);
  EXPECT_EQ(hints.load(), flood_exhausted.load());
  EXPECT_EQ(flood_other.load(), 0);
  // Admitted: the burst plus 20/s, with slack for timing.
  EXPECT_LE(flood_ok.load(), 5 + 20 * seconds * 1.5 + 5);
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
}

TEST(AdminServiceTest, UsageAndInvoicesRespectWhoAsks) {
  // Add an admin key to the test config's server line.
  std::string config = TestConfigYaml();
  config.replace(config.find("drain_timeout_s: 10}"), 20,
                 "drain_timeout_s: 10, admin_api_keys: [\"" + HashApiKey("admin-key") + "\"]}");
  DaemonProcess daemon(config);
  ASSERT_TRUE(daemon.serving()) << daemon.Log();
  auto channel = grpc::CreateChannel(daemon.grpc_address(), grpc::InsecureChannelCredentials());
  auto infer = GRPCInferenceService::NewStub(channel);
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    SetTestDeadline(&ctx);
    ctx.AddMetadata("x-api-key", kAcmeKey);
    ModelInferResponse resp;
    ASSERT_TRUE(infer->ModelInfer(&ctx, FloatRequest("mlp", RandomFloats(128, i), {2, 64}), &resp).ok());
  }
  auto adminstub = fairserve::admin::v1::Admin::NewStub(channel);
  auto invoice = [&](const std::string& key, const std::string& tenant,
                     fairserve::admin::v1::GetInvoiceResponse* resp) {
    grpc::ClientContext ctx;
    SetTestDeadline(&ctx);
    if (!key.empty()) ctx.AddMetadata("x-api-key", key);
    fairserve::admin::v1::GetInvoiceRequest req;
    req.set_tenant_id(tenant);
    return adminstub->GetInvoice(&ctx, req, resp);
  };
  fairserve::admin::v1::GetInvoiceResponse own, other, by_admin;
  ASSERT_TRUE(invoice(kAcmeKey, "", &own).ok());
  EXPECT_EQ(own.tenant_id(), "acme");
  EXPECT_EQ(own.requests(), 3);
  EXPECT_GT(own.compute_seconds(), 0);
  EXPECT_EQ(invoice(kAcmeKey, "globex", &other).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(invoice("", "acme", &other).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(invoice("admin-key", "acme", &by_admin).ok());
  EXPECT_EQ(by_admin.requests(), 3);
  EXPECT_EQ(invoice("admin-key", "", &other).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // GetUsage: a tenant key reads its own rows only.
  auto usage = [&](const std::string& key, const std::string& tenant,
                   fairserve::admin::v1::GetUsageResponse* resp, std::string* retry = nullptr) {
    grpc::ClientContext ctx;
    SetTestDeadline(&ctx);
    ctx.AddMetadata("x-api-key", key);
    fairserve::admin::v1::GetUsageRequest req;
    req.set_tenant_id(tenant);
    grpc::Status s = adminstub->GetUsage(&ctx, req, resp);
    auto it = ctx.GetServerTrailingMetadata().find("retry-after-ms");
    if (retry && it != ctx.GetServerTrailingMetadata().end()) {
      *retry = std::string(it->second.data(), it->second.size());
    }
    return s;
  };
  fairserve::admin::v1::GetUsageResponse rows;
  ASSERT_TRUE(usage(kAcmeKey, "", &rows).ok());
  ASSERT_GT(rows.rows_size(), 0);
  for (const auto& r : rows.rows()) EXPECT_EQ(r.tenant_id(), "acme");
  EXPECT_EQ(usage(kAcmeKey, "globex", &rows).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(usage(kGlobexKey, "acme", &rows).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // A tenant's reads are rate limited (2/s, burst 10; 5 of acme's are spent
  // above); an admin's are not.
  grpc::Status limited;
  std::string retry;
  for (int i = 0; i < 12 && limited.ok(); ++i) limited = usage(kAcmeKey, "", &rows, &retry);
  EXPECT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(limited.error_message(), HasSubstr("reads its usage too often"));
  EXPECT_FALSE(retry.empty());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(usage("admin-key", "acme", &rows).ok()) << i;

  grpc::ClientContext c1, c2;
  SetTestDeadline(&c1);
  SetTestDeadline(&c2);
  c1.AddMetadata("x-api-key", "admin-key");
  fairserve::admin::v1::ListTenantsResponse tenants;
  ASSERT_TRUE(adminstub->ListTenants(&c1, {}, &tenants).ok());
  EXPECT_EQ(tenants.tenants_size(), 2);
  c2.AddMetadata("x-api-key", kAcmeKey);
  EXPECT_EQ(adminstub->ListTenants(&c2, {}, &tenants).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(daemon.Stop(SIGTERM), 0);
}

TEST(DaemonStartupTest, BadFlagValueIsAUsageError) {
  DaemonProcess d(TestConfigYaml(), {"--http-port=70000"});
  EXPECT_FALSE(d.serving());
  EXPECT_EQ(d.WaitExit(30), 2);
  EXPECT_THAT(d.Log(), HasSubstr("--http-port: Value 70000 not in range -1 to 65535"));
}

TEST(DaemonStartupTest, BadConfigFailsWithMessage) {
  DaemonProcess d(TestConfigYaml("", "colour: blue\n"));
  EXPECT_FALSE(d.serving());
  EXPECT_EQ(d.WaitExit(30), 1);
  EXPECT_THAT(d.Log(), HasSubstr("colour: unknown key"));
}

TEST(DaemonStartupTest, PortInUseFailsWithMessage) {
  DaemonProcess first(TestConfigYaml());
  ASSERT_TRUE(first.serving()) << first.Log();
  DaemonProcess second(TestConfigYaml(), {"--grpc-port", std::to_string(first.grpc_port())});
  EXPECT_FALSE(second.serving());
  EXPECT_EQ(second.WaitExit(30), 1);
  EXPECT_THAT(second.Log(), HasSubstr("port in use"));
  EXPECT_EQ(first.Stop(SIGTERM), 0);
}

// A configured GPU this build or machine cannot use is a start-up error
// naming the device and why, never a silent fallback to the CPU.
TEST(DaemonStartupTest, UnavailableGpuDeviceFailsWithMessage) {
  DaemonProcess d(TestConfigYaml("", "devices: [{name: cpu}, {name: cuda:99, memory_budget: 1GiB}]\n"));
  EXPECT_FALSE(d.serving());
  EXPECT_EQ(d.WaitExit(30), 1);
  EXPECT_THAT(d.Log(), HasSubstr("device cuda:99 is not available: "));
  if (!BuiltWithCuda()) {
    EXPECT_THAT(d.Log(), HasSubstr("built against a CPU-only libtorch"));
  }
  EXPECT_THAT(d.Log(), HasSubstr("remove it from devices or run where it exists"));
}

TEST(DaemonStartupTest, MissingRepositoryFails) {
  // --flag=value works as --flag value does.
  DaemonProcess d(TestConfigYaml(), {"--model-repository=/nonexistent/models"});
  EXPECT_EQ(d.WaitExit(30), 1);
  EXPECT_THAT(d.Log(), HasSubstr("is not a readable directory"));
}

}  // namespace
}  // namespace fairserve
