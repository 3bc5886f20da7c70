#include "fairserve/admission/admission.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fairserve {
namespace {

double Rate(const TenantConfig& c) {
  return c.rate_limit.requests_per_second > 0 ? c.rate_limit.requests_per_second : 1.0;
}

double Burst(const TenantConfig& c) {
  return c.rate_limit.burst > 0 ? c.rate_limit.burst
                                : std::max(1.0, c.rate_limit.requests_per_second);
}

}  // namespace

const char* RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kRateLimit: return "rate_limit";
    case RejectReason::kMaxInflight: return "max_inflight";
    case RejectReason::kMaxQueue: return "max_queue";
    case RejectReason::kRateLimitBackend: return "rate_limit_backend";
    case RejectReason::kMaxPendingBytes: return "max_pending_bytes";
    default: return "none";
  }
}

namespace {

double LoadRate(const TenantConfig& c) {
  return c.model_loads_per_second > 0 ? c.model_loads_per_second : 1.0;
}

std::string RetryAfterText(Clock::Duration d) {
  return absl::StrFormat("retry after %d ms",
                         std::chrono::ceil<std::chrono::milliseconds>(d).count());
}

}  // namespace

TenantAdmission::TenantAdmission(const TenantConfig& config, const std::string& key_prefix,
                                 int64_t replicas)
    : bucket_key_(absl::StrCat(key_prefix, "rl:", config.id)),
      bucket_(Rate(config), Burst(config)),
      load_bucket_(LoadRate(config), std::max(1.0, LoadRate(config))),
      fallback_bucket_(Rate(config) / replicas, std::max(1.0, Burst(config) / replicas)) {
  SetLimits(config);
}

void TenantAdmission::SetLimits(const TenantConfig& config) {
  max_inflight_.store(config.max_inflight, std::memory_order_relaxed);
  max_queue_.store(config.max_queue, std::memory_order_relaxed);
  max_pending_bytes_.store(static_cast<int64_t>(config.max_pending_bytes),
                           std::memory_order_relaxed);
  limited_.store(config.rate_limit.requests_per_second > 0, std::memory_order_relaxed);
  rate_.store(Rate(config), std::memory_order_relaxed);
  burst_.store(Burst(config), std::memory_order_relaxed);
  loads_limited_.store(config.model_loads_per_second > 0, std::memory_order_relaxed);
}

void TenantAdmission::Reconfigure(const TenantConfig& config, int64_t replicas,
                                  Clock::TimePoint now) {
  SetLimits(config);
  bucket_.Reconfigure(Rate(config), Burst(config), now);
  fallback_bucket_.Reconfigure(Rate(config) / replicas, std::max(1.0, Burst(config) / replicas),
                               now);
  // A new rate changes when the shared bucket refills: ask again.
  denied_until_.store(0, std::memory_order_relaxed);
  load_bucket_.Reconfigure(LoadRate(config), std::max(1.0, LoadRate(config)), now);
}

void Admission::SetSharedLimiter(std::shared_ptr<SharedRateLimiter> limiter,
                                 SharedPolicy policy) {
  shared_ = std::move(limiter);
  policy_ = std::move(policy);
  policy_.replicas = std::max<int64_t>(1, policy_.replicas);
}

std::shared_ptr<const AdmissionTable> Admission::BuildTable(const Config& config,
                                                            const AdmissionTable* previous) const {
  auto table = std::make_shared<AdmissionTable>();
  for (const TenantConfig& t : config.tenants) {
    std::shared_ptr<TenantAdmission> state = previous ? previous->Find(t.id) : nullptr;
    if (state) {
      state->Reconfigure(t, policy_.replicas, clock_.Now());
    } else {
      state = std::make_shared<TenantAdmission>(t, policy_.key_prefix, policy_.replicas);
    }
    table->tenants_[t.id] = std::move(state);
  }
  return table;
}

absl::Status Admission::AdmitModelLoad(TenantAdmission* t, const std::string& tenant_id) {
  if (!t || !t->loads_limited_.load(std::memory_order_relaxed)) return absl::OkStatus();
  TokenBucket::Decision d = t->load_bucket_.TryAcquire(clock_.Now());
  if (d.allowed) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "tenant '", tenant_id,
      "' is loading models faster than its model_loads_per_second allows (its requests keep "
      "missing the model cache); ",
      RetryAfterText(d.retry_after), " or use fewer models at once"));
}

void Admission::Reject(TenantAdmission& t, RejectReason reason, absl::Status status,
                       Clock::Duration retry_after, Decision* d) {
  t.rejected_[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
  d->reason = reason;
  d->status = std::move(status);
  d->retry_after = std::max(retry_after, Clock::Duration(std::chrono::milliseconds(1)));
  d->slot = InflightSlot();
  d->waiting = WaitSlot();
}

Admission::Decision Admission::CheckLocal(const std::shared_ptr<TenantAdmission>& t,
                                          bool take_token, int64_t bytes) {
  Decision d;
  if (!t) {
    d.reason = RejectReason::kMaxInflight;
    d.status = absl::UnauthenticatedError("tenant is no longer configured");
    return d;
  }
  // Each count is taken first and given back on refusal, so concurrent
  // admissions never overshoot a bound. From here on the slots give them
  // back on every path below.
  const int64_t max_queue = t->max_queue_.load(std::memory_order_relaxed);
  if (t->waiting_.fetch_add(1, std::memory_order_relaxed) >= max_queue) {
    t->waiting_.fetch_sub(1, std::memory_order_relaxed);
    Reject(*t, RejectReason::kMaxQueue,
           absl::ResourceExhaustedError(absl::StrCat(
               "tenant queue is full (max_queue ", max_queue,
               " requests admitted and not yet running); retry later")),
           std::chrono::milliseconds(10), &d);
    return d;
  }
  d.waiting = WaitSlot(t);
  const int64_t max_bytes = t->max_pending_bytes_.load(std::memory_order_relaxed);
  const int64_t held = t->pending_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  if (held > 0 && held + bytes > max_bytes) {  // one request alone may always pass
    t->pending_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    Reject(*t, RejectReason::kMaxPendingBytes,
           absl::ResourceExhaustedError(absl::StrCat(
               "tenant's unanswered requests already hold ", held, " bytes of payload "
               "(max_pending_bytes ", max_bytes, "); retry after 10 ms")),
           std::chrono::milliseconds(10), &d);
    return d;
  }
  int64_t max_inflight = t->max_inflight_.load(std::memory_order_relaxed);
  if (t->inflight_.fetch_add(1, std::memory_order_relaxed) >= max_inflight && max_inflight > 0) {
    t->inflight_.fetch_sub(1, std::memory_order_relaxed);
    t->pending_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    Reject(*t, RejectReason::kMaxInflight,
           absl::ResourceExhaustedError(absl::StrCat("too many requests in flight (max_inflight ",
                                                     max_inflight,
                                                     "); wait for earlier requests to finish")),
           std::chrono::milliseconds(5), &d);
    return d;
  }
  d.slot = InflightSlot(t, bytes);
  if (take_token && t->limited_.load(std::memory_order_relaxed)) {
    TokenBucket::Decision b = t->bucket_.TryAcquire(clock_.Now());
    if (!b.allowed) {
      Reject(*t, RejectReason::kRateLimit,
             absl::ResourceExhaustedError(
                 absl::StrCat("rate limit exceeded; ", RetryAfterText(b.retry_after))),
             b.retry_after, &d);
    }
  }
  return d;
}

Admission::Decision Admission::Admit(const std::shared_ptr<TenantAdmission>& tenant,
                                     int64_t bytes) {
  return CheckLocal(tenant, /*take_token=*/true, bytes);
}

void Admission::AdmitAsync(std::shared_ptr<TenantAdmission> t, int64_t bytes,
                           AdmitCallback done) {
  Decision d = CheckLocal(t, /*take_token=*/shared_ == nullptr, bytes);
  if (!d.status.ok() || shared_ == nullptr || !t->limited_.load(std::memory_order_relaxed)) {
    done(std::move(d));
    return;
  }
  const Clock::TimePoint now = clock_.Now();
  const Clock::Duration::rep until = t->denied_until_.load(std::memory_order_relaxed);
  if (now.time_since_epoch().count() < until) {
    Clock::Duration wait(until - now.time_since_epoch().count());
    Reject(*t, RejectReason::kRateLimit,
           absl::ResourceExhaustedError(
               absl::StrCat("rate limit exceeded (fleet-wide); ", RetryAfterText(wait))),
           wait, &d);
    done(std::move(d));
    return;
  }
  // Decision is move-only and std::function copies: hold it by pointer.
  auto held = std::make_shared<Decision>(std::move(d));
  shared_->Check(t->bucket_key_, t->rate_.load(std::memory_order_relaxed),
                 t->burst_.load(std::memory_order_relaxed),
                 [this, t, held, now, done = std::move(done)](const SharedRateLimiter::Result& r) {
                   OnShared(*t, r, now, held.get());
                   done(std::move(*held));
                 });
}

void Admission::OnShared(TenantAdmission& t, const SharedRateLimiter::Result& r,
                         Clock::TimePoint asked, Decision* d) {
  using Kind = SharedRateLimiter::Result::Kind;
  if (r.kind == Kind::kAllowed) return;
  if (r.kind == Kind::kDenied) {
    // The bucket refills no sooner than `asked + retry_after` (Redis saw the
    // request after we sent it), so nothing is lost by waiting until then.
    Clock::Duration::rep until = (asked + r.retry_after).time_since_epoch().count();
    Clock::Duration::rep seen = t.denied_until_.load(std::memory_order_relaxed);
    while (seen < until &&
           !t.denied_until_.compare_exchange_weak(seen, until, std::memory_order_relaxed)) {
    }
    Reject(t, RejectReason::kRateLimit,
           absl::ResourceExhaustedError(
               absl::StrCat("rate limit exceeded (fleet-wide); ", RetryAfterText(r.retry_after))),
           r.retry_after, d);
    return;
  }
  if (!policy_.allow_on_failure) {
    Reject(t, RejectReason::kRateLimitBackend,
           absl::UnavailableError(absl::StrCat(
               "the shared rate limiter (", shared_->Describe(), ") is unavailable: ", r.error,
               "; rate_limit_backend.on_failure is deny, so requests are refused until it is "
               "back; retry after 100 ms")),
           std::chrono::milliseconds(100), d);
    return;
  }
  TokenBucket::Decision b = t.fallback_bucket_.TryAcquire(clock_.Now());
  if (!b.allowed) {
    Reject(t, RejectReason::kRateLimit,
           absl::ResourceExhaustedError(absl::StrCat(
               "rate limit exceeded (this replica's share while the shared limiter is "
               "unavailable); ",
               RetryAfterText(b.retry_after))),
           b.retry_after, d);
  }
}

}  // namespace fairserve
