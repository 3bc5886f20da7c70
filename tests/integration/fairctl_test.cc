// The fairctl binary as an operator runs it: output, files and exit codes.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "fairserve/tenancy/api_key.h"
#include "testing/process_util.h"
#include "testing/test_dir.h"
#include "yaml-cpp/yaml.h"

namespace fairserve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

testing_util::CommandRun Fairctl(const std::string& args) {
  return testing_util::RunCommand(std::string(FAIRCTL_BIN) + " " + args);
}

class FairctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing_util::MakeTestDir("fairctl-test");
    std::ofstream(dir_ / "config.yaml")
        << "devices: [{name: cpu, memory_budget: 1GiB}]\n"
        << "tenants:\n"
        << "  - id: acme_corp\n    api_keys: [\"" << HashApiKey("k1") << "\"]\n"
        << "    memory_share_percent: 25\n"
        << "    kubernetes: {gpus: 4, cpu: \"16\", memory: 64Gi, pods: 30,\n"
        << "                 max_gpus_per_container: 2, default_gpus_per_container: 1}\n"
        << "  - id: globex\n    api_keys: [\"" << HashApiKey("k2") << "\"]\n"
        << "    memory_limit: 128MiB\n    rate_limit: {requests_per_second: 50, burst: 10}\n";
  }
  void TearDown() override { testing_util::RemoveTestDir(dir_); }
  std::string Config() { return (dir_ / "config.yaml").string(); }
  fs::path dir_;
};

TEST_F(FairctlTest, KeysAndValidation) {
  testing_util::CommandRun h = Fairctl("hash-key acme-demo-key");
  EXPECT_EQ(h.code, 0);
  EXPECT_EQ(h.out, HashApiKey("acme-demo-key") + "\n");
  testing_util::CommandRun k = Fairctl("new-key");
  EXPECT_EQ(k.code, 0);
  EXPECT_THAT(k.out, HasSubstr("hash: sha256:"));

  EXPECT_EQ(Fairctl("validate " + Config()).code, 0);
  std::ofstream(dir_ / "bad.yaml") << "tenants:\n  - id: x\n    api_keys: [plain]\n    wieght: 2\n";
  testing_util::CommandRun bad = Fairctl("validate " + (dir_ / "bad.yaml").string());
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.out, HasSubstr("bad.yaml:3:16: tenants[0].api_keys[0]"));
  EXPECT_THAT(bad.out, HasSubstr("bad.yaml:4:5: tenants[0].wieght: unknown key"));

  // A tenant naming a model the repository lacks.
  fs::create_directories(dir_ / "repo" / "mlp");
  std::ofstream(dir_ / "repo" / "mlp" / "config.yaml") << "max_batch_size: 1\n";
  std::ofstream(dir_ / "models.yaml") << "model_repository: repo\ntenants:\n  - id: x\n"
                                      << "    api_keys: [\"" << HashApiKey("k") << "\"]\n"
                                      << "    models: [mlp, mlpp]\n";
  testing_util::CommandRun unknown = Fairctl("validate " + (dir_ / "models.yaml").string());
  EXPECT_EQ(unknown.code, 1);
  EXPECT_THAT(unknown.out, HasSubstr("tenants[0] (x).models: unknown model 'mlpp'"));
}

TEST_F(FairctlTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Fairctl("").code, 2);
  EXPECT_EQ(Fairctl("frobnicate").code, 2);
  EXPECT_EQ(Fairctl("k8s render --config " + Config()).code, 2);  // no --out
  EXPECT_EQ(Fairctl("invoice --data-dir /tmp").code, 2);          // no --tenant
  testing_util::CommandRun help = Fairctl("--help");
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.out, HasSubstr("k8s"));
  EXPECT_THAT(help.out, HasSubstr("exit codes: 0 success, 1 failure, 2 usage error"));
  testing_util::CommandRun render_help = Fairctl("k8s render --help");
  EXPECT_EQ(render_help.code, 0);
  EXPECT_THAT(render_help.out, HasSubstr("--out DIR"));
  // A bad value is one line naming the flag, never an exception's text.
  testing_util::CommandRun bad_date = Fairctl("usage --data-dir /tmp --from=yesterday");
  EXPECT_EQ(bad_date.code, 2);
  EXPECT_THAT(bad_date.out, HasSubstr("--from: 'yesterday' is not a date; use YYYY-MM-DD"));
  testing_util::CommandRun bad_format =
      Fairctl("invoice --data-dir /tmp --tenant acme --format xml");
  EXPECT_EQ(bad_format.code, 2);
  EXPECT_THAT(bad_format.out, HasSubstr("--format: xml not in {table,json,csv}"));
}

// Flags take "--flag value" and "--flag=value" alike.
TEST_F(FairctlTest, FlagsTakeEitherForm) {
  testing_util::CommandRun spaced = Fairctl("tenants --config " + Config());
  testing_util::CommandRun joined = Fairctl("tenants --config=" + Config());
  EXPECT_EQ(joined.code, 0) << joined.out;
  EXPECT_EQ(joined.out, spaced.out);
}

TEST_F(FairctlTest, TenantsAndPartitions) {
  testing_util::CommandRun t = Fairctl("tenants --config " + Config());
  EXPECT_EQ(t.code, 0);
  EXPECT_THAT(t.out, HasSubstr("globex"));
  EXPECT_THAT(t.out, HasSubstr("128.0 MiB"));
  testing_util::CommandRun p = Fairctl("partitions --config " + Config());
  EXPECT_EQ(p.code, 0);
  EXPECT_THAT(p.out, HasSubstr("cpu        acme_corp          25.00% 268435456 (256.0 MiB)"));
  EXPECT_THAT(p.out, HasSubstr("cpu        globex             12.50% 134217728 (128.0 MiB)"));
  EXPECT_THAT(p.out, HasSubstr("(shared pool)      62.50% 671088640"));
}

TEST_F(FairctlTest, K8sRenderFieldByField) {
  fs::path out = dir_ / "k8s";
  testing_util::CommandRun r = Fairctl("k8s render --config " + Config() + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<YAML::Node> docs = YAML::LoadAllFromFile((out / "tenant-acme-corp.yaml").string());
  ASSERT_EQ(docs.size(), 3u);
  const YAML::Node& ns = docs[0];
  EXPECT_EQ(ns["apiVersion"].as<std::string>(), "v1");
  EXPECT_EQ(ns["kind"].as<std::string>(), "Namespace");
  EXPECT_EQ(ns["metadata"]["name"].as<std::string>(), "tenant-acme-corp");
  EXPECT_EQ(ns["metadata"]["labels"]["tenant"].as<std::string>(), "acme_corp");

  const YAML::Node& quota = docs[1];
  EXPECT_EQ(quota["kind"].as<std::string>(), "ResourceQuota");
  EXPECT_EQ(quota["metadata"]["namespace"].as<std::string>(), "tenant-acme-corp");
  const YAML::Node hard = quota["spec"]["hard"];
  EXPECT_EQ(hard["requests.nvidia.com/gpu"].as<std::string>(), "4");
  EXPECT_EQ(hard["requests.cpu"].as<std::string>(), "16");
  EXPECT_EQ(hard["limits.cpu"].as<std::string>(), "16");
  EXPECT_EQ(hard["requests.memory"].as<std::string>(), "64Gi");
  EXPECT_EQ(hard["limits.memory"].as<std::string>(), "64Gi");
  EXPECT_EQ(hard["pods"].as<std::string>(), "30");

  const YAML::Node& limits = docs[2];
  EXPECT_EQ(limits["kind"].as<std::string>(), "LimitRange");
  const YAML::Node c = limits["spec"]["limits"][0];
  EXPECT_EQ(c["type"].as<std::string>(), "Container");
  EXPECT_EQ(c["default"]["nvidia.com/gpu"].as<std::string>(), "1");
  EXPECT_EQ(c["defaultRequest"]["nvidia.com/gpu"].as<std::string>(), "1");
  EXPECT_EQ(c["max"]["nvidia.com/gpu"].as<std::string>(), "2");

  // Defaults for a tenant without a kubernetes section.
  std::vector<YAML::Node> g = YAML::LoadAllFromFile((out / "tenant-globex.yaml").string());
  EXPECT_EQ(g[1]["spec"]["hard"]["requests.nvidia.com/gpu"].as<std::string>(), "1");
  EXPECT_EQ(g[1]["spec"]["hard"]["requests.memory"].as<std::string>(), "16Gi");
}

}  // namespace
}  // namespace fairserve
