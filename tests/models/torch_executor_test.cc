// Runs the real libtorch executor on the models that
// scripts/make-demo-models.sh --with-test-models writes (ctest fixture).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "fairserve/models/executor.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;

ModelConfig Config4(const std::string& name, DataType out = DataType::kFp32) {
  ModelConfig c;
  c.name = name;
  c.max_batch_size = 8;
  c.inputs = {{"INPUT0", DataType::kFp32, {-1, 4}}};
  c.outputs = {{"OUTPUT0", out, {-1, 4}}};
  return c;
}

std::string File(const std::string& model) {
  return std::string(TEST_MODELS_DIR) + "/" + model + "/1/model.pt";
}

BatchInput Floats(const std::vector<float>& values, std::vector<int64_t> shape,
                  std::string* storage) {
  storage->assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  BatchInput in;
  in.dtype = DataType::kFp32;
  in.shape = std::move(shape);
  in.parts = {*storage};
  return in;
}

std::vector<float> AsFloats(const Tensor& t) {
  std::vector<float> v(t.bytes.size() / sizeof(float));
  std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
  return v;
}

class TorchExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ConfigureTorchRuntime({1}); }
  std::unique_ptr<ModelLoader> loader_ = MakeTorchModelLoader();

  // add_one ([-1, 16] floats) and a batch of two requests for it: one row
  // of 1s, then two rows of 2s.
  absl::StatusOr<std::unique_ptr<Executor>> LoadAddOne() {
    ModelConfig c = Config4("add_one");
    c.inputs[0].shape = {-1, 16};
    c.outputs[0].shape = {-1, 16};
    return loader_->Load(c, File("add_one"));
  }
  BatchInput TwoRequests() {
    BatchInput in;
    in.dtype = DataType::kFp32;
    in.shape = {3, 16};
    in.parts = {ones_, twos_};
    return in;
  }
  const std::string ones_ = Bytes(std::vector<float>(16, 1.0f));
  const std::string twos_ = Bytes(std::vector<float>(32, 2.0f));

 private:
  static std::string Bytes(const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  }
};

TEST_F(TorchExecutorTest, RunsAddOneOnJoinedParts) {
  auto exec = LoadAddOne();
  ASSERT_TRUE(exec.ok()) << exec.status();
  BatchInput in = TwoRequests();
  auto out = (*exec)->Run({in});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{3, 16}));
  std::vector<float> v = AsFloats((*out)[0]);
  EXPECT_EQ(v[0], 2.0f);
  EXPECT_EQ(v[16], 3.0f);
  EXPECT_EQ(v[47], 3.0f);
}

// A shared batch's output comes back in each request's rows, copied out of
// the output tensor once; a first dimension that is not the requests' rows
// comes back whole-shaped with no parts.
TEST_F(TorchExecutorTest, SplitsTheOutputIntoEachRequestsRows) {
  auto exec = LoadAddOne();
  ASSERT_TRUE(exec.ok()) << exec.status();
  BatchInput in = TwoRequests();
  auto out = (*exec)->RunSplit({in}, {1, 2}, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{3, 16}));
  ASSERT_EQ((*out)[0].parts.size(), 2u);
  EXPECT_EQ(AsFloats(Tensor{DataType::kFp32, {1, 16}, (*out)[0].parts[0]}),
            std::vector<float>(16, 2.0f));
  EXPECT_EQ(AsFloats(Tensor{DataType::kFp32, {2, 16}, (*out)[0].parts[1]}),
            std::vector<float>(32, 3.0f));

  auto whole = (*exec)->RunSplit({in}, {}, nullptr);
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ((*whole)[0].parts.size(), 1u);
  EXPECT_EQ((*whole)[0].parts[0].size(), 192u);

  auto wrong = (*exec)->RunSplit({in}, {2, 2}, nullptr);
  ASSERT_TRUE(wrong.ok()) << wrong.status();
  EXPECT_EQ((*wrong)[0].shape, (std::vector<int64_t>{3, 16}));
  EXPECT_TRUE((*wrong)[0].parts.empty());
}

TEST(SplitRowsTest, CopiesEachPartsRowsAndRefusesWhatIsNotWholeRows) {
  const std::string bytes = "aabbccddeeff";  // 3 rows of 4 bytes
  std::vector<std::string> parts;
  ASSERT_TRUE(SplitRows({3, 1}, bytes, {1, 2}, &parts));
  EXPECT_EQ(parts, (std::vector<std::string>{"aabb", "ccddeeff"}));
  parts.clear();
  ASSERT_TRUE(SplitRows({3, 1}, bytes, {0, 3, 0}, &parts));
  EXPECT_EQ(parts, (std::vector<std::string>{"", "aabbccddeeff", ""}));
  parts.clear();
  ASSERT_TRUE(SplitRows({0, 4}, "", {0, 0}, &parts));
  EXPECT_EQ(parts, (std::vector<std::string>{"", ""}));

  parts = {"kept"};
  EXPECT_FALSE(SplitRows({3, 1}, bytes, {1, 1}, &parts));        // 2 rows asked of 3
  EXPECT_FALSE(SplitRows({3, 1}, bytes, {4, -1}, &parts));       // a negative part
  EXPECT_FALSE(SplitRows({3, 1}, "aabbccddeef", {1, 2}, &parts));  // not whole rows
  EXPECT_FALSE(SplitRows({}, bytes, {1, 2}, &parts));             // no first dimension
  EXPECT_FALSE(SplitRows({0, 4}, "ab", {0}, &parts));             // bytes in no rows
  EXPECT_EQ(parts, (std::vector<std::string>{"kept"}));
}

TEST_F(TorchExecutorTest, MeasuresParameterBytes) {
  ModelConfig c = Config4("mlp_large");
  c.inputs[0].shape = {-1, 1024};
  c.outputs[0].shape = {-1, 1024};
  auto exec = loader_->Load(c, File("mlp_large"));
  ASSERT_TRUE(exec.ok()) << exec.status();
  // Four 1024x1024 layers with biases, FP32.
  EXPECT_EQ((*exec)->memory_bytes(), 4u * (1024 * 1024 + 1024) * 4);
}

TEST_F(TorchExecutorTest, ModelExceptionBecomesStatus) {
  auto exec = loader_->Load(Config4("faulty"), File("faulty"));
  ASSERT_TRUE(exec.ok()) << exec.status();
  std::string s;
  auto ok = (*exec)->Run({Floats({1, 2, 3, 4}, {1, 4}, &s)});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(AsFloats((*ok)[0])[3], 8.0f);
  auto bad = (*exec)->Run({Floats({1, -2, 3, 4}, {1, 4}, &s)});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("negative input"));
}

TEST_F(TorchExecutorTest, WrongOutputTypeIsInternal) {
  auto exec = loader_->Load(Config4("wrong_dtype"), File("wrong_dtype"));
  ASSERT_TRUE(exec.ok()) << exec.status();
  std::string s;
  auto out = (*exec)->Run({Floats({1, 2, 3, 4}, {1, 4}, &s)});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("config declares FP32"));
}

TEST_F(TorchExecutorTest, CorruptOrMissingFileFailsLoad) {
  auto corrupt = loader_->Load(Config4("corrupt"), File("corrupt"));
  EXPECT_EQ(corrupt.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(corrupt.status().message()), HasSubstr("not a loadable TorchScript"));
  auto missing = loader_->Load(Config4("nope"), File("nope"));
  EXPECT_FALSE(missing.ok());
}

TEST_F(TorchExecutorTest, UnsupportedDatatypeFailsLoad) {
  ModelConfig c = Config4("add_one", DataType::kUint32);
  auto exec = loader_->Load(c, File("add_one"));
  EXPECT_EQ(exec.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(exec.status().message()), HasSubstr("UINT32"));
}

}  // namespace
}  // namespace fairserve
