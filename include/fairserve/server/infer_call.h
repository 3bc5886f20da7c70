#ifndef FAIRSERVE_SERVER_INFER_CALL_H_
#define FAIRSERVE_SERVER_INFER_CALL_H_

#include <atomic>
#include <memory>
#include <thread>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fairserve/admission/admission.h"
#include "fairserve/common/clock.h"
#include "fairserve/common/task_executor.h"
#include "fairserve/metering/server_metrics.h"
#include "fairserve/models/model_cache.h"
#include "fairserve/scheduling/scheduler.h"
#include "fairserve/server/access_log.h"
#include "fairserve/server/rejection_holder.h"
#include "fairserve/server/runtime.h"
#include "fairserve/tenancy/authenticator.h"
#include "inference/grpc_service.pb.h"

namespace fairserve {

// What every inference call needs from the server. Not owned; all of it
// outlives every call (the daemon stops its listeners, then the executor,
// before tearing these down).
struct InferCallDeps {
  // The published config, tenants and admission table; each call takes one
  // snapshot when it starts and uses it to the end.
  const Runtime* runtime = nullptr;
  const Authenticator* authenticator = nullptr;
  Admission* admission = nullptr;
  ModelCache* models = nullptr;
  Scheduler* scheduler = nullptr;
  ServerMetrics* metrics = nullptr;
  AccessLog* access_log = nullptr;
  // Holds the answers of refusals with a retry hint until their retry point
  // (when server.rejection_hold_per_tenant is set); null = never.
  RejectionHolder* rejection_holder = nullptr;
  Clock* clock = nullptr;
  TaskExecutor* executor = nullptr;
  // False before start-up completes and once draining starts.
  const std::atomic<bool>* ready = nullptr;
  // The transport's send limit: larger answers fail before they are billed.
  uint64_t max_response_bytes = 0;
};

// How a front end answers one call. Exactly one of Reject() and Finish() is
// called, exactly once, on whichever thread the call ends on: the front
// end's own thread (refused early, or its batch ran there), the server's
// executor, or a scheduler worker (after the batch ran). Implementations only hand the answer to
// their transport; they must not block.
class InferReply {
 public:
  virtual ~InferReply() = default;
  // `retry_after` > 0 when waiting would help (rate limits, throttling).
  virtual void Reject(const absl::Status& status, Clock::Duration retry_after) = 0;
  virtual void Finish(InferenceResult result, const std::string& model_name,
                      const std::string& version, const std::string& id) = 0;
  // Whether a refusal's answer may be held back (RejectionHolder) without
  // holding a thread: true where answering is a hand-off to an async
  // transport (gRPC), false where a handler thread waits for it (REST).
  virtual bool Holdable() const { return false; }
};

// One inference call, whatever front end brought it (gRPC unary today; the
// REST and streaming front ends build the same object), as an explicit
// state machine:
//
//   kNew -> kAuthenticated -> kAdmitted -> kModelAcquired -> kDecoded
//        -> kQueued -> kAnswered
//   any state before kQueued -> kRejected
//
// Every refusal goes through one Reject(), which counts it, logs it and
// answers it once. Where each step runs:
// - Authentication, admission with local limits, and a model-cache hit run
//   on the front end's thread, inline: a request that can run at once takes
//   no extra hand-off.
// - A step that finishes on someone else's thread (the Redis limiter's I/O
//   thread, the model loader's SCHED_IDLE thread) only hands the call to the
//   server's executor, where decoding and queueing continue. No component
//   calls back into the call's code on its own thread.
// - After kQueued the scheduler owns the request; a worker answers it. A
//   call still on the front end's thread (no step went through the
//   executor) lets the scheduler run a cheap batch that is ready at once
//   right there (SchedulerOptions::run_on_caller_below): that thread is this
//   call's own (a gRPC callback of this call, the REST handler waiting for
//   it), and the run takes one of the device's worker slots.
// The call object lives until its last step is done. Of the admission
// slots it takes, the waiting one travels with the queued request and the
// scheduler gives it back when the request starts to run; the in-flight one
// (with its pending bytes) stays here and is given back first thing in
// OnDone() or Reject(), just before the answer goes out (also when the
// ledger's reply gate held the answer until its commit). A client that
// sends its next request as soon as it has an answer always finds them free.
class InferCall : public std::enable_shared_from_this<InferCall> {
 public:
  enum class State {
    kNew,
    kAuthenticated,
    kAdmitted,
    kModelAcquired,
    kDecoded,
    kQueued,
    kAnswered,
    kRejected
  };
  static const char* StateName(State s);

  // Starts a call. `request` must stay valid until `reply` has been called
  // (the front end owns it). `transport_deadline` is the client's deadline
  // as the transport knows it (TimePoint::max() = none); `cancelled` is set
  // by the transport when the client goes away (null where the transport
  // cannot tell). Runs the first steps on the calling thread.
  static void Start(const InferCallDeps& deps, const Credentials& credentials,
                    const inference::ModelInferRequest* request,
                    Clock::TimePoint transport_deadline,
                    std::shared_ptr<std::atomic<bool>> cancelled,
                    std::unique_ptr<InferReply> reply);

  State state() const { return state_; }

  InferCall(const InferCallDeps& deps, const inference::ModelInferRequest* request,
            std::unique_ptr<InferReply> reply);

 private:
  void Authenticate(const Credentials& credentials);
  void Admit();
  void OnAdmitted(Admission::Decision decision);
  void AcquireModel();
  void OnModel(absl::StatusOr<std::shared_ptr<const Servable>> servable);
  void DecodeAndQueue();
  // Answers a refusal: counts it (unless `counted`: admission and the
  // authenticator count their own), logs it, and replies. Once.
  void Reject(const absl::Status& status, Clock::Duration retry_after = Clock::Duration(0),
              bool counted = false);
  // Where the batch ran (a scheduler worker, or this call's own front-end
  // thread): meters and answers the call.
  void OnDone(absl::StatusOr<InferenceResult> result);

  const InferCallDeps& deps_;
  const inference::ModelInferRequest* const request_;
  std::unique_ptr<InferReply> reply_;
  State state_ = State::kNew;
  std::shared_ptr<const RuntimeSnapshot> runtime_;  // taken once, in Start()
  Principal principal_;
  std::shared_ptr<TenantAdmission> limits_;  // the tenant's, in runtime_'s table
  Clock::TimePoint arrival_{};
  std::thread::id front_end_thread_;  // the thread Start() ran on
  Clock::TimePoint transport_deadline_ = Clock::TimePoint::max();
  std::shared_ptr<std::atomic<bool>> cancelled_;
  Clock::TimePoint deadline_ = Clock::TimePoint::max();
  int64_t rows_ = 0;  // samples, once decoded
  // The admission slots; `waiting` moves to the request when it is queued,
  // `slot` (in flight) stays until the answer.
  Admission::Decision admitted_;
  std::shared_ptr<const Servable> servable_;
};

// NOT_FOUND for an unknown model, PERMISSION_DENIED when `tenant` may not
// use it (not in its `models`, or another tenant's private model).
absl::Status CheckModelAccess(const ModelCache& models, const TenantConfig& tenant,
                              const std::string& name);

// The client's deadline: the earlier of the transport's and the request's
// `timeout` parameter (microseconds, Triton's convention; 0 = none). Both
// are capped at a day ahead, so `now + timeout` never overflows; a negative
// or non-integer timeout is INVALID_ARGUMENT.
absl::StatusOr<Clock::TimePoint> RequestDeadline(const inference::ModelInferRequest& req,
                                                 Clock::TimePoint now,
                                                 Clock::TimePoint transport_deadline);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_INFER_CALL_H_
