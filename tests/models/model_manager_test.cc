#include "fairserve/models/model_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace fairserve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class FakeExecutor : public Executor {
 public:
  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>&) override {
    return std::vector<Tensor>{};
  }
  uint64_t memory_bytes() const override { return 1234; }
};

// Loads anything except files whose content is "broken".
class FakeLoader : public ModelLoader {
 public:
  absl::StatusOr<std::unique_ptr<Executor>> Load(const ModelConfig&,
                                                 const std::string& file) override {
    std::ifstream in(file);
    std::string content((std::istreambuf_iterator<char>(in)), {});
    if (!in.good() && content.empty()) return absl::NotFoundError(file + ": missing");
    if (content == "broken") return absl::FailedPreconditionError(file + ": corrupt");
    return std::unique_ptr<Executor>(new FakeExecutor());
  }
};

constexpr char kConfig[] = R"(max_batch_size: 4
inputs: [{name: X, datatype: FP32, shape: [-1, 2]}]
outputs: [{name: Y, datatype: FP32, shape: [-1, 2]}]
)";

class ModelManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            ("repo-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void AddModel(const std::string& name, const std::string& config,
                std::map<std::string, std::string> versions) {
    fs::create_directories(root_ / name);
    std::ofstream(root_ / name / "config.yaml") << config;
    for (const auto& [v, content] : versions) {
      fs::create_directories(root_ / name / v);
      std::ofstream(root_ / name / v / "model.pt") << content;
    }
  }
  fs::path root_;
  ModelManager manager_{std::make_unique<FakeLoader>()};
};

TEST_F(ModelManagerTest, ServesLatestReadyVersionAndAskedVersions) {
  AddModel("m", kConfig, {{"1", "ok"}, {"3", "ok"}, {"2", "ok"}});
  ASSERT_TRUE(manager_.LoadRepository(root_.string()).ok());
  auto latest = manager_.Get("m", "");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ((*latest)->version, "3");
  EXPECT_EQ((*manager_.Get("m", "2"))->version, "2");
  EXPECT_EQ(manager_.Get("m", "7").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_.Get("nope", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_.Versions("m"), (std::vector<std::string>{"1", "2", "3"}));
}

TEST_F(ModelManagerTest, BadModelsAreUnavailableAloneWithReason) {
  AddModel("good", kConfig, {{"1", "ok"}});
  AddModel("corrupt", kConfig, {{"1", "broken"}});
  AddModel("badcfg", "inputs: 3\n", {{"1", "ok"}});
  AddModel("empty", kConfig, {});
  ASSERT_TRUE(manager_.LoadRepository(root_.string()).ok());
  EXPECT_TRUE(manager_.Get("good", "").ok());
  auto corrupt = manager_.Get("corrupt", "");
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(manager_.Get("corrupt", "1").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(manager_.Get("corrupt", "1").status().message()), HasSubstr("corrupt"));
  EXPECT_EQ(manager_.Get("badcfg", "").status().code(), absl::StatusCode::kUnavailable);

  std::map<std::string, ModelState> index;
  for (const ModelState& s : manager_.Index()) index[s.name] = s;
  EXPECT_EQ(index["good"].state, "READY");
  EXPECT_EQ(index["corrupt"].state, "UNAVAILABLE");
  EXPECT_THAT(index["corrupt"].reason, HasSubstr("corrupt"));
  EXPECT_THAT(index["badcfg"].reason, HasSubstr("config.yaml:1:"));
  EXPECT_EQ(index["empty"].state, "UNAVAILABLE");
}

TEST_F(ModelManagerTest, MissingRepositoryIsAnError) {
  auto s = manager_.LoadRepository((root_ / "nope").string());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--model-repository"));
}

}  // namespace
}  // namespace fairserve
