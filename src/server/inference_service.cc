#include "fairserve/server/inference_service.h"

#include <chrono>
#include <map>

#include "absl/strings/str_cat.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/server/tensor_codec.h"
#include "fairserve/tenancy/api_key.h"
#include "fairserve/server/grpc_auth.h"
#include "fairserve/version.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

// A reactor that remembers cancellation so queued work can be dropped.
class InferReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit InferReactor(std::shared_ptr<std::atomic<bool>> cancelled)
      : cancelled_(std::move(cancelled)) {}
  void OnCancel() override { cancelled_->store(true, std::memory_order_relaxed); }
  void OnDone() override { delete this; }

 private:
  std::shared_ptr<std::atomic<bool>> cancelled_;
};

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace

absl::StatusOr<Principal> InferenceService::Caller(grpc::ServerContextBase* ctx, CallerKind kind,
                                                   absl::string_view what) const {
  return AuthenticateGrpcCall(*deps_.call.authenticator, deps_.call.runtime->Get()->tenants, ctx,
                              kind, what);
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(
    grpc::CallbackServerContext* ctx, const inference::RepositoryIndexRequest* req,
    inference::RepositoryIndexResponse* resp) {
  // Admins see every model; a tenant sees the models it may use.
  auto caller = Caller(ctx, CallerKind::kAny);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  const TenantConfig* tenant = caller->tenant;
  for (const ModelState& m : deps_.call.models->Index()) {
    if (tenant && (!tenant->AllowsModel(m.name) || (!m.owner.empty() && m.owner != tenant->id))) {
      continue;
    }
    if (req->ready() && m.state != "READY") continue;
    auto* out = resp->add_models();
    out->set_name(m.name);
    out->set_version(m.version);
    out->set_state(m.state);
    out->set_reason(m.reason);
  }
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelStatistics(
    grpc::CallbackServerContext* ctx, const inference::ModelStatisticsRequest* req,
    inference::ModelStatisticsResponse* resp) {
  auto caller = Caller(ctx, CallerKind::kTenant);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  if (!req->name().empty()) {
    auto config = CheckModelAccess(*deps_.call.models, *caller->tenant, req->name());
    if (!config.ok()) return Finish(ctx, ToGrpcStatus(config.status()));
  }
  std::map<std::pair<std::string, std::string>, uint64_t> resident;
  for (const ModelState& m : deps_.call.models->Index()) {
    if (m.state == "READY") resident[{m.name, m.version}] = m.bytes;
  }
  auto fill = [](const ModelStats::Duration& d, inference::StatisticDuration* out) {
    out->set_count(d.count);
    out->set_ns(d.ns);
  };
  for (const auto& [name, versions] : deps_.stats->Snapshot()) {
    if (!req->name().empty() && name != req->name()) continue;
    if (req->name().empty() && !CheckModelAccess(*deps_.call.models, *caller->tenant, name).ok()) continue;
    for (const auto& [version, m] : versions) {
      if (!req->version().empty() && version != req->version()) continue;
      auto* out = resp->add_model_stats();
      out->set_name(name);
      out->set_version(version);
      out->set_last_inference(m.last_inference_ms);
      out->set_inference_count(m.inference_count);
      out->set_execution_count(m.execution_count);
      auto* s = out->mutable_inference_stats();
      fill(m.success, s->mutable_success());
      fill(m.fail, s->mutable_fail());
      fill(m.queue, s->mutable_queue());
      fill(m.compute_infer, s->mutable_compute_infer());
      for (const auto& [size, d] : m.batches) {
        auto* b = out->add_batch_stats();
        b->set_batch_size(size);
        fill(d, b->mutable_compute_infer());
      }
      auto it = resident.find({name, version});
      if (it != resident.end()) {
        auto* mem = out->add_memory_usage();
        mem->set_type("CPU");
        mem->set_id(0);
        mem->set_byte_size(it->second);
      }
    }
  }
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelLoad(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelLoadRequest* req,
    inference::RepositoryModelLoadResponse*) {
  auto admin = Caller(ctx, CallerKind::kAdmin, "RepositoryModelLoad");
  if (!admin.ok()) return Finish(ctx, ToGrpcStatus(admin.status()));
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  deps_.call.models->Acquire(req->model_name(), "",
                        [reactor](absl::StatusOr<std::shared_ptr<const Servable>> s) {
                          reactor->Finish(ToGrpcStatus(s.status()));
                        });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelUnload(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelUnloadRequest* req,
    inference::RepositoryModelUnloadResponse*) {
  auto admin = Caller(ctx, CallerKind::kAdmin, "RepositoryModelUnload");
  if (!admin.ok()) return Finish(ctx, ToGrpcStatus(admin.status()));
  return Finish(ctx, ToGrpcStatus(deps_.call.models->Unload(req->model_name())));
}

grpc::ServerUnaryReactor* InferenceService::ServerLive(grpc::CallbackServerContext* ctx,
                                                       const inference::ServerLiveRequest*,
                                                       inference::ServerLiveResponse* resp) {
  resp->set_live(true);
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ServerReady(grpc::CallbackServerContext* ctx,
                                                        const inference::ServerReadyRequest*,
                                                        inference::ServerReadyResponse* resp) {
  resp->set_ready(deps_.call.ready->load());
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ServerMetadata(
    grpc::CallbackServerContext* ctx, const inference::ServerMetadataRequest*,
    inference::ServerMetadataResponse* resp) {
  resp->set_name("fairserve");
  resp->set_version(kFairserveVersion);
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelReadyRequest* req,
                                                       inference::ModelReadyResponse* resp) {
  auto caller = Caller(ctx, CallerKind::kTenant);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  auto config = CheckModelAccess(*deps_.call.models, *caller->tenant, req->name());
  if (!config.ok()) return Finish(ctx, ToGrpcStatus(config.status()));
  auto servable = deps_.call.models->GetResident(req->name(), req->version());
  if (!servable.ok() && servable.status().code() == absl::StatusCode::kNotFound) {
    return Finish(ctx, ToGrpcStatus(servable.status()));
  }
  resp->set_ready(servable.ok() && deps_.call.ready->load());
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
    inference::ModelMetadataResponse* resp) {
  auto caller = Caller(ctx, CallerKind::kTenant);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  absl::StatusOr<inference::ModelMetadataResponse> metadata =
      DescribeModel(*deps_.call.models, *caller->tenant, req->name(), req->version());
  if (!metadata.ok()) return Finish(ctx, ToGrpcStatus(metadata.status()));
  *resp = std::move(*metadata);
  return Finish(ctx, grpc::Status::OK);
}

namespace {

// Answers a ModelInfer call on gRPC: the InferCall's reply end.
class GrpcInferReply final : public InferReply {
 public:
  GrpcInferReply(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor,
                 inference::ModelInferResponse* resp)
      : ctx_(ctx), reactor_(reactor), resp_(resp) {}

  void Reject(const absl::Status& status, Clock::Duration retry_after) override {
    if (retry_after > Clock::Duration(0)) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(retry_after);
      ctx_->AddTrailingMetadata("retry-after-ms", std::to_string(std::max<int64_t>(1, ms.count())));
    }
    reactor_->Finish(ToGrpcStatus(status));
  }
  void Finish(InferenceResult result, const std::string& model_name, const std::string& version,
              const std::string& id) override {
    EncodeInferResponse(std::move(result), model_name, version, id, resp_);
    reactor_->Finish(grpc::Status::OK);
  }

 private:
  grpc::CallbackServerContext* const ctx_;
  grpc::ServerUnaryReactor* const reactor_;
  inference::ModelInferResponse* const resp_;
};

}  // namespace

grpc::ServerUnaryReactor* InferenceService::ModelInfer(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelInferRequest* req,
                                                       inference::ModelInferResponse* resp) {
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  auto* reactor = new InferReactor(cancelled);
  Clock::TimePoint deadline = Clock::TimePoint::max();
  if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
    auto left = std::min<std::chrono::system_clock::duration>(
        ctx->deadline() - std::chrono::system_clock::now(), std::chrono::hours(24 * 365));
    deadline = deps_.call.clock->Now() + std::chrono::duration_cast<Clock::Duration>(left);
  }
  GrpcCredentials credentials(ctx);
  InferCall::Start(deps_.call, credentials.get(), req, deadline, std::move(cancelled),
                   std::make_unique<GrpcInferReply>(ctx, reactor, resp));
  return reactor;
}

}  // namespace fairserve
