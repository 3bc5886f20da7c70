#include "fairserve/server/tensor_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

namespace fairserve {
namespace {

using ::testing::HasSubstr;
using inference::ModelInferRequest;

ModelConfig TwoInputs() {
  ModelConfig c;
  c.name = "m";
  c.max_batch_size = 8;
  c.inputs = {{"A", DataType::kFp32, {-1, 4}}, {"B", DataType::kInt8, {-1, 2}}};
  c.outputs = {{"Y", DataType::kFp32, {-1, 4}}, {"Z", DataType::kInt64, {-1, 1}}};
  return c;
}

ModelInferRequest::InferInputTensor* AddInput(ModelInferRequest* r, const std::string& name,
                                              const std::string& dtype,
                                              std::vector<int64_t> shape) {
  auto* in = r->add_inputs();
  in->set_name(name);
  in->set_datatype(dtype);
  for (int64_t d : shape) in->add_shape(d);
  return in;
}

std::string Raw(size_t bytes) { return std::string(bytes, '\0'); }

// A valid raw request: A [2,4] FP32, B [2,2] INT8.
ModelInferRequest ValidRaw() {
  ModelInferRequest r;
  r.set_model_name("m");
  AddInput(&r, "A", "FP32", {2, 4});
  AddInput(&r, "B", "INT8", {2, 2});
  r.add_raw_input_contents(Raw(32));
  r.add_raw_input_contents(Raw(4));
  return r;
}

class TensorCodecTest : public ::testing::Test {
 protected:
  absl::Status Decode(const ModelInferRequest& r, int64_t cap = 0) {
    out_ = InferenceRequest();
    return DecodeInferRequest(r, config_, cap, &out_);
  }
  std::string Error(const ModelInferRequest& r, int64_t cap = 0) {
    absl::Status s = Decode(r, cap);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    return std::string(s.message());
  }
  ModelConfig config_ = TwoInputs();
  InferenceRequest out_;
};

TEST_F(TensorCodecTest, DecodesRawInPlace) {
  ModelInferRequest r = ValidRaw();
  ASSERT_TRUE(Decode(r).ok());
  EXPECT_EQ(out_.batch_size, 2);
  EXPECT_EQ(out_.inputs[0].bytes.data(), r.raw_input_contents(0).data());  // zero copy
  EXPECT_EQ(out_.inputs[1].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(out_.output_indexes, (std::vector<int>{0, 1}));
}

TEST_F(TensorCodecTest, InputsInAnyOrderAreMappedToModelOrder) {
  ModelInferRequest r;
  r.set_model_name("m");
  AddInput(&r, "B", "INT8", {1, 2});
  AddInput(&r, "A", "FP32", {1, 4});
  r.add_raw_input_contents(Raw(2));
  r.add_raw_input_contents(Raw(16));
  ASSERT_TRUE(Decode(r).ok());
  EXPECT_EQ(out_.inputs[0].dtype, DataType::kFp32);
  EXPECT_EQ(out_.inputs[0].bytes.size(), 16u);
}

TEST_F(TensorCodecTest, DecodesTypedContents) {
  ModelInferRequest r;
  r.set_model_name("m");
  auto* a = AddInput(&r, "A", "FP32", {1, 4});
  for (float f : {1.5f, 2.5f, 3.5f, 4.5f}) a->mutable_contents()->add_fp32_contents(f);
  auto* b = AddInput(&r, "B", "INT8", {1, 2});
  b->mutable_contents()->add_int_contents(-3);
  b->mutable_contents()->add_int_contents(127);
  ASSERT_TRUE(Decode(r).ok());
  float f[4];
  std::memcpy(f, out_.inputs[0].bytes.data(), 16);
  EXPECT_EQ(f[3], 4.5f);
  ASSERT_EQ(out_.inputs[1].bytes.size(), 2u);
  EXPECT_EQ(static_cast<int8_t>(out_.inputs[1].bytes[0]), -3);
  EXPECT_EQ(static_cast<int8_t>(out_.inputs[1].bytes[1]), 127);
}

TEST_F(TensorCodecTest, TypedValueOutOfRangeForNarrowType) {
  ModelInferRequest r = ValidRaw();
  r.clear_raw_input_contents();
  for (int i = 0; i < 8; ++i) r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(0);
  for (int v : {1, 2, 3, 300}) r.mutable_inputs(1)->mutable_contents()->add_int_contents(v);
  EXPECT_THAT(Error(r), HasSubstr("value 300 at index 3 does not fit INT8"));
}

TEST_F(TensorCodecTest, RequestedOutputSubset) {
  ModelInferRequest r = ValidRaw();
  r.add_outputs()->set_name("Z");
  ASSERT_TRUE(Decode(r).ok());
  EXPECT_EQ(out_.output_indexes, (std::vector<int>{1}));
}

TEST_F(TensorCodecTest, ErrorMatrix) {
  {
    ModelInferRequest r;
    r.set_model_name("m");
    EXPECT_THAT(Error(r), HasSubstr("request has no inputs; model 'm' expects A (FP32 [-1, 4])"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(0)->set_datatype("FP64");
    EXPECT_THAT(Error(r), HasSubstr("input 'A': datatype 'FP64' does not match the model's FP32"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(0)->add_shape(1);
    EXPECT_THAT(Error(r), HasSubstr("input 'A': shape [2, 4, 1] has rank 3, expected rank 2"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(0)->set_shape(1, 5);
    EXPECT_THAT(Error(r), HasSubstr("input 'A': dimension 1 is 5, expected 4"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(0)->set_shape(0, -2);
    EXPECT_THAT(Error(r), HasSubstr("input 'A': dimension 0 is negative (-2)"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(0)->set_shape(0, 9);
    r.mutable_inputs(1)->set_shape(0, 9);
    EXPECT_THAT(Error(r), HasSubstr("batch size 9 exceeds the maximum of 8"));
    EXPECT_THAT(Error(ValidRaw(), /*cap=*/1), HasSubstr("batch size 2 exceeds the maximum of 1"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(0)->set_shape(0, 0);
    EXPECT_THAT(Error(r), HasSubstr("batch dimension must be at least 1"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.set_raw_input_contents(0, Raw(31));
    EXPECT_THAT(Error(r), HasSubstr("input 'A': raw_input_contents holds 31 bytes, expected 32"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
    EXPECT_THAT(Error(r), HasSubstr("both contents and raw_input_contents"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.add_raw_input_contents(Raw(1));
    EXPECT_THAT(Error(r), HasSubstr("raw_input_contents has 3 entries for 2 inputs"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(1)->set_name("A");
    r.mutable_inputs(1)->set_datatype("FP32");
    r.mutable_inputs(1)->set_shape(1, 4);
    r.set_raw_input_contents(1, Raw(32));
    EXPECT_THAT(Error(r), HasSubstr("input 'A': given more than once"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(1)->set_name("C");
    EXPECT_THAT(Error(r), HasSubstr("input 'C': model 'm' has no such input"));
  }
  {
    ModelInferRequest r;
    r.set_model_name("m");
    AddInput(&r, "A", "FP32", {1, 4});
    r.add_raw_input_contents(Raw(16));
    EXPECT_THAT(Error(r), HasSubstr("missing input(s): B (INT8 [-1, 2])"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.mutable_inputs(1)->set_shape(0, 1);
    r.set_raw_input_contents(1, Raw(2));
    EXPECT_THAT(Error(r), HasSubstr("input 'B': batch size 1 differs from 2 of input 'A'"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.add_outputs()->set_name("Q");
    EXPECT_THAT(Error(r), HasSubstr("requested output 'Q' does not exist; model 'm' has Y, Z"));
  }
  {
    ModelInferRequest r = ValidRaw();
    r.add_outputs()->set_name("Y");
    r.add_outputs()->set_name("Y");
    EXPECT_THAT(Error(r), HasSubstr("requested output 'Y' is listed more than once"));
  }
}

TEST_F(TensorCodecTest, TypedContentErrors) {
  ModelInferRequest r;
  r.set_model_name("m");
  auto* a = AddInput(&r, "A", "FP32", {1, 4});
  a->mutable_contents()->add_int_contents(1);
  auto* b = AddInput(&r, "B", "INT8", {1, 2});
  b->mutable_contents()->add_int_contents(1);
  b->mutable_contents()->add_int_contents(1);
  EXPECT_THAT(Error(r), HasSubstr("input 'A': datatype FP32 travels in fp32_contents, but "
                                  "int_contents was given"));
  a->mutable_contents()->clear_int_contents();
  a->mutable_contents()->add_fp32_contents(1);
  EXPECT_THAT(Error(r), HasSubstr("input 'A': shape needs 4 values, but fp32_contents holds 1"));
}

TEST_F(TensorCodecTest, HugeDimensionsDoNotOverflow) {
  config_.inputs[0].shape = {-1, -1};
  ModelInferRequest r = ValidRaw();
  r.mutable_inputs(0)->set_shape(1, int64_t{1} << 62);
  EXPECT_THAT(Error(r), HasSubstr("more elements than can be addressed"));
  r.mutable_inputs(0)->set_shape(1, int64_t{1} << 61);  // fits int64, bytes do not
  EXPECT_THAT(Error(r), HasSubstr("more elements than can be addressed"));
}

TEST_F(TensorCodecTest, Fp16OnlyRaw) {
  config_.inputs[0].dtype = DataType::kFp16;
  ModelInferRequest r = ValidRaw();
  r.mutable_inputs(0)->set_datatype("FP16");
  r.set_raw_input_contents(0, Raw(16));
  EXPECT_TRUE(Decode(r).ok());
  r.clear_raw_input_contents();
  r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
  EXPECT_THAT(Error(r), HasSubstr("FP16 tensors can only be sent in raw_input_contents"));
}

TEST(BytesTensorTest, CountsLengthPrefixedElements) {
  std::string raw;
  for (std::string s : {"ab", "", "xyz"}) {
    uint32_t n = s.size();
    raw.append(reinterpret_cast<char*>(&n), 4);
    raw += s;
  }
  EXPECT_TRUE(CheckBytesTensor(raw, 3, "S").ok());
  EXPECT_FALSE(CheckBytesTensor(raw, 2, "S").ok());
  EXPECT_THAT(std::string(CheckBytesTensor(raw.substr(0, raw.size() - 1), 3, "S").message()),
              HasSubstr("claims 3 bytes but only 2 remain"));
  EXPECT_THAT(std::string(CheckBytesTensor("\x01\x00", 1, "S").message()),
              HasSubstr("truncated length prefix"));
}

TEST(EncodeTest, WritesRawOutputs) {
  InferenceResult result;
  Tensor t;
  t.dtype = DataType::kFp32;
  t.shape = {1, 2};
  t.bytes = std::string(8, 'x');
  result.outputs.push_back(t);
  result.output_names = {"Y"};
  inference::ModelInferResponse resp;
  EncodeInferResponse(std::move(result), "m", "3", "req-1", &resp);
  EXPECT_EQ(resp.model_name(), "m");
  EXPECT_EQ(resp.model_version(), "3");
  EXPECT_EQ(resp.id(), "req-1");
  ASSERT_EQ(resp.outputs_size(), 1);
  EXPECT_EQ(resp.outputs(0).datatype(), "FP32");
  EXPECT_EQ(resp.raw_output_contents(0).size(), 8u);
}

}  // namespace
}  // namespace fairserve
