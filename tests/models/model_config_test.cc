#include "fairserve/models/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fairserve {
namespace {

using ::testing::HasSubstr;

TEST(ModelConfigTest, ParsesSignature) {
  auto c = ParseModelConfig(R"(
max_batch_size: 32
max_queue_delay_us: 500
memory_estimate: 64MiB
owner: acme
inputs:
  - {name: INPUT0, datatype: FP32, shape: [-1, 64]}
outputs:
  - {name: OUTPUT0, datatype: FP32, shape: [-1, 10]}
)", "mlp/config.yaml", "mlp");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "mlp");
  EXPECT_EQ(c->platform, "pytorch_libtorch");
  EXPECT_TRUE(c->batched());
  EXPECT_EQ(c->memory_estimate, 64ull << 20);
  EXPECT_EQ(c->owner, "acme");
  ASSERT_NE(c->FindInput("INPUT0"), nullptr);
  EXPECT_EQ(c->FindInput("INPUT0")->dtype, DataType::kFp32);
  EXPECT_EQ(c->FindInput("INPUT0")->shape, (std::vector<int64_t>{-1, 64}));
  EXPECT_EQ(c->FindOutput("NOPE"), nullptr);
}

TEST(ModelConfigTest, ErrorsNameFileLineAndField) {
  auto c = ParseModelConfig(R"(max_batch_size: 4
inputs:
  - {name: X, datatype: FLOAT, shape: [-1, 3]}
outputs:
  - {name: Y, datatype: FP32, shape: [2, 3]}
)", "m/config.yaml", "m");
  ASSERT_FALSE(c.ok());
  std::string e(c.status().message());
  EXPECT_THAT(e, HasSubstr("m/config.yaml:3:"));
  EXPECT_THAT(e, HasSubstr("inputs[0].datatype: unknown datatype 'FLOAT'"));
  EXPECT_THAT(e, HasSubstr("outputs[0].shape: the first dimension is the batch dimension"));
}

TEST(ModelConfigTest, DeviceIsCpuOrCudaN) {
  const std::string signature =
      "inputs: [{name: X, datatype: FP32, shape: [3]}]\n"
      "outputs: [{name: Y, datatype: FP32, shape: [3]}]\n";
  auto c = ParseModelConfig(signature + "device: gpu0\n", "m/config.yaml", "m");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("m/config.yaml:3:9: device: unknown device 'gpu0'; use cpu or cuda:N"));
  auto ok = ParseModelConfig(signature + "device: cuda:1\n", "m/config.yaml", "m");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->device, "cuda:1");
}

TEST(ModelConfigTest, RejectsNameMismatchBytesAndBadShapes) {
  auto c = ParseModelConfig(R"(name: other
inputs: [{name: X, datatype: BYTES, shape: [0]}]
outputs: [{name: Y, datatype: FP32, shape: []}]
)", "m/config.yaml", "m");
  ASSERT_FALSE(c.ok());
  std::string e(c.status().message());
  EXPECT_THAT(e, HasSubstr("differs from the model's directory name 'm'"));
  EXPECT_THAT(e, HasSubstr("BYTES tensors are not supported"));
  EXPECT_THAT(e, HasSubstr("inputs[0].shape"));
  EXPECT_THAT(e, HasSubstr("outputs[0].shape"));
}

TEST(ModelConfigTest, RequiresInputsAndOutputs) {
  auto c = ParseModelConfig("max_batch_size: 1\n", "m/config.yaml", "m");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("inputs: is required"));
}

}  // namespace
}  // namespace fairserve
