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
};

TEST_F(TorchExecutorTest, RunsAddOneOnJoinedParts) {
  ModelConfig c = Config4("add_one");
  c.inputs[0].shape = {-1, 16};
  c.outputs[0].shape = {-1, 16};
  auto exec = loader_->Load(c, File("add_one"));
  ASSERT_TRUE(exec.ok()) << exec.status();
  std::vector<float> a(16, 1.0f), b(32, 2.0f);
  BatchInput in;
  in.dtype = DataType::kFp32;
  in.shape = {3, 16};
  std::string sa(reinterpret_cast<char*>(a.data()), 64), sb(reinterpret_cast<char*>(b.data()), 128);
  in.parts = {sa, sb};
  auto out = (*exec)->Run({in});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{3, 16}));
  std::vector<float> v = AsFloats((*out)[0]);
  EXPECT_EQ(v[0], 2.0f);
  EXPECT_EQ(v[16], 3.0f);
  EXPECT_EQ(v[47], 3.0f);
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
