#include "fairserve/server/inference_service.h"

#include <chrono>
#include <map>

#include "absl/strings/str_cat.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/server/tensor_codec.h"
#include "fairserve/tenancy/api_key.h"
#include "fairserve/tenancy/auth_throttle.h"
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

absl::string_view Metadata(const grpc::CallbackServerContext* ctx, absl::string_view key) {
  auto it = ctx->client_metadata().find(grpc::string_ref(key.data(), key.size()));
  if (it == ctx->client_metadata().end()) return {};
  return absl::string_view(it->second.data(), it->second.size());
}

// Subject CN and SANs of the client certificate the TLS handshake verified
// (empty without mutual TLS).
std::vector<std::string> CertificateNames(const grpc::CallbackServerContext* ctx) {
  std::vector<std::string> names;
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return names;
  for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      names.emplace_back(v.data(), v.size());
    }
  }
  return names;
}

// The client's deadline, from the call or the `timeout` parameter (µs).
Clock::TimePoint Deadline(const grpc::CallbackServerContext* ctx,
                          const inference::ModelInferRequest& req, Clock::TimePoint now) {
  Clock::TimePoint deadline = Clock::TimePoint::max();
  auto call_deadline = ctx->deadline();
  if (call_deadline != std::chrono::system_clock::time_point::max()) {
    auto left = call_deadline - std::chrono::system_clock::now();
    deadline = now + std::chrono::duration_cast<Clock::Duration>(left);
  }
  auto it = req.parameters().find("timeout");
  if (it != req.parameters().end()) {
    int64_t us = 0;
    if (it->second.has_int64_param()) us = it->second.int64_param();
    if (it->second.has_uint64_param()) us = static_cast<int64_t>(it->second.uint64_param());
    if (us > 0) deadline = std::min(deadline, now + std::chrono::microseconds(us));
  }
  return deadline;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status InferenceService::CheckThrottle(grpc::CallbackServerContext* ctx,
                                            const std::string& peer) const {
  Clock::Duration wait = deps_.auth_throttle->Blocked(peer);
  if (wait <= Clock::Duration(0)) return absl::OkStatus();
  ctx->AddTrailingMetadata(
      "retry-after-ms",
      std::to_string(std::chrono::ceil<std::chrono::milliseconds>(wait).count()));
  return deps_.auth_throttle->Check(peer);
}

absl::StatusOr<InferenceService::Caller> InferenceService::Authenticate(
    grpc::CallbackServerContext* ctx) const {
  std::string peer(PeerHost(ctx->peer()));
  RETURN_IF_ERROR(CheckThrottle(ctx, peer));
  Caller caller;
  caller.registry = deps_.tenants->Get();
  absl::string_view key = ExtractApiKey(Metadata(ctx, "authorization"), Metadata(ctx, "x-api-key"));
  // A key, when given, decides; without one a verified client certificate may.
  caller.tenant = key.empty() ? caller.registry->AuthenticateCertificate(CertificateNames(ctx))
                              : caller.registry->Authenticate(key);
  if (caller.tenant == nullptr) {
    deps_.metrics->Unauthenticated();
    deps_.auth_throttle->RecordFailure(peer);
    return absl::UnauthenticatedError(
        "missing or invalid API key; send metadata 'authorization: Bearer <key>' or "
        "'x-api-key: <key>' (or, with mutual TLS, a client certificate named in a tenant's "
        "client_cert_names)");
  }
  return caller;
}

absl::Status InferenceService::RequireAdmin(grpc::CallbackServerContext* ctx,
                                            const char* what) const {
  std::string peer(PeerHost(ctx->peer()));
  RETURN_IF_ERROR(CheckThrottle(ctx, peer));
  std::shared_ptr<const TenantRegistry> registry = deps_.tenants->Get();
  absl::string_view key = ExtractApiKey(Metadata(ctx, "authorization"), Metadata(ctx, "x-api-key"));
  if (registry->IsAdmin(key)) return absl::OkStatus();
  if (registry->Authenticate(key) != nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(what, " needs an admin key"));
  }
  deps_.metrics->Unauthenticated();
  deps_.auth_throttle->RecordFailure(peer);
  return absl::UnauthenticatedError(
      absl::StrCat(what, " needs an admin key (server.admin_api_keys) in 'authorization: Bearer "
                         "<key>'"));
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(
    grpc::CallbackServerContext* ctx, const inference::RepositoryIndexRequest* req,
    inference::RepositoryIndexResponse* resp) {
  // Admins see every model; a tenant sees the models it may use.
  const TenantConfig* tenant = nullptr;
  if (!RequireAdmin(ctx, "").ok()) {
    auto caller = Authenticate(ctx);
    if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
    tenant = caller->tenant;
  }
  for (const ModelState& m : deps_.models->Index()) {
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
  auto caller = Authenticate(ctx);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  if (!req->name().empty()) {
    auto config = CheckModelAccess(*caller->tenant, req->name());
    if (!config.ok()) return Finish(ctx, ToGrpcStatus(config.status()));
  }
  std::map<std::pair<std::string, std::string>, uint64_t> resident;
  for (const ModelState& m : deps_.models->Index()) {
    if (m.state == "READY") resident[{m.name, m.version}] = m.bytes;
  }
  auto fill = [](const ModelStats::Duration& d, inference::StatisticDuration* out) {
    out->set_count(d.count);
    out->set_ns(d.ns);
  };
  for (const auto& [name, versions] : deps_.stats->Snapshot()) {
    if (!req->name().empty() && name != req->name()) continue;
    if (req->name().empty() && !CheckModelAccess(*caller->tenant, name).ok()) continue;
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
  absl::Status admin = RequireAdmin(ctx, "RepositoryModelLoad");
  if (!admin.ok()) return Finish(ctx, ToGrpcStatus(admin));
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  deps_.models->Acquire(req->model_name(), "",
                        [reactor](absl::StatusOr<std::shared_ptr<const Servable>> s) {
                          reactor->Finish(ToGrpcStatus(s.status()));
                        });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelUnload(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelUnloadRequest* req,
    inference::RepositoryModelUnloadResponse*) {
  absl::Status admin = RequireAdmin(ctx, "RepositoryModelUnload");
  if (!admin.ok()) return Finish(ctx, ToGrpcStatus(admin));
  return Finish(ctx, ToGrpcStatus(deps_.models->Unload(req->model_name())));
}

absl::StatusOr<ModelConfig> InferenceService::CheckModelAccess(const TenantConfig& tenant,
                                                               const std::string& name) const {
  if (name.empty()) return absl::InvalidArgumentError("model name is empty");
  ASSIGN_OR_RETURN(ModelConfig config, deps_.models->GetConfig(name));
  bool allowed = tenant.AllowsModel(name) && (config.owner.empty() || config.owner == tenant.id);
  if (!allowed) {
    return absl::PermissionDeniedError(
        absl::StrCat("tenant '", tenant.id, "' may not use model '", name, "'"));
  }
  return config;
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
  resp->set_ready(deps_.ready->load());
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
  auto caller = Authenticate(ctx);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  auto config = CheckModelAccess(*caller->tenant, req->name());
  if (!config.ok()) return Finish(ctx, ToGrpcStatus(config.status()));
  auto servable = deps_.models->GetResident(req->name(), req->version());
  if (!servable.ok() && servable.status().code() == absl::StatusCode::kNotFound) {
    return Finish(ctx, ToGrpcStatus(servable.status()));
  }
  resp->set_ready(servable.ok() && deps_.ready->load());
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelMetadata(
    grpc::CallbackServerContext* ctx, const inference::ModelMetadataRequest* req,
    inference::ModelMetadataResponse* resp) {
  auto caller = Authenticate(ctx);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  auto config = CheckModelAccess(*caller->tenant, req->name());
  if (!config.ok()) return Finish(ctx, ToGrpcStatus(config.status()));
  std::vector<std::string> versions = deps_.models->Versions(req->name());
  if (!req->version().empty() &&
      std::find(versions.begin(), versions.end(), req->version()) == versions.end()) {
    return Finish(ctx, grpc::Status(grpc::StatusCode::NOT_FOUND,
                                    absl::StrCat("model '", req->name(), "' has no version '",
                                                 req->version(), "'")));
  }
  resp->set_name(config->name);
  for (const std::string& v : versions) resp->add_versions(v);
  resp->set_platform(config->platform);
  auto fill = [](const std::vector<TensorSpec>& specs, auto* list) {
    for (const TensorSpec& s : specs) {
      auto* m = list->Add();
      m->set_name(s.name);
      m->set_datatype(std::string(DataTypeName(s.dtype)));
      for (int64_t d : s.shape) m->add_shape(d);
    }
  };
  fill(config->inputs, resp->mutable_inputs());
  fill(config->outputs, resp->mutable_outputs());
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelInfer(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelInferRequest* req,
                                                       inference::ModelInferResponse* resp) {
  auto caller = Authenticate(ctx);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  if (!deps_.ready->load()) {
    return Finish(ctx, grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    "the server is not ready (starting up or shutting down); "
                                    "retry on another replica"));
  }
  // Limits first: a throttled request costs a hash and a few atomics (or
  // one Redis round trip with a shared limiter, answered on its thread), and
  // its payload is never looked at.
  auto pending = std::make_shared<PendingInfer>();
  pending->request = std::make_unique<InferenceRequest>();
  pending->reactor = new InferReactor(pending->request->cancelled);
  pending->ctx = ctx;
  pending->req = req;
  pending->resp = resp;
  pending->registry = std::move(caller->registry);
  pending->tenant = caller->tenant;
  grpc::ServerUnaryReactor* reactor = pending->reactor;
  deps_.admission->AdmitAsync(pending->tenant->id, [this, pending](Admission::Decision admitted) {
    ContinueAdmitted(pending, std::move(admitted));
  });
  return reactor;
}

void InferenceService::ContinueAdmitted(std::shared_ptr<PendingInfer> self,
                                        Admission::Decision admitted) {
  PendingInfer& pending = *self;
  if (!admitted.status.ok()) {
    if (admitted.retry_after > Clock::Duration(0)) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(admitted.retry_after);
      pending.ctx->AddTrailingMetadata("retry-after-ms",
                                       std::to_string(std::max<int64_t>(1, ms.count())));
    }
    pending.reactor->Finish(ToGrpcStatus(admitted.status));
    return;
  }
  const TenantConfig& tenant = *pending.tenant;
  const inference::ModelInferRequest& req = *pending.req;
  auto config = CheckModelAccess(tenant, req.model_name());
  if (!config.ok()) {
    LogRejected(tenant.id, req, config.status());
    pending.reactor->Finish(ToGrpcStatus(config.status()));
    return;
  }
  InferenceRequest& request = *pending.request;
  request.id = req.id();
  request.tenant_id = tenant.id;
  request.tenant_weight = tenant.weight;
  request.max_batch_size = tenant.max_batch_size;
  request.arrival = deps_.clock->Now();
  request.deadline = Deadline(pending.ctx, req, request.arrival);
  request.queued_counter = std::move(admitted.queued);
  request.hold = std::make_shared<InflightSlot>(std::move(admitted.slot));
  // The rest runs once the model is resident: right here on a cache hit, on
  // the cache's loader thread after a load, never blocking this thread.
  deps_.models->Acquire(
      req.model_name(), req.model_version(),
      [this, self](absl::StatusOr<std::shared_ptr<const Servable>> servable) {
        ContinueInfer(*self, std::move(servable));
      },
      tenant.id);
}

void InferenceService::LogRejected(const std::string& tenant,
                                   const inference::ModelInferRequest& req,
                                   const absl::Status& status) const {
  deps_.metrics->RequestRejected(tenant, status.code());
  AccessRecord record;
  record.tenant_id = tenant;
  record.model = req.model_name();
  record.request_id = req.id();
  record.code = status.code();
  deps_.access_log->Log(record);
}

void InferenceService::ContinueInfer(PendingInfer& pending,
                                     absl::StatusOr<std::shared_ptr<const Servable>> servable) {
  std::unique_ptr<InferenceRequest> request = std::move(pending.request);
  const inference::ModelInferRequest& req = *pending.req;
  grpc::ServerUnaryReactor* reactor = pending.reactor;
  absl::Status status = servable.status();
  if (status.ok()) {
    request->servable = *servable;
    status = DecodeInferRequest(req, (*servable)->config, request->max_batch_size, request.get());
  }
  if (!status.ok()) {
    LogRejected(request->tenant_id, req, status);
    reactor->Finish(ToGrpcStatus(status));
    return;
  }
  std::string tenant_id = request->tenant_id;
  request->on_done = [reactor, resp = pending.resp, model_name = req.model_name(),
                      version = (*servable)->version, id = req.id(), now = request->arrival,
                      tenant_id, rows = request->batch_size, metrics = deps_.metrics,
                      access_log = deps_.access_log,
                      clock = deps_.clock](absl::StatusOr<InferenceResult> result) {
    Clock::Duration total = clock->Now() - now;
    metrics->RequestDone(tenant_id, model_name, result.status().code(), total);
    AccessRecord record{tenant_id, model_name, version, id, result.status().code(), rows};
    record.total_ms = std::chrono::duration<double, std::milli>(total).count();
    if (result.ok()) {
      record.batch_samples = result->batch_samples;
      record.queue_ms = std::chrono::duration<double, std::milli>(result->queue_time).count();
      record.compute_ms = result->compute_seconds * 1e3;
    }
    access_log->Log(record);
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    EncodeInferResponse(std::move(*result), model_name, version, id, resp);
    reactor->Finish(grpc::Status::OK);
  };
  absl::Status submitted = deps_.scheduler->Submit(std::move(request));
  if (!submitted.ok()) {
    deps_.metrics->RequestRejected(tenant_id, submitted.code());
    reactor->Finish(ToGrpcStatus(submitted));
  }
}

}  // namespace fairserve
