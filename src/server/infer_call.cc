#include "fairserve/server/infer_call.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "fairserve/server/tensor_codec.h"

namespace fairserve {
namespace {

// The longest a deadline may lie ahead; later ones (a `timeout` of years, a
// gRPC deadline in the far future) mean the same as none, and capping them
// keeps `now + timeout` far from overflowing.
constexpr std::chrono::hours kMaxDeadlineAhead(24);

}  // namespace

const char* InferCall::StateName(State s) {
  switch (s) {
    case State::kNew: return "new";
    case State::kAuthenticated: return "authenticated";
    case State::kAdmitted: return "admitted";
    case State::kModelAcquired: return "model acquired";
    case State::kDecoded: return "decoded";
    case State::kQueued: return "queued";
    case State::kAnswered: return "answered";
    case State::kRejected: return "rejected";
  }
  return "?";
}

absl::StatusOr<Clock::TimePoint> RequestDeadline(const inference::ModelInferRequest& req,
                                                 Clock::TimePoint now,
                                                 Clock::TimePoint transport_deadline) {
  using std::chrono::microseconds;
  Clock::TimePoint deadline = transport_deadline;
  if (deadline != Clock::TimePoint::max() && deadline - now > kMaxDeadlineAhead) {
    deadline = Clock::TimePoint::max();
  }
  auto it = req.parameters().find("timeout");
  if (it == req.parameters().end()) return deadline;
  const int64_t max_us = std::chrono::duration_cast<microseconds>(kMaxDeadlineAhead).count();
  int64_t us = 0;
  if (it->second.has_int64_param()) {
    if (it->second.int64_param() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "parameter 'timeout' must be >= 0 microseconds (0 = none), got ",
          it->second.int64_param()));
    }
    us = std::min(it->second.int64_param(), max_us);
  } else if (it->second.has_uint64_param()) {
    us = static_cast<int64_t>(std::min<uint64_t>(it->second.uint64_param(), max_us));
  } else {
    return absl::InvalidArgumentError(
        "parameter 'timeout' must be an integer (int64_param or uint64_param), in microseconds");
  }
  if (us > 0) deadline = std::min(deadline, now + microseconds(us));
  return deadline;
}

absl::Status CheckModelAccess(const ModelCache& models, const TenantConfig& tenant,
                              const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("model name is empty");
  absl::StatusOr<std::string> owner = models.Owner(name);
  if (!owner.ok()) return owner.status();
  bool allowed = tenant.AllowsModel(name) && (owner->empty() || *owner == tenant.id);
  if (!allowed) {
    return absl::PermissionDeniedError(
        absl::StrCat("tenant '", tenant.id, "' may not use model '", name, "'"));
  }
  return absl::OkStatus();
}

InferCall::InferCall(const InferCallDeps& deps, const inference::ModelInferRequest* request,
                     std::unique_ptr<InferReply> reply)
    : deps_(deps), request_(request), reply_(std::move(reply)) {}

void InferCall::Start(const InferCallDeps& deps, const Credentials& credentials,
                      const inference::ModelInferRequest* request,
                      Clock::TimePoint transport_deadline,
                      std::shared_ptr<std::atomic<bool>> cancelled,
                      std::unique_ptr<InferReply> reply) {
  auto call = std::make_shared<InferCall>(deps, request, std::move(reply));
  call->arrival_ = deps.clock->Now();
  call->front_end_thread_ = std::this_thread::get_id();
  call->transport_deadline_ = transport_deadline;
  call->cancelled_ = std::move(cancelled);
  call->runtime_ = deps.runtime->Get();
  call->Authenticate(credentials);
}

void InferCall::Authenticate(const Credentials& credentials) {
  Clock::Duration retry_after{0};
  absl::StatusOr<Principal> p =
      deps_.authenticator->AuthenticateTenant(runtime_->tenants, credentials, &retry_after);
  if (!p.ok()) return Reject(p.status(), retry_after, /*counted=*/true);
  principal_ = std::move(*p);
  limits_ = runtime_->admission->Find(principal_.tenant->id);
  state_ = State::kAuthenticated;
  if (!deps_.ready->load()) {
    return Reject(absl::UnavailableError(
        "the server is not ready (starting up or shutting down); retry on another replica"));
  }
  Admit();
}

void InferCall::Admit() {
  // Limits first: a refused request costs a hash and a few atomics (or one
  // Redis round trip), and its payload is never decoded.
  const int64_t bytes = static_cast<int64_t>(request_->ByteSizeLong());
  if (!deps_.admission->shared()) {
    // Local limits answer at once: no hand-off, no allocation for it.
    return OnAdmitted(deps_.admission->Admit(limits_, bytes));
  }
  std::shared_ptr<InferCall> self = shared_from_this();
  AskThenContinue<Admission::Decision>(
      *deps_.executor,
      [&](auto done) { deps_.admission->AdmitAsync(limits_, bytes, done); },
      [self](Admission::Decision d) { self->OnAdmitted(std::move(d)); });
}

void InferCall::OnAdmitted(Admission::Decision decision) {
  if (!decision.status.ok()) {
    return Reject(decision.status, decision.retry_after, /*counted=*/true);
  }
  admitted_ = std::move(decision);
  state_ = State::kAdmitted;
  absl::Status access = CheckModelAccess(*deps_.models, *principal_.tenant, request_->model_name());
  if (!access.ok()) return Reject(access);
  absl::StatusOr<Clock::TimePoint> deadline =
      RequestDeadline(*request_, arrival_, transport_deadline_);
  if (!deadline.ok()) return Reject(deadline.status());
  deadline_ = *deadline;
  AcquireModel();
}

void InferCall::AcquireModel() {
  // Resident: no callbacks to build.
  if (std::shared_ptr<const Servable> ready =
          deps_.models->AcquireIfReady(request_->model_name(), request_->model_version())) {
    return OnModel(std::move(ready));
  }
  using Acquired = absl::StatusOr<std::shared_ptr<const Servable>>;
  std::shared_ptr<InferCall> self = shared_from_this();
  Admission& admission = *deps_.admission;
  TenantAdmission* limits = limits_.get();
  const std::string& tenant = principal_.tenant->id;
  // A cache miss spends the tenant's model_loads_per_second budget; the
  // gate runs inside Acquire, on this thread.
  ModelCache::LoadGate may_load = [&admission, limits, &tenant] {
    return admission.AdmitModelLoad(limits, tenant);
  };
  AskThenContinue<Acquired>(
      *deps_.executor,
      [&](auto done) {
        deps_.models->Acquire(request_->model_name(), request_->model_version(), done, may_load);
      },
      [self](Acquired servable) { self->OnModel(std::move(servable)); });
}

void InferCall::OnModel(absl::StatusOr<std::shared_ptr<const Servable>> servable) {
  if (!servable.ok()) return Reject(servable.status());
  servable_ = std::move(*servable);
  state_ = State::kModelAcquired;
  DecodeAndQueue();
}

void InferCall::DecodeAndQueue() {
  const TenantConfig& tenant = *principal_.tenant;
  auto request = std::make_unique<InferenceRequest>();
  request->id = request_->id();
  request->tenant_id = tenant.id;
  request->tenant_weight = tenant.weight;
  request->max_batch_size = tenant.max_batch_size;
  request->max_response_bytes = deps_.max_response_bytes;
  request->arrival = arrival_;
  request->deadline = deadline_;
  request->cancelled = cancelled_;
  request->servable = servable_;
  absl::Status decoded =
      DecodeInferRequest(*request_, servable_->config, request->max_batch_size, request.get());
  if (!decoded.ok()) return Reject(decoded);
  // The queue place travels with the request (the scheduler drops it when
  // the request starts to run); the in-flight slot stays here, until the
  // answer (OnDone, Reject).
  request->waiting = std::make_shared<WaitSlot>(std::move(admitted_.waiting));
  rows_ = request->batch_size;
  state_ = State::kDecoded;
  std::shared_ptr<InferCall> self = shared_from_this();
  request->on_done = [self](absl::StatusOr<InferenceResult> result) {
    self->OnDone(std::move(result));
  };
  // Never on the executor: other calls' continuations wait there.
  request->may_run_on_caller = std::this_thread::get_id() == front_end_thread_;
  // Set before Submit: from then on a worker may answer at any moment (or
  // this thread, inside Submit).
  state_ = State::kQueued;
  absl::Status submitted = deps_.scheduler->Submit(std::move(request));
  if (!submitted.ok()) Reject(submitted);
}

void InferCall::OnDone(absl::StatusOr<InferenceResult> result) {
  state_ = State::kAnswered;
  // First: a client that sends its next request the moment it has this
  // answer finds its in-flight slot (and pending bytes) free.
  admitted_.slot.Release();
  const std::string& tenant = principal_.tenant->id;
  const std::string& model = request_->model_name();
  Clock::Duration total = deps_.clock->Now() - arrival_;
  const absl::StatusCode code = result.status().code();
  deps_.metrics->RequestDone(tenant, model, code, total);
  AccessRecord record{tenant, model, servable_->version, request_->id(), code, rows_};
  record.total_ms = std::chrono::duration<double, std::milli>(total).count();
  if (result.ok()) {
    record.batch_samples = result->batch_samples;
    record.queue_ms = std::chrono::duration<double, std::milli>(result->queue_time).count();
    record.compute_ms = result->compute_seconds * 1e3;
  }
  deps_.access_log->Log(std::move(record));
  if (!result.ok()) {
    reply_->Reject(result.status(), Clock::Duration(0));
    return;
  }
  reply_->Finish(std::move(*result), model, servable_->version, request_->id());
}

void InferCall::Reject(const absl::Status& status, Clock::Duration retry_after, bool counted) {
  state_ = State::kRejected;
  // Admitted, then refused (no access, bad input, model failed to load):
  // the slots go back before the answer, so the client's next request finds
  // them free.
  admitted_.waiting.Release();
  admitted_.slot.Release();
  // Admission and the authenticator count their own refusals on per-tenant
  // atomics and write no access-log line, so a flood of refused calls costs
  // almost nothing; every other refusal is counted and logged here.
  if (!counted && principal_.tenant != nullptr) {
    deps_.metrics->RequestRejected(principal_.tenant->id, status.code());
    AccessRecord record;
    record.tenant_id = principal_.tenant->id;
    record.model = request_->model_name();
    record.request_id = request_->id();
    record.code = status.code();
    deps_.access_log->Log(std::move(record));
  }
  // A closed-loop client that retries at once gets its refusal at the retry
  // point instead of now, so it refuses itself no faster than its limit
  // refills (RejectionHolder); the hint then says how much is left.
  if (retry_after > Clock::Duration(0) && deps_.rejection_holder != nullptr &&
      principal_.tenant != nullptr && reply_->Holdable()) {
    const Clock::TimePoint retry_at = deps_.clock->Now() + retry_after;
    auto self = shared_from_this();
    if (deps_.rejection_holder->Hold(
            principal_.tenant->id, std::min({retry_at, deadline_, transport_deadline_}),
            [self, status, retry_at] {
              Clock::Duration left = retry_at - self->deps_.clock->Now();
              self->reply_->Reject(status, std::max(left, Clock::Duration(0)));
            })) {
      return;
    }
  }
  reply_->Reject(status, retry_after);
}

}  // namespace fairserve
