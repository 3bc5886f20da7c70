#include "fairserve/models/model_repository.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "testing/test_dir.h"

namespace fairserve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kGood[] = "max_batch_size: 4\n"
                         "inputs: [{name: X, datatype: FP32, shape: [-1, 2]}]\n"
                         "outputs: [{name: Y, datatype: FP32, shape: [-1, 2]}]\n";

class ModelRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing_util::MakeTestDir("repository");
  }
  void TearDown() override { testing_util::RemoveTestDir(root_); }
  void Add(const std::string& model, const std::string& config,
           std::vector<std::string> versions) {
    fs::create_directories(root_ / model);
    if (!config.empty()) std::ofstream(root_ / model / "config.yaml") << config;
    for (const std::string& v : versions) {
      fs::create_directories(root_ / model / v);
      if (v != "9") std::ofstream(root_ / model / v / "model.pt") << "x";
    }
  }
  fs::path root_;
};

// The one scan the daemon and the offline checks share: every model
// directory is known, a broken one with its problem.
TEST_F(ModelRepositoryTest, ListsEveryModelDirectoryWithItsProblems) {
  Add("mlp", kGood, {"2", "10", "1", "not-a-version"});
  Add("no_config", "", {"1"});
  Add("missing_file", kGood, {"9"});
  Add(".hidden", kGood, {"1"});
  auto models = ScanRepository(root_.string());
  ASSERT_TRUE(models.ok()) << models.status();
  EXPECT_EQ(ModelNames(*models), (std::set<std::string>{"missing_file", "mlp", "no_config"}));
  const RepositoryModel& mlp = (*models)[1];
  ASSERT_EQ(mlp.name, "mlp");
  ASSERT_TRUE(mlp.config.ok());
  ASSERT_EQ(mlp.versions.size(), 3u);
  EXPECT_EQ(mlp.versions[0].version, 1);
  EXPECT_EQ(mlp.versions[2].version, 10);
  EXPECT_FALSE((*models)[2].config.ok());  // no_config
  EXPECT_THAT((*models)[0].versions[0].problem, HasSubstr("no such file"));
  EXPECT_EQ(ScanRepository((root_ / "nope").string()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, OfflineCheckUsesTheSameRule) {
  Add("mlp", kGood, {"1"});
  Add("no_config", "", {"1"});  // known (unavailable), as the daemon sees it
  Config config;
  config.model_repository = root_.string();
  TenantConfig t;
  t.id = "acme";
  t.models = {"mlp", "no_config"};
  config.tenants = {t};
  EXPECT_TRUE(CheckConfigModels(config).ok());
  config.tenants[0].models.push_back("mpl");
  absl::Status s = CheckConfigModels(config);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("unknown model 'mpl'"));
  config.model_repository = (root_ / "not-yet").string();
  EXPECT_TRUE(CheckConfigModels(config).ok());
}

}  // namespace
}  // namespace fairserve
