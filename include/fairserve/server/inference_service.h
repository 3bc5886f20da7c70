#ifndef FAIRSERVE_SERVER_INFERENCE_SERVICE_H_
#define FAIRSERVE_SERVER_INFERENCE_SERVICE_H_

#include <atomic>
#include <memory>

#include "fairserve/admission/admission.h"
#include "fairserve/common/clock.h"
#include "fairserve/common/snapshot.h"
#include "fairserve/metering/model_stats.h"
#include "fairserve/metering/server_metrics.h"
#include "fairserve/server/access_log.h"
#include "fairserve/models/model_cache.h"
#include "fairserve/scheduling/scheduler.h"
#include "fairserve/tenancy/auth_throttle.h"
#include "fairserve/tenancy/tenant_registry.h"
#include "inference/grpc_service.grpc.pb.h"

namespace fairserve {

// What the inference service needs from the daemon. Not owned.
struct InferenceServiceDeps {
  Snapshot<TenantRegistry>* tenants = nullptr;
  ModelCache* models = nullptr;
  Scheduler* scheduler = nullptr;
  Admission* admission = nullptr;
  AuthThrottle* auth_throttle = nullptr;
  ServerMetrics* metrics = nullptr;
  const AccessLog* access_log = nullptr;
  const ModelStats* stats = nullptr;
  Clock* clock = nullptr;
  // False before start-up completes and once draining starts.
  const std::atomic<bool>* ready = nullptr;
};

// inference.GRPCInferenceService on gRPC's callback API. Handlers never block:
// ModelInfer authenticates from metadata, validates, queues, and returns; a
// scheduler worker finishes the call. RPCs not overridden answer UNIMPLEMENTED.
class InferenceService final : public inference::GRPCInferenceService::CallbackService {
 public:
  explicit InferenceService(InferenceServiceDeps deps) : deps_(deps) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* ctx,
                                       const inference::ServerLiveRequest* req,
                                       inference::ServerLiveResponse* resp) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* ctx,
                                        const inference::ServerReadyRequest* req,
                                        inference::ServerReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* ctx,
                                           const inference::ServerMetadataRequest* req,
                                           inference::ServerMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* ctx,
                                       const inference::ModelReadyRequest* req,
                                       inference::ModelReadyResponse* resp) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* ctx,
                                          const inference::ModelMetadataRequest* req,
                                          inference::ModelMetadataResponse* resp) override;
  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* ctx,
                                            const inference::ModelStatisticsRequest* req,
                                            inference::ModelStatisticsResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* ctx,
                                            const inference::RepositoryIndexRequest* req,
                                            inference::RepositoryIndexResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryModelLoad(grpc::CallbackServerContext* ctx,
                                                const inference::RepositoryModelLoadRequest* req,
                                                inference::RepositoryModelLoadResponse* resp) override;
  grpc::ServerUnaryReactor* RepositoryModelUnload(
      grpc::CallbackServerContext* ctx, const inference::RepositoryModelUnloadRequest* req,
      inference::RepositoryModelUnloadResponse* resp) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* ctx,
                                       const inference::ModelInferRequest* req,
                                       inference::ModelInferResponse* resp) override;

 private:
  // The tenant behind the call's API key, and the model it may use.
  struct Caller {
    std::shared_ptr<const TenantRegistry> registry;
    const TenantConfig* tenant = nullptr;
  };
  // Refuses throttled peers, and counts a failed key against the peer.
  absl::StatusOr<Caller> Authenticate(grpc::CallbackServerContext* ctx) const;
  // RESOURCE_EXHAUSTED (with a retry-after-ms trailer) while `peer` is
  // throttled for failed authentications.
  absl::Status CheckThrottle(grpc::CallbackServerContext* ctx, const std::string& peer) const;
  // OK for an admin key (server.admin_api_keys), else UNAUTHENTICATED /
  // PERMISSION_DENIED.
  absl::Status RequireAdmin(grpc::CallbackServerContext* ctx, const char* what) const;
  // NOT_FOUND for an unknown model, PERMISSION_DENIED when `tenant` may not use it.
  absl::StatusOr<ModelConfig> CheckModelAccess(const TenantConfig& tenant,
                                               const std::string& name) const;

  // A ModelInfer call between authentication and its model being resident.
  struct PendingInfer {
    std::unique_ptr<InferenceRequest> request;
    grpc::ServerUnaryReactor* reactor = nullptr;
    grpc::CallbackServerContext* ctx = nullptr;
    std::shared_ptr<const TenantRegistry> registry;  // keeps `tenant` alive
    const TenantConfig* tenant = nullptr;
    const inference::ModelInferRequest* req = nullptr;
    inference::ModelInferResponse* resp = nullptr;
  };
  // After admission (here or on the shared limiter's thread): checks the
  // model and asks the cache for it.
  void ContinueAdmitted(std::shared_ptr<PendingInfer> pending, Admission::Decision admitted);
  // Once the model is resident: decodes and queues the request.
  void ContinueInfer(PendingInfer& pending,
                     absl::StatusOr<std::shared_ptr<const Servable>> servable);
  void LogRejected(const std::string& tenant, const inference::ModelInferRequest& req,
                   const absl::Status& status) const;

  InferenceServiceDeps deps_;
};

// absl::Status -> grpc::Status (the codes map one to one).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_INFERENCE_SERVICE_H_
