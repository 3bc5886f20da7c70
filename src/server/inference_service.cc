#include "fairserve/server/inference_service.h"

#include <chrono>
#include <deque>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "fairserve/common/status_macros.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "fairserve/server/model_views.h"
#include "fairserve/server/tensor_codec.h"
#include "fairserve/tenancy/api_key.h"
#include "fairserve/server/grpc_auth.h"
#include "fairserve/version.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

// A reactor that remembers cancellation so queued work can be dropped.
// Both reactions are trivial (an atomic store, a delete) and run on the gRPC
// thread that completes the call. Without InternalInlineable gRPC hops every
// finished call's OnDone to its executor thread: one more wake-up and
// context switch per call (bench/profile.py counts them per thread). gRPC's
// own DefaultReactor is marked the same way for the same reason.
class InferReactor final : public grpc::ServerUnaryReactor {
 public:
  explicit InferReactor(std::shared_ptr<std::atomic<bool>> cancelled)
      : cancelled_(std::move(cancelled)) {}
  void OnCancel() override { cancelled_->store(true, std::memory_order_relaxed); }
  void OnDone() override { delete this; }
  bool InternalInlineable() override { return true; }

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

grpc::Status ToGrpcStatus(const absl::Status& status, Clock::Duration retry_after) {
  if (status.ok() || retry_after <= Clock::Duration(0)) return ToGrpcStatus(status);
  google::rpc::RetryInfo retry;
  auto delay = std::chrono::duration_cast<std::chrono::nanoseconds>(retry_after);
  retry.mutable_retry_delay()->set_seconds(delay.count() / 1'000'000'000);
  retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(delay.count() % 1'000'000'000));
  google::rpc::Status details;
  details.set_code(static_cast<int32_t>(status.code()));
  details.set_message(std::string(status.message()));
  details.add_details()->PackFrom(retry);
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      details.SerializeAsString());
}

void AddRetryAfter(grpc::ServerContextBase* ctx, Clock::Duration retry_after) {
  if (retry_after <= Clock::Duration(0)) return;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(retry_after);
  ctx->AddTrailingMetadata("retry-after-ms", std::to_string(std::max<int64_t>(1, ms.count())));
}

grpc::ServerUnaryReactor* InferenceService::RepositoryIndex(
    grpc::CallbackServerContext* ctx, const inference::RepositoryIndexRequest* req,
    inference::RepositoryIndexResponse* resp) {
  // Admins see every model; a tenant sees the models it may use.
  auto caller = Caller(ctx, CallerKind::kAny);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  *resp = DescribeRepository(*deps_.call.models, caller->tenant, req->ready());
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelStatistics(
    grpc::CallbackServerContext* ctx, const inference::ModelStatisticsRequest* req,
    inference::ModelStatisticsResponse* resp) {
  auto caller = Caller(ctx, CallerKind::kTenant);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  auto stats = DescribeStatistics(*deps_.call.models, *deps_.stats, *caller->tenant, req->name(),
                                  req->version());
  if (!stats.ok()) return Finish(ctx, ToGrpcStatus(stats.status()));
  *resp = std::move(*stats);
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::RepositoryModelLoad(
    grpc::CallbackServerContext* ctx, const inference::RepositoryModelLoadRequest* req,
    inference::RepositoryModelLoadResponse*) {
  auto admin = Caller(ctx, CallerKind::kAdmin, "RepositoryModelLoad");
  if (!admin.ok()) return Finish(ctx, ToGrpcStatus(admin.status()));
  // As Triton: a load rescans the repository first, so a model directory
  // added since the last scan can be loaded by name.
  if (absl::Status scanned = deps_.call.models->Rescan(); !scanned.ok()) {
    return Finish(ctx, ToGrpcStatus(scanned));
  }
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
  for (const std::string& e : ServedExtensions()) resp->add_extensions(e);
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelReady(grpc::CallbackServerContext* ctx,
                                                       const inference::ModelReadyRequest* req,
                                                       inference::ModelReadyResponse* resp) {
  auto caller = Caller(ctx, CallerKind::kTenant);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  absl::StatusOr<bool> servable =
      ModelServable(*deps_.call.models, *caller->tenant, req->name(), req->version());
  if (!servable.ok()) return Finish(ctx, ToGrpcStatus(servable.status()));
  resp->set_ready(*servable && deps_.call.ready->load());
  return Finish(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* InferenceService::ModelConfig(grpc::CallbackServerContext* ctx,
                                                        const inference::ModelConfigRequest* req,
                                                        inference::ModelConfigResponse* resp) {
  auto caller = Caller(ctx, CallerKind::kTenant);
  if (!caller.ok()) return Finish(ctx, ToGrpcStatus(caller.status()));
  absl::StatusOr<inference::ModelConfigResponse> config =
      DescribeModelConfig(*deps_.call.models, *caller->tenant, req->name(), req->version());
  if (!config.ok()) return Finish(ctx, ToGrpcStatus(config.status()));
  *resp = std::move(*config);
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
    AddRetryAfter(ctx_, retry_after);
    reactor_->Finish(ToGrpcStatus(status, retry_after));
  }
  bool Holdable() const override { return true; }
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

namespace {

// One ModelStreamInfer stream. Every request read from it is its own
// InferCall (authenticated from the stream's metadata, admitted, fairly
// scheduled and billed like a ModelInfer); its answer, or its refusal as
// `error_message`, is written back carrying the request's `id`, and the
// stream stays open.
//
// Bounds: at most `max_in_flight` requests per stream are read and not yet
// answered *and written*. At the bound the reactor stops reading, so HTTP/2
// flow control holds the client back, and a client that stops reading its
// answers stops its own requests: the server never queues more than
// `max_in_flight` answers for one stream. Message size: the server's
// receive limit applies to each message.
//
// Threads: reactions (OnReadDone, OnWriteDone, OnCancel, OnDone) run on
// gRPC's callback threads; answers arrive on whichever thread their call
// ends on (this reactor's reaction, the executor, a worker). They only
// queue the response under `mu` and start a write if none is running.
// Cancellation and stream end: queued requests see `cancelled` and are
// dropped by the scheduler; Finish waits for the write in progress.
// Lifetime: the reactor owns itself (`self_`) until OnDone; replies of calls
// still running hold a weak reference, so a late answer is dropped, and one
// being delivered keeps the reactor alive while it starts its write (gRPC
// may run a reaction, even OnDone, inline in StartWrite or Finish). No lock
// is held across StartWrite or Finish.
class StreamReactor final
    : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                     inference::ModelStreamInferResponse> {
 public:
  StreamReactor(grpc::CallbackServerContext* ctx, const InferCallDeps& deps, int max_in_flight)
      : ctx_(ctx),
        deps_(deps),
        max_in_flight_(max_in_flight),
        cancelled_(std::make_shared<std::atomic<bool>>(false)) {
    self_.reset(this);
    if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
      auto left = std::min<std::chrono::system_clock::duration>(
          ctx->deadline() - std::chrono::system_clock::now(), std::chrono::hours(24 * 365));
      deadline_ = deps.clock->Now() + std::chrono::duration_cast<Clock::Duration>(left);
    }
    ReadNext();
  }

  // Called by a reply, on any thread: queue `response` for writing.
  void Answer(std::unique_ptr<inference::ModelStreamInferResponse> response) {
    bool start = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.push_back(std::move(response));
      if (!writing_ && !finished_) {
        writing_ = true;
        start = true;
      }
    }
    if (start) StartWrite(pending_front());
  }

  void OnReadDone(bool ok) override {
    std::shared_ptr<StreamReactor> keep = self_;
    if (!ok) {  // the client half-closed, or the stream broke
      {
        std::lock_guard<std::mutex> lock(mu_);
        reads_done_ = true;
        reading_ = false;
      }
      MaybeFinish();
      return;
    }
    std::unique_ptr<inference::ModelInferRequest> request = std::move(next_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++in_flight_;
      reading_ = false;
    }
    const inference::ModelInferRequest* req = request.get();
    GrpcCredentials credentials(ctx_);
    // The next read first: the call may answer inline, on this thread.
    ReadNext();
    InferCall::Start(deps_, credentials.get(), req, deadline_, cancelled_,
                     std::make_unique<Reply>(self_, std::move(request)));
  }

  void OnWriteDone(bool ok) override {
    std::shared_ptr<StreamReactor> keep = self_;
    bool next = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.pop_front();
      --in_flight_;
      if (!ok) broken_ = true;
      next = !pending_.empty() && !broken_ && !finished_;
      writing_ = next;
    }
    if (next) StartWrite(pending_front());
    ReadNext();  // a slot came free
    MaybeFinish();
  }

  void OnCancel() override {
    std::shared_ptr<StreamReactor> keep = self_;
    cancelled_->store(true, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mu_);
      broken_ = true;
    }
    MaybeFinish();
  }

  // The last reaction: drops the reactor's own reference; a reply being
  // delivered may still hold one.
  void OnDone() override { self_.reset(); }

 private:
  // One request's reply end; owns the request (valid until it replies).
  class Reply final : public InferReply {
   public:
    Reply(std::weak_ptr<StreamReactor> stream,
          std::unique_ptr<inference::ModelInferRequest> request)
        : stream_(std::move(stream)), request_(std::move(request)) {}
    bool Holdable() const override { return true; }
    void Reject(const absl::Status& status, Clock::Duration retry_after) override {
      auto out = std::make_unique<inference::ModelStreamInferResponse>();
      out->set_error_message(std::string(status.message()));
      inference::ModelInferResponse* r = out->mutable_infer_response();
      r->set_model_name(request_->model_name());
      r->set_model_version(request_->model_version());
      r->set_id(request_->id());
      if (retry_after > Clock::Duration(0)) {
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(retry_after).count();
        (*r->mutable_parameters())["retry_after_ms"].set_int64_param(std::max<int64_t>(1, ms));
      }
      (*r->mutable_parameters())["error_code"].set_string_param(
          absl::StatusCodeToString(status.code()));
      Deliver(std::move(out));
    }
    void Finish(InferenceResult result, const std::string& model_name, const std::string& version,
                const std::string& id) override {
      auto out = std::make_unique<inference::ModelStreamInferResponse>();
      EncodeInferResponse(std::move(result), model_name, version, id,
                          out->mutable_infer_response());
      Deliver(std::move(out));
    }

   private:
    void Deliver(std::unique_ptr<inference::ModelStreamInferResponse> out) {
      if (std::shared_ptr<StreamReactor> stream = stream_.lock()) stream->Answer(std::move(out));
    }
    const std::weak_ptr<StreamReactor> stream_;
    const std::unique_ptr<inference::ModelInferRequest> request_;
  };

  const inference::ModelStreamInferResponse* pending_front() {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_.front().get();
  }

  // Starts the next read unless one is running, reading is over, or the
  // stream is at its in-flight bound.
  void ReadNext() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (reading_ || reads_done_ || broken_ || finished_ || in_flight_ >= max_in_flight_) return;
      reading_ = true;
    }
    next_ = std::make_unique<inference::ModelInferRequest>();
    StartRead(next_.get());
  }

  // Finishes once nothing is left to do: the client is done sending and
  // every request is answered and written, or the stream broke and no
  // read or write is running.
  void MaybeFinish() {
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_ || writing_ || reading_) return;
      if (broken_) {
        status = grpc::Status::CANCELLED;
      } else if (reads_done_ && in_flight_ == 0) {
        status = grpc::Status::OK;
      } else {
        return;
      }
      finished_ = true;
    }
    Finish(status);
  }

  grpc::CallbackServerContext* const ctx_;
  const InferCallDeps& deps_;
  const int max_in_flight_;
  const std::shared_ptr<std::atomic<bool>> cancelled_;
  // This reactor, until OnDone. Read only by reactions, which gRPC never
  // runs at the same time as OnDone.
  std::shared_ptr<StreamReactor> self_;
  Clock::TimePoint deadline_ = Clock::TimePoint::max();
  // The request being read; touched only by ReadNext and OnReadDone, which
  // never overlap (one read at a time).
  std::unique_ptr<inference::ModelInferRequest> next_;

  std::mutex mu_;
  std::deque<std::unique_ptr<inference::ModelStreamInferResponse>> pending_;  // guarded by mu_
  int in_flight_ = 0;       // read, not yet answered and written; guarded by mu_
  bool reading_ = false;    // a read is running; guarded by mu_
  bool writing_ = false;    // a write is running; guarded by mu_
  bool reads_done_ = false;  // guarded by mu_
  bool broken_ = false;      // cancelled or a write failed; guarded by mu_
  bool finished_ = false;    // guarded by mu_
};

}  // namespace

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
InferenceService::ModelStreamInfer(grpc::CallbackServerContext* ctx) {
  return new StreamReactor(ctx, deps_.call, deps_.stream_max_in_flight);
}

}  // namespace fairserve
