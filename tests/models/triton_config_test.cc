#include "fairserve/models/triton_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fairserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A config.pbtxt as Triton's PyTorch backend documents it.
constexpr char kTriton[] = R"pb(
name: "resnet"
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  { name: "INPUT__0" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, -1, 224 ] }
]
output [
  { name: "OUTPUT__0" data_type: TYPE_FP16 dims: [ 1000 ] }
]
dynamic_batching { max_queue_delay_microseconds: 500 }
version_policy: { latest: { num_versions: 2 } }
default_model_filename: "resnet.pt"
instance_group [ { kind: KIND_CPU count: 1 } ]
parameters { key: "fairserve.owner" value: { string_value: "acme" } }
parameters { key: "fairserve.memory_estimate" value: { string_value: "64MiB" } }
parameters { key: "fairserve.preload" value: { string_value: "true" } }
parameters { key: "INFERENCE_MODE" value: { string_value: "true" } }
)pb";

absl::StatusOr<ModelConfig> Parse(const std::string& text, const std::string& dir = "resnet") {
  return ParseTritonConfig(text, "repo/resnet/config.pbtxt", dir);
}

std::string Error(const std::string& text) {
  absl::StatusOr<ModelConfig> c = Parse(text);
  EXPECT_FALSE(c.ok()) << text;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

TEST(TritonConfigTest, ReadsATritonPytorchConfig) {
  absl::StatusOr<ModelConfig> c = Parse(kTriton);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "resnet");
  EXPECT_EQ(c->source, "config.pbtxt");
  EXPECT_EQ(c->max_batch_size, 8);
  ASSERT_EQ(c->inputs.size(), 1u);
  EXPECT_EQ(c->inputs[0].name, "INPUT__0");
  EXPECT_EQ(c->inputs[0].dtype, DataType::kFp32);
  EXPECT_THAT(c->inputs[0].shape, ElementsAre(-1, 3, -1, 224));  // batch dimension added
  EXPECT_EQ(c->outputs[0].dtype, DataType::kFp16);
  EXPECT_THAT(c->outputs[0].shape, ElementsAre(-1, 1000));
  EXPECT_EQ(c->max_queue_delay_us, 500);
  EXPECT_EQ(c->version_policy.kind, VersionPolicy::Kind::kLatest);
  EXPECT_EQ(c->version_policy.num_versions, 2u);
  EXPECT_EQ(c->model_filename, "resnet.pt");
  EXPECT_EQ(c->device, "cpu");
  EXPECT_EQ(c->owner, "acme");
  EXPECT_EQ(c->memory_estimate, 64u << 20);
  EXPECT_TRUE(c->preload);
}

TEST(TritonConfigTest, DefaultsAreTritons) {
  absl::StatusOr<ModelConfig> c = Parse(
      "backend: \"pytorch\"\n"
      "input [{ name: \"X\" data_type: TYPE_INT64 dims: [4] }]\n"
      "output [{ name: \"Y\" data_type: TYPE_INT64 dims: [4] }]\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "resnet");  // the directory's
  EXPECT_EQ(c->max_batch_size, 0);
  EXPECT_THAT(c->inputs[0].shape, ElementsAre(4));  // no batch dimension
  EXPECT_EQ(c->version_policy.kind, VersionPolicy::Kind::kLatest);
  EXPECT_EQ(c->version_policy.num_versions, 1u);
  EXPECT_EQ(c->model_filename, "model.pt");
  EXPECT_EQ(c->device, "");
}

TEST(TritonConfigTest, VersionPolicies) {
  const std::string tensors =
      "platform: \"pytorch_libtorch\"\n"
      "input [{ name: \"X\" data_type: TYPE_FP32 dims: [1] }]\n"
      "output [{ name: \"Y\" data_type: TYPE_FP32 dims: [1] }]\n";
  const std::vector<int64_t> on_disk = {1, 2, 3, 7};
  absl::StatusOr<ModelConfig> all = Parse(tensors + "version_policy: { all: {} }");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->version_policy.Select(on_disk), on_disk);
  absl::StatusOr<ModelConfig> latest = Parse(tensors + "version_policy: { latest { num_versions: 2 } }");
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_THAT(latest->version_policy.Select(on_disk), ElementsAre(3, 7));
  absl::StatusOr<ModelConfig> specific =
      Parse(tensors + "version_policy: { specific { versions: [1, 7, 9] } }");
  ASSERT_TRUE(specific.ok()) << specific.status();
  EXPECT_THAT(specific->version_policy.Select(on_disk), ElementsAre(1, 7));
  EXPECT_THAT(Error(tensors + "version_policy: { latest { num_versions: 0 } }"),
              HasSubstr("version_policy.latest.num_versions: must be at least 1"));
}

TEST(TritonConfigTest, ErrorsSayFileLineColumnAndField) {
  // A field fairserve does not read is refused where it stands.
  std::string unknown = Error(std::string(kTriton) + "optimization { priority: PRIORITY_MAX }\n");
  EXPECT_THAT(unknown, HasSubstr("repo/resnet/config.pbtxt:19:14: "));
  EXPECT_THAT(unknown, HasSubstr("no field named \"optimization\""));
  EXPECT_THAT(unknown, HasSubstr("docs/models.md"));
  EXPECT_THAT(Error("max_batch_size: \"eight\""), HasSubstr("config.pbtxt:1:17: "));
  // Semantic errors point at their field.
  std::string e = Error(
      "platform: \"onnxruntime_onnx\"\n"
      "max_batch_size: 4\n"
      "input [{ name: \"X\" data_type: TYPE_STRING dims: [1] },\n"
      "       { name: \"X\" data_type: TYPE_FP32 dims: [0] }]\n"
      "output [{ name: \"Y\" dims: [2] }]\n");
  EXPECT_THAT(e, HasSubstr("config.pbtxt:1:1: platform: unsupported platform 'onnxruntime_onnx'"));
  EXPECT_THAT(e, HasSubstr("config.pbtxt:3:20: input[0].data_type: TYPE_STRING tensors are not "
                           "supported"));
  EXPECT_THAT(e, HasSubstr("config.pbtxt:4:10: input[1].name: 'X' is declared twice"));
  EXPECT_THAT(e, HasSubstr("config.pbtxt:4:41: input[1].dims: expected a non-empty list"));
  EXPECT_THAT(e, HasSubstr("output[0].data_type: needs a data_type such as TYPE_FP32"));
  EXPECT_THAT(Error("input [{ name: \"X\" data_type: TYPE_FP32 dims: [1] }]\n"
                    "output [{ name: \"Y\" data_type: TYPE_FP32 dims: [1] }]\n"),
              HasSubstr("set platform: \"pytorch_libtorch\" or backend: \"pytorch\""));
  EXPECT_THAT(Error(std::string(kTriton) + "name: \"other\"\n"),
              HasSubstr("config.pbtxt:19:5: Non-repeated field \"name\" is specified multiple times"));
  EXPECT_THAT(Error(std::string(kTriton) +
                    "parameters { key: \"fairserve.ownr\" value: { string_value: \"x\" } }\n"),
              HasSubstr("config.pbtxt:19:19: parameters[\"fairserve.ownr\"]: unknown fairserve "
                        "parameter"));
  EXPECT_THAT(Error(std::string(kTriton) + "instance_group [ { kind: KIND_GPU gpus: [0, 1] } ]\n"),
              HasSubstr("one device"));
  EXPECT_THAT(Error("backend: \"pytorch\"\n"
                    "input [{ name: \"X\" data_type: TYPE_FP32 dims: [1] }]\n"
                    "output [{ name: \"Y\" data_type: TYPE_FP32 dims: [1] }]\n"
                    "default_model_filename: \"../x.pt\"\n"),
              HasSubstr("config.pbtxt:4:1: default_model_filename: must be a file name inside "
                        "the version directory"));
}

TEST(TritonConfigTest, NameMustMatchTheDirectory) {
  absl::StatusOr<ModelConfig> c = Parse(kTriton, "other_dir");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(),
              HasSubstr("config.pbtxt:2:1: name: 'resnet' differs from the model's directory "
                        "name 'other_dir'"));
}

// The ModelConfig RPC answers Triton's form of any config, and reading that
// form back gives the same model.
TEST(TritonConfigTest, RoundTripsThroughTritonsForm) {
  absl::StatusOr<ModelConfig> c = Parse(kTriton);
  ASSERT_TRUE(c.ok()) << c.status();
  inference::ModelConfig t = ToTritonConfig(*c);
  EXPECT_EQ(t.platform(), "pytorch_libtorch");
  EXPECT_EQ(t.max_batch_size(), 8);
  EXPECT_THAT(t.input(0).dims(), ElementsAre(3, -1, 224));
  EXPECT_EQ(t.input(0).data_type(), inference::TYPE_FP32);
  EXPECT_EQ(t.output(0).data_type(), inference::TYPE_FP16);
  EXPECT_EQ(t.dynamic_batching().max_queue_delay_microseconds(), 500u);
  EXPECT_EQ(t.version_policy().latest().num_versions(), 2u);
  EXPECT_EQ(t.instance_group(0).kind(), inference::ModelInstanceGroup::KIND_CPU);
  EXPECT_EQ(t.parameters().at("fairserve.owner").string_value(), "acme");
  absl::StatusOr<ModelConfig> back = Parse(t.DebugString());
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << t.DebugString();
  EXPECT_EQ(back->inputs[0].shape, c->inputs[0].shape);
  EXPECT_EQ(back->outputs[0].shape, c->outputs[0].shape);
  EXPECT_EQ(back->max_queue_delay_us, c->max_queue_delay_us);
  EXPECT_EQ(back->owner, c->owner);
  EXPECT_EQ(back->memory_estimate, c->memory_estimate);
  EXPECT_EQ(back->model_filename, c->model_filename);
}

}  // namespace
}  // namespace fairserve
