// The model cache in the real daemon: a tight budget, two tenants with
// private models; one cycles through more models than its quota holds.

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "fairserve/tenancy/api_key.h"
#include "inference/grpc_service.grpc.pb.h"
#include "integration/daemon_process.h"
#include "testing/process_util.h"

namespace fairserve {
namespace {

namespace fs = std::filesystem;
using namespace testing_util;
using inference::GRPCInferenceService;
using ::testing::HasSubstr;

constexpr char kModelConfig[] = R"(max_batch_size: 32
inputs: [{name: INPUT0, datatype: FP32, shape: [-1, 1024]}]
outputs: [{name: OUTPUT0, datatype: FP32, shape: [-1, 1024]}]
)";

// A repository of copies of mlp_large (16 MiB each): acme owns a1..a4,
// globex owns g1, and "huge" claims more than the whole budget.
std::string MakeRepository(const fs::path& root) {
  fs::create_directories(root);
  auto add = [&](const std::string& name, const std::string& extra) {
    fs::create_directories(root / name / "1");
    fs::copy_file(fs::path(TEST_MODELS_DIR) / "mlp_large" / "1" / "model.pt",
                  root / name / "1" / "model.pt", fs::copy_options::overwrite_existing);
    std::ofstream(root / name / "config.yaml") << kModelConfig << extra;
  };
  for (const char* m : {"a1", "a2", "a3", "a4"}) add(m, "owner: acme\n");
  add("g1", "owner: globex\n");
  add("huge", "memory_estimate: 1GiB\n");
  return root.string();
}

class Caller {
 public:
  Caller(const DaemonProcess& d, std::string key)
      : stub_(GRPCInferenceService::NewStub(
            grpc::CreateChannel(d.grpc_address(), grpc::InsecureChannelCredentials()))),
        key_(std::move(key)) {}
  grpc::Status Infer(const std::string& model) {
    inference::ModelInferRequest req = FloatRequest(model, std::vector<float>(1024), {1, 1024});
    grpc::ClientContext ctx;
    SetTestDeadline(&ctx);
    ctx.AddMetadata("x-api-key", key_);
    inference::ModelInferResponse resp;
    return stub_->ModelInfer(&ctx, req, &resp);
  }
  std::map<std::string, inference::RepositoryIndexResponse::ModelIndex> Index() {
    grpc::ClientContext ctx;
    SetTestDeadline(&ctx);
    ctx.AddMetadata("x-api-key", key_);
    inference::RepositoryIndexResponse resp;
    EXPECT_TRUE(stub_->RepositoryIndex(&ctx, {}, &resp).ok());
    std::map<std::string, inference::RepositoryIndexResponse::ModelIndex> out;
    for (const auto& m : resp.models()) out[m.name()] = m;
    return out;
  }

 private:
  std::unique_ptr<GRPCInferenceService::Stub> stub_;
  std::string key_;
};

TEST(ModelCacheDaemonTest, OneTenantsLoadStormNeverEvictsAnother) {
  char tmpl[] = "/tmp/fairserve-cache-repo-XXXXXX";
  std::string repo = MakeRepository(mkdtemp(tmpl));
  std::string config = TestConfigYaml(
      "  - id: admin_probe\n    api_keys: [\"" + HashApiKey("probe-key") + "\"]\n",
      "devices: [{name: cpu, memory_budget: 100MiB}]\n");
  // Quotas: acme 40 MiB (two of its models), globex 20 MiB (its one).
  config.replace(config.find("  - id: globex"), 0,
                 "    memory_limit: 40MiB\n    model_loads_per_second: 0\n");
  config.replace(config.find("    models: [add_one, mlp]"), 26, "    memory_limit: 20MiB\n");
  DaemonProcess d(config, {"--model-repository", repo});
  ASSERT_TRUE(d.serving()) << d.Log();

  Caller acme(d, kAcmeKey), globex(d, kGlobexKey), admin(d, "probe-key");
  ASSERT_TRUE(globex.Infer("g1").ok());
  std::atomic<bool> stop{false};
  std::atomic<int> globex_ok{0}, globex_failed{0};
  std::thread victim([&] {
    Caller g(d, kGlobexKey);
    while (!stop) (g.Infer("g1").ok() ? globex_ok : globex_failed)++;
  });
  int acme_failed = 0;
  for (int round = 0; round < 5; ++round) {
    for (const char* m : {"a1", "a2", "a3", "a4"}) acme_failed += !acme.Infer(m).ok();
  }
  stop = true;
  victim.join();
  EXPECT_EQ(acme_failed, 0);
  EXPECT_GT(globex_ok.load(), 0);
  EXPECT_EQ(globex_failed.load(), 0);

  // Another tenant's private model is refused, whatever the tenant's `models`.
  grpc::Status theirs = acme.Infer("g1");
  EXPECT_EQ(theirs.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(theirs.error_message(), HasSubstr("'acme' may not use model 'g1'"));

  auto index = acme.Index();  // acme sees its own models only
  EXPECT_EQ(index.count("g1"), 0u);
  int acme_resident = 0;
  for (const char* m : {"a1", "a2", "a3", "a4"}) acme_resident += index[m].state() == "READY";
  EXPECT_EQ(acme_resident, 2);  // its quota holds two
  EXPECT_EQ(globex.Index()["g1"].state(), "READY");

  // A model bigger than the whole budget.
  grpc::Status huge = acme.Infer("huge");
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(huge.error_message(), HasSubstr("more than the memory budget of cpu (100.0 MiB, devices[].memory_budget)"));
  // The accounting matches the resident models exactly.
  httplib::Client http("127.0.0.1", d.http_port());
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  std::string body = metrics->body;
  double resident = SumMetricIn(body, "fairserve_model_memory_bytes");
  double charged = SumMetricIn(body, "fairserve_memory_used_bytes");
  EXPECT_GT(resident, 0);
  EXPECT_EQ(resident, charged);
  EXPECT_THAT(body, HasSubstr("fairserve_memory_used_bytes{device=\"cpu\",partition=\"acme\"} 33587200"));
  EXPECT_THAT(d.Log(), HasSubstr("evicting model 'a"));
  EXPECT_THAT(d.Log(), ::testing::Not(HasSubstr("evicting model 'g1'")));

  // With a load budget, a thrashing tenant is held to it.
  std::string limited = config;
  limited.replace(limited.find("model_loads_per_second: 0"), 25, "model_loads_per_second: 1");
  auto reloads = [&d] { return testing_util::CountOccurrences(d.Log(), "config reloaded ("); };
  const int reloads_before = reloads();
  std::ofstream(d.dir() + "/config.yaml") << limited;
  kill(d.pid(), SIGHUP);
  // The file watch or the signal applies it, whichever comes first.
  ASSERT_TRUE(WaitFor([&] { return reloads() > reloads_before; }, 20)) << d.Log();
  int throttled = 0;
  for (int round = 0; round < 3; ++round) {
    for (const char* m : {"a1", "a2", "a3", "a4"}) {
      grpc::Status s = acme.Infer(m);
      if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
          s.error_message().find("model_loads_per_second") != std::string::npos) {
        ++throttled;
      }
    }
  }
  EXPECT_GE(throttled, 6);
  EXPECT_EQ(d.Stop(SIGTERM), 0);
  fs::remove_all(repo);
}

}  // namespace
}  // namespace fairserve
