#include "fairserve/server/rest_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

namespace fairserve {
namespace {

using ::testing::HasSubstr;

std::string Error(absl::string_view body, std::optional<size_t> json_length = std::nullopt) {
  auto r = ParseRestInferRequest(body, json_length, "m", "");
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? "" : std::string(r.status().message());
}

TEST(RestCodecTest, JsonTensorsBecomeRawLittleEndianInputs) {
  auto r = ParseRestInferRequest(
      R"({"id": "a", "parameters": {"timeout": 500},
          "inputs": [{"name": "X", "datatype": "INT16", "shape": [2, 2], "data": [[1, -2], [3, 4]]},
                     {"name": "B", "datatype": "BOOL", "shape": [1], "data": [true]},
                     {"name": "S", "datatype": "BYTES", "shape": [1], "data": ["hi"]}],
          "outputs": [{"name": "Y", "parameters": {"binary_data": true}}]})",
      std::nullopt, "m", "2");
  ASSERT_TRUE(r.ok()) << r.status();
  const inference::ModelInferRequest& req = r->request;
  EXPECT_EQ(req.model_name(), "m");
  EXPECT_EQ(req.model_version(), "2");
  EXPECT_EQ(req.id(), "a");
  EXPECT_EQ(req.parameters().at("timeout").uint64_param(), 500u);
  ASSERT_EQ(req.raw_input_contents_size(), 3);
  int16_t x[4];
  ASSERT_EQ(req.raw_input_contents(0).size(), sizeof(x));
  std::memcpy(x, req.raw_input_contents(0).data(), sizeof(x));
  EXPECT_EQ(x[1], -2);
  EXPECT_EQ(req.raw_input_contents(1), std::string(1, '\1'));
  EXPECT_EQ(req.raw_input_contents(2), std::string("\2\0\0\0hi", 6));
  EXPECT_EQ(r->binary_outputs, (std::set<std::string>{"Y"}));
}

TEST(RestCodecTest, BinaryDataFollowsTheJson) {
  std::string header =
      R"({"inputs": [{"name": "X", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}]})";
  std::string body = header + std::string(8, 'z');
  auto r = ParseRestInferRequest(body, header.size(), "m", "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request.raw_input_contents(0), std::string(8, 'z'));
  EXPECT_THAT(Error(body + "extra", header.size()), HasSubstr("5 bytes of binary data"));
  EXPECT_THAT(Error(body, body.size() + 1), HasSubstr("the body has only"));
  EXPECT_THAT(Error(header), HasSubstr("needs the Inference-Header-Content-Length header"));
}

TEST(RestCodecTest, BadRequestsNameTheProblem) {
  EXPECT_THAT(Error("{\"inputs\": ["), HasSubstr("malformed JSON"));
  EXPECT_THAT(Error("[]"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(Error("{}"), HasSubstr("'inputs' must be a list"));
  EXPECT_THAT(Error(R"({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]})"),
              HasSubstr("inputs[0]: 'name' must be a string"));
  EXPECT_THAT(Error(R"({"inputs": [{"name": "X", "datatype": "FP33", "shape": [1], "data": [1]}]})"),
              HasSubstr("unknown datatype 'FP33'"));
  EXPECT_THAT(Error(R"({"inputs": [{"name": "X", "datatype": "UINT8", "shape": [2], "data": [1, -1]}]})"),
              HasSubstr("input 'X': element 1: -1 is out of range"));
  EXPECT_THAT(Error(R"({"inputs": [{"name": "X", "datatype": "INT64", "shape": [1], "data": [1.5]}]})"),
              HasSubstr("expected an integer, got 1.5"));
  EXPECT_THAT(Error(R"({"inputs": [{"name": "X", "datatype": "FP16", "shape": [1], "data": [1]}]})"),
              HasSubstr("FP16 tensors cannot be written as JSON"));
  EXPECT_THAT(Error(R"({"inputs": [{"name": "X", "datatype": "FP32", "shape": "1", "data": [1]}]})"),
              HasSubstr("'shape' must be a list"));
}

TEST(RestCodecTest, ResponsesAsJsonOrBinary) {
  InferenceResult result;
  Tensor t;
  t.dtype = DataType::kFp32;
  t.shape = {1, 2};
  float v[2] = {1.5f, -2};
  t.bytes.assign(reinterpret_cast<const char*>(v), sizeof(v));
  result.outputs = {t};
  result.output_names = {"Y"};
  RestInferRequest asked;
  HttpReply json = EncodeRestInferResponse(result, "m", "1", "id7", asked);
  EXPECT_EQ(json.body,
            R"({"id":"id7","model_name":"m","model_version":"1","outputs":[{"data":[1.5,-2.0],"datatype":"FP32","name":"Y","shape":[1,2]}]})");
  asked.all_outputs_binary = true;
  HttpReply binary = EncodeRestInferResponse(result, "m", "1", "", asked);
  ASSERT_EQ(binary.headers.size(), 1u);
  size_t n = std::stoul(binary.headers[0].second);
  EXPECT_EQ(binary.body.substr(n), t.bytes);
  EXPECT_THAT(binary.body.substr(0, n), HasSubstr(R"("parameters":{"binary_data_size":8})"));
}

TEST(RestCodecTest, ErrorStatusesAndRetryAfter) {
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInternal), 500);
  HttpReply r = RestError(absl::ResourceExhaustedError("slow down"), std::chrono::milliseconds(1500));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.body, R"({"error":"slow down"})");
  EXPECT_THAT(r.headers, ::testing::Contains(std::make_pair(std::string("Retry-After"),
                                                             std::string("2"))));
}

}  // namespace
}  // namespace fairserve
