// floor_server: the fastest KServe v2 server this gRPC build can be, the
// floor fairserve's per-request overhead is measured against
// (bench/overhead.sh). It serves ServerLive/Ready, ModelMetadata and
// ModelInfer of two models on gRPC's callback API, as the daemon does, and
// answers every call inline in its handler: no torch, no authentication, no
// queue, no hand-off, no metering, no log.
//
//   add_one    FP32 [-1, 16]    output = input + 1
//   echo_1024  FP32 [-1, 1024]  output = input (4 KiB in, 4 KiB out per row)
//
//   floor_server [--port N] [--ready-file FILE]
// The ready file gets {"grpc_port": N, "http_port": -1, "pid": P}, as the
// daemon's does.

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "inference/grpc_service.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace {

std::atomic<bool> g_stop{false};

struct FloorModel {
  const char* name;
  int64_t width;
  float add;
};
constexpr FloorModel kModels[] = {{"add_one", 16, 1.0f}, {"echo_1024", 1024, 0.0f}};

const FloorModel* Find(const std::string& name) {
  for (const FloorModel& m : kModels) {
    if (name == m.name) return &m;
  }
  return nullptr;
}

class FloorService final : public inference::GRPCInferenceService::CallbackService {
  grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const grpc::Status& s) {
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    r->Finish(s);
    return r;
  }

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx,
                                       const inference::ServerLiveRequest*,
                                       inference::ServerLiveResponse* resp) override {
    resp->set_live(true);
    return Done(ctx, grpc::Status::OK);
  }
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx,
                                        const inference::ServerReadyRequest*,
                                        inference::ServerReadyResponse* resp) override {
    resp->set_ready(true);
    return Done(ctx, grpc::Status::OK);
  }
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx,
                                          const inference::ModelMetadataRequest* req,
                                          inference::ModelMetadataResponse* resp) override {
    const FloorModel* m = Find(req->name());
    if (m == nullptr) return Done(ctx, grpc::Status(grpc::StatusCode::NOT_FOUND, "no model"));
    resp->set_name(m->name);
    resp->add_versions("1");
    resp->set_platform("floor");
    auto describe = [m](inference::ModelMetadataResponse::TensorMetadata* t, const char* name) {
      t->set_name(name);
      t->set_datatype("FP32");
      t->add_shape(-1);
      t->add_shape(m->width);
    };
    describe(resp->add_inputs(), "INPUT0");
    describe(resp->add_outputs(), "OUTPUT0");
    return Done(ctx, grpc::Status::OK);
  }
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* resp) override {
    const FloorModel* m = Find(req->model_name());
    if (m == nullptr || req->inputs_size() != 1 || req->raw_input_contents_size() != 1) {
      return Done(ctx, grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "one raw FP32 input"));
    }
    const std::string& in = req->raw_input_contents(0);
    std::string* out = resp->add_raw_output_contents();
    out->resize(in.size());
    const size_t n = in.size() / sizeof(float);
    for (size_t i = 0; i < n; ++i) {
      float x;
      std::memcpy(&x, in.data() + i * sizeof(float), sizeof(float));
      x += m->add;
      std::memcpy(out->data() + i * sizeof(float), &x, sizeof(float));
    }
    resp->set_model_name(m->name);
    resp->set_model_version("1");
    resp->set_id(req->id());
    auto* o = resp->add_outputs();
    o->set_name("OUTPUT0");
    o->set_datatype("FP32");
    *o->mutable_shape() = req->inputs(0).shape();
    return Done(ctx, grpc::Status::OK);
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("A do-nothing KServe v2 server: the floor for fairserve's overhead.",
               "floor_server");
  int port = 0;
  std::string ready_file;
  app.add_option("--port", port, "gRPC port; 0 picks a free one")
      ->check(CLI::Range(0, 65535));
  app.add_option("--ready-file", ready_file, "where to write the chosen port once serving");
  CLI11_PARSE(app, argc, argv);
  // As the daemon does (fairserve_main.cc): Debian's Abseil checks lock
  // order on every absl::Mutex lock, which gRPC pays per call; the floor
  // must not pay what the daemon is spared.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  FloorService service;
  grpc::ServerBuilder builder;
  int bound = 0;
  // The daemon's transport settings (fairserve's Daemon::StartListeners).
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &bound);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1024);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::fprintf(stderr, "floor_server: cannot listen on port %d\n", port);
    return 1;
  }
  if (!ready_file.empty()) {
    std::string tmp = ready_file + ".tmp";
    std::ofstream(tmp) << nlohmann::ordered_json{
        {"grpc_port", bound}, {"http_port", -1}, {"pid", getpid()}}.dump() << "\n";
    std::filesystem::rename(tmp, ready_file);
  }
  std::fprintf(stderr, "floor_server: serving on 127.0.0.1:%d\n", bound);
  signal(SIGTERM, [](int) { g_stop.store(true); });
  signal(SIGINT, [](int) { g_stop.store(true); });
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
