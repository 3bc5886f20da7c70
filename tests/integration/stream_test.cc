// ModelStreamInfer from a C++ client (grpc++'s synchronous bidi stream):
// every request on the stream is a full call, refusals come back on the
// stream and it stays open, and cancelling a stream releases what its
// requests held.

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <set>
#include <thread>

#include "fairserve/tenancy/api_key.h"
#include "inference/grpc_service.grpc.pb.h"
#include "integration/daemon_process.h"

namespace fairserve {
namespace {

using namespace testing_util;
using inference::GRPCInferenceService;
using inference::ModelInferRequest;
using inference::ModelStreamInferResponse;
using ::testing::HasSubstr;

constexpr char kStreamerKey[] = "streamer-demo-key";

// The test config plus tenant "streamer" (key kStreamerKey) with `limits`
// (YAML lines of its entry).
std::string StreamerConfig(const std::string& models, const std::string& limits) {
  return TestConfigYaml("  - id: streamer\n"
                        "    api_keys: [\"" + HashApiKey(kStreamerKey) + "\"]\n"
                        "    models: [" + models + "]\n" + limits);
}

// Closes the client's connection before the daemon stops: gRPC's graceful
// shutdown otherwise waits seconds for a connected client to hang up.
template <typename... Holders>
void HangUp(Holders&... holders) {
  (holders.reset(), ...);
}

TEST(StreamTest, EveryRequestIsAnsweredOnTheStreamAndItSurvivesRefusals) {
  DaemonProcess daemon(
      StreamerConfig("add_one, slow", "    rate_limit: {requests_per_second: 100, burst: 20}\n"));
  ASSERT_TRUE(daemon.serving()) << daemon.Log();
  auto stub = GRPCInferenceService::NewStub(OwnConnection(daemon.grpc_address()));
  grpc::ClientContext ctx;
  SetTestDeadline(&ctx, 120);
  ctx.AddMetadata("authorization", std::string("Bearer ") + kStreamerKey);
  auto stream = stub->ModelStreamInfer(&ctx);
  constexpr int kRequests = 300;
  std::thread writer([&] {
    for (int i = 0; i < kRequests; ++i) {
      std::vector<float> x(16, static_cast<float>(i % 5));
      // Request 5 does not fit the model (within the burst: always refused
      // for its shape, never for the rate).
      ModelInferRequest req = FloatRequest("add_one", x, {1, i == 5 ? 8 : 16});
      if (i == 5) req.set_raw_input_contents(0, std::string(8 * sizeof(float), '\0'));
      req.set_id(std::to_string(i));
      ASSERT_TRUE(stream->Write(req));
    }
    stream->WritesDone();
  });
  std::set<int> ids;
  int ok = 0, rate_limited = 0, invalid = 0;
  ModelStreamInferResponse resp;
  while (stream->Read(&resp)) {
    int id = std::stoi(resp.infer_response().id());
    EXPECT_TRUE(ids.insert(id).second) << "answered twice: " << id;
    if (resp.error_message().empty()) {
      ++ok;
      const std::string& raw = resp.infer_response().raw_output_contents(0);
      ASSERT_EQ(raw.size(), 16 * sizeof(float));
      float first;
      std::memcpy(&first, raw.data(), sizeof(float));
      EXPECT_EQ(first, static_cast<float>(id % 5) + 1);
    } else if (resp.error_message().find("rate limit") != std::string::npos) {
      ++rate_limited;
      EXPECT_EQ(resp.infer_response().parameters().at("error_code").string_param(),
                "RESOURCE_EXHAUSTED");
    } else {
      ++invalid;
      EXPECT_EQ(id, 5);
      EXPECT_THAT(resp.error_message(), HasSubstr("dimension 1 is 8, expected 16"));
    }
  }
  writer.join();
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(static_cast<int>(ids.size()), kRequests);
  EXPECT_EQ(ok + rate_limited + invalid, kRequests);
  EXPECT_EQ(invalid, 1);
  EXPECT_GE(ok, 19);
  EXPECT_GT(rate_limited, 0);
  HangUp(stream, stub);
  EXPECT_EQ(daemon.Stop(SIGTERM), 0) << daemon.Log();
}

// A stream cancelled with requests queued gives their in-flight slots back
// at once: the same tenant's next call is admitted while the request that
// was already running still runs.
TEST(StreamTest, CancellingAStreamReleasesItsQueuedRequests) {
  DaemonProcess daemon(StreamerConfig("add_one, slow", "    max_inflight: 3\n"));
  ASSERT_TRUE(daemon.serving()) << daemon.Log();
  auto stub = GRPCInferenceService::NewStub(OwnConnection(daemon.grpc_address()));
  {
    // Load slow first, so the stream's requests queue behind a running one.
    grpc::ClientContext warm;
    SetTestDeadline(&warm);
    warm.AddMetadata("x-api-key", kStreamerKey);
    inference::ModelInferResponse r;
    ASSERT_TRUE(stub->ModelInfer(&warm, FloatRequest("slow", {1, 0, 0, 0}, {1, 4}), &r).ok());
  }
  auto ctx = std::make_unique<grpc::ClientContext>();
  SetTestDeadline(ctx.get(), 60);
  ctx->AddMetadata("x-api-key", kStreamerKey);
  auto stream = stub->ModelStreamInfer(ctx.get());
  // One long request runs (seconds of matrix products) on the one worker;
  // then two requests of another model (never in its batch) wait behind it.
  const std::string inflight = "fairserve_inflight_requests{tenant_id=\"streamer\"}";
  ASSERT_TRUE(stream->Write(FloatRequest("slow", {20000, 0, 0, 0}, {1, 4})));
  ASSERT_TRUE(WaitFor([&] { return Metric(daemon, inflight) == 1; }, 20)) << daemon.Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // it is running now
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(stream->Write(FloatRequest("add_one", std::vector<float>(16, 0), {1, 16})));
  }
  auto admitted = [&] {
    grpc::ClientContext c;
    SetTestDeadline(&c);
    c.AddMetadata("x-api-key", kStreamerKey);
    inference::ModelInferResponse r;
    return stub->ModelInfer(&c, FloatRequest("add_one", std::vector<float>(16, 0), {1, 16}), &r);
  };
  // All three slots are taken: the tenant is at its cap.
  ASSERT_TRUE(WaitFor([&] { return Metric(daemon, inflight) == 3; }, 20)) << daemon.Log();
  grpc::Status full = admitted();
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << full.error_message() << "\n" << daemon.Log();
  ctx->TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The two queued requests are dropped; the running one holds one slot.
  grpc::Status after = grpc::Status(grpc::StatusCode::UNKNOWN, "not tried");
  for (int i = 0; i < 150 && !after.ok(); ++i) {
    after = admitted();
    if (!after.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(after.ok()) << after.error_message();
  HangUp(stream, stub);
  EXPECT_EQ(daemon.Stop(SIGTERM), 0) << daemon.Log();
}

// A client that sends and does not read its answers holds itself back: the
// server stops reading the stream once server.stream_max_in_flight answers
// wait to be written, so what the server runs and buffers stays bounded.
// Once the client reads, every request is answered.
TEST(StreamTest, AClientThatStopsReadingIsHeldBack) {
  std::string config = StreamerConfig("mlp_large", "");
  const std::string server_end = "drain_timeout_s: 10}";
  config.replace(config.find(server_end), server_end.size(),
                 "drain_timeout_s: 10, stream_max_in_flight: 4}");
  DaemonProcess daemon(config);
  ASSERT_TRUE(daemon.serving()) << daemon.Log();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(daemon.grpc_address(),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = GRPCInferenceService::NewStub(channel);
  grpc::ClientContext ctx;
  SetTestDeadline(&ctx, 120);
  ctx.AddMetadata("x-api-key", kStreamerKey);
  auto stream = stub->ModelStreamInfer(&ctx);
  // 64 KiB answers: a few fill every window between the server and us.
  constexpr int kRows = 16, kRequests = 300;
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; i < kRequests; ++i) {
      ModelInferRequest req =
          FloatRequest("mlp_large", std::vector<float>(kRows * 1024, 0.5f), {kRows, 1024});
      req.set_id(std::to_string(i));
      if (!stream->Write(req)) return;
      written.fetch_add(1);
    }
    stream->WritesDone();
  });
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const std::string served = "tenant_requests_total{status=\"ok\",tenant_id=\"streamer\"}";
  double ran = Metric(daemon, served);
  // Answers run: at most the 4 unwritten plus what the transport windows
  // took. (How many requests the client could hand over meanwhile depends
  // on socket and HTTP/2 buffers; they wait there, unread.)
  EXPECT_LT(ran, 100) << "the server kept reading a stream nobody reads (" << written.load()
                      << " requests sent)";
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(Metric(daemon, served), ran) << "still running requests for a client that reads nothing";
  int answered = 0;
  ModelStreamInferResponse resp;
  while (stream->Read(&resp)) {
    EXPECT_EQ(resp.error_message(), "");
    ++answered;
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(answered, kRequests);
  HangUp(stream, stub, channel);
  EXPECT_EQ(daemon.Stop(SIGTERM), 0) << daemon.Log();
}

}  // namespace
}  // namespace fairserve
