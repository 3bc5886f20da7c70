#ifndef FAIRSERVE_SERVER_INFERENCE_SERVICE_H_
#define FAIRSERVE_SERVER_INFERENCE_SERVICE_H_

#include <atomic>
#include <memory>

#include "fairserve/metering/model_stats.h"
#include "fairserve/server/grpc_auth.h"
#include "fairserve/server/infer_call.h"
#include "inference/grpc_service.grpc.pb.h"

namespace fairserve {

// What the inference service needs from the daemon. Not owned.
struct InferenceServiceDeps {
  InferCallDeps call;  // what every ModelInfer call needs
  const ModelStats* stats = nullptr;
  // Requests one ModelStreamInfer stream may have read and not yet
  // answered (server.stream_max_in_flight).
  int stream_max_in_flight = 64;
};

// inference.GRPCInferenceService on gRPC's callback API, a front end of
// InferCall. Handlers never block: ModelInfer reads the call's credentials
// and deadline, starts an InferCall and returns; the call finishes on the
// server's executor or a scheduler worker. RPCs not overridden answer
// UNIMPLEMENTED.
class InferenceService final : public inference::GRPCInferenceService::CallbackService {
 public:
  explicit InferenceService(InferenceServiceDeps deps) : deps_(deps) {}

  // What each call needs; other front ends (REST) start their calls with it.
  const InferCallDeps& call_deps() const { return deps_.call; }

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
  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* ctx,
                                        const inference::ModelConfigRequest* req,
                                        inference::ModelConfigResponse* resp) override;
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
  // The bidirectional stream: each request is its own InferCall; answers
  // and refusals (error_message) come back with the request's id, in the
  // order they finish, and the stream stays open.
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext* ctx) override;

 private:
  // Authenticates the call against the current runtime snapshot.
  absl::StatusOr<Principal> Caller(grpc::ServerContextBase* ctx, CallerKind kind,
                                   absl::string_view what = "") const;

  InferenceServiceDeps deps_;
};

// absl::Status -> grpc::Status (the codes map one to one).
grpc::Status ToGrpcStatus(const absl::Status& status);
// The same, and when `retry_after` > 0 the standard retry hint: a
// google.rpc.Status with a google.rpc.RetryInfo detail in the status
// details (grpc-status-details-bin), which gRPC clients' retry helpers read.
grpc::Status ToGrpcStatus(const absl::Status& status, Clock::Duration retry_after);
// Adds fairserve's own hint, trailing metadata `retry-after-ms` (whole
// milliseconds, rounded up), when `retry_after` > 0.
void AddRetryAfter(grpc::ServerContextBase* ctx, Clock::Duration retry_after);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_INFERENCE_SERVICE_H_
