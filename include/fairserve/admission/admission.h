#ifndef FAIRSERVE_ADMISSION_ADMISSION_H_
#define FAIRSERVE_ADMISSION_ADMISSION_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "fairserve/admission/shared_rate_limiter.h"
#include "fairserve/admission/token_bucket.h"
#include "fairserve/common/clock.h"
#include "fairserve/config/config.h"

namespace fairserve {

// Why a request was turned away; also the `reason` label of
// fairserve_rejected_requests_total.
// kRateLimitBackend: the shared rate limiter (Redis) could not answer and
// the failure policy is "deny".
// kMaxPendingBytes: the tenant's admitted, unanswered requests already hold
// max_pending_bytes of payload.
enum class RejectReason {
  kNone,
  kRateLimit,
  kMaxInflight,
  kMaxQueue,
  kRateLimitBackend,
  kMaxPendingBytes
};
const char* RejectReasonName(RejectReason reason);
// Every reason a request can be rejected for (kNone excluded).
inline constexpr RejectReason kRejectReasons[] = {
    RejectReason::kRateLimit, RejectReason::kMaxInflight, RejectReason::kMaxQueue,
    RejectReason::kRateLimitBackend, RejectReason::kMaxPendingBytes};

// The admission state of one tenant: its token bucket and counters. Shared
// by all requests of that tenant and by nobody else, so one tenant's flood
// never contends with another tenant's checks. Thread-safe (atomics only).
class TenantAdmission {
 public:
  // `replicas` divides the rate of the local fallback bucket used while a
  // shared rate limiter is unavailable.
  TenantAdmission(const TenantConfig& config, const std::string& key_prefix, int64_t replicas);

  // Applies a new config's limits at `now`; counters and the spent share of
  // the token bucket carry over.
  void Reconfigure(const TenantConfig& config, int64_t replicas, Clock::TimePoint now);

  // Requests admitted and not yet answered (waiting or running).
  std::atomic<int64_t>& inflight() { return inflight_; }
  // Requests admitted and not yet running: waiting for the shared limiter,
  // a model load, decoding, or in a scheduler queue. max_queue bounds it.
  // Each admitted request holds a WaitSlot that gives its count back when
  // the request starts to run or is answered.
  std::atomic<int64_t>& waiting() { return waiting_; }
  // Payload bytes of admitted, unanswered requests (max_pending_bytes).
  std::atomic<int64_t>& pending_bytes() { return pending_bytes_; }
  // Requests rejected so far for `reason` (not kNone).
  uint64_t rejected(RejectReason reason) const {
    return rejected_[static_cast<int>(reason)].load(std::memory_order_relaxed);
  }
  // Requests rejected so far for any reason.
  uint64_t rejected_total() const {
    uint64_t n = 0;
    for (RejectReason r : kRejectReasons) n += rejected(r);
    return n;
  }

 private:
  friend class Admission;
  void SetLimits(const TenantConfig& config);
  const std::string bucket_key_;  // the shared limiter's bucket of this tenant
  std::atomic<double> rate_{1};
  std::atomic<double> burst_{1};
  std::atomic<int64_t> max_inflight_{0};
  std::atomic<int64_t> max_queue_{0};
  std::atomic<int64_t> max_pending_bytes_{0};
  std::atomic<bool> limited_{false};
  TokenBucket bucket_;
  TokenBucket load_bucket_;
  // Used instead of the shared bucket while the shared limiter is failing
  // (on_failure: allow): rate / replicas.
  TokenBucket fallback_bucket_;
  // The shared bucket is known to be empty until this time (clock ticks): a
  // replica asked and was told when to come back, so checks before then are
  // rejected here without asking again. GCRA buckets only refill with time,
  // so this never rejects a request the shared bucket would have admitted.
  std::atomic<Clock::Duration::rep> denied_until_{0};
  std::atomic<bool> loads_limited_{false};
  std::atomic<int64_t> inflight_{0};
  std::atomic<int64_t> waiting_{0};
  std::atomic<int64_t> pending_bytes_{0};
  std::array<std::atomic<uint64_t>, 6> rejected_{};
};

// Gives back an admitted request's in-flight count and payload bytes when
// destroyed (when the request is answered). Move-only.
class InflightSlot {
 public:
  InflightSlot() = default;
  InflightSlot(std::shared_ptr<TenantAdmission> tenant, int64_t bytes)
      : tenant_(std::move(tenant)), bytes_(bytes) {}
  InflightSlot(InflightSlot&& other) noexcept
      : tenant_(std::move(other.tenant_)), bytes_(other.bytes_) {}
  // Gives back the slot held so far, then takes `other`'s.
  InflightSlot& operator=(InflightSlot&& other) {
    if (this != &other) {
      Release();
      tenant_ = std::move(other.tenant_);
      bytes_ = other.bytes_;
    }
    return *this;
  }
  ~InflightSlot() { Release(); }

  void Release() {
    if (tenant_) {
      tenant_->inflight().fetch_sub(1, std::memory_order_relaxed);
      tenant_->pending_bytes().fetch_sub(bytes_, std::memory_order_relaxed);
    }
    tenant_.reset();
  }

 private:
  std::shared_ptr<TenantAdmission> tenant_;
  int64_t bytes_ = 0;
};

// Gives back an admitted request's place among the tenant's waiting
// requests (max_queue) when destroyed: when the request starts to run, or is
// answered without running. Move-only.
class WaitSlot {
 public:
  WaitSlot() = default;
  explicit WaitSlot(std::shared_ptr<TenantAdmission> tenant) : tenant_(std::move(tenant)) {}
  WaitSlot(WaitSlot&& other) noexcept = default;
  WaitSlot& operator=(WaitSlot&& other) {
    if (this != &other) {
      Release();
      tenant_ = std::move(other.tenant_);
    }
    return *this;
  }
  ~WaitSlot() { Release(); }

  void Release() {
    if (tenant_) tenant_->waiting().fetch_sub(1, std::memory_order_relaxed);
    tenant_.reset();
  }

 private:
  std::shared_ptr<TenantAdmission> tenant_;
};

// The admission state of every configured tenant, by id. Immutable once
// built (Admission::BuildTable); the daemon publishes it inside its
// RuntimeSnapshot, together with the tenant registry of the same config, so
// a call that authenticated against one config always finds its tenant's
// limits of that same config. Thread-safe.
class AdmissionTable {
 public:
  // The tenant's state, or null when `tenant_id` is not configured.
  std::shared_ptr<TenantAdmission> Find(const std::string& tenant_id) const {
    auto it = tenants_.find(tenant_id);
    return it == tenants_.end() ? nullptr : it->second;
  }
  // Configured tenants.
  size_t size() const { return tenants_.size(); }
  // Calls fn(tenant_id, state) for every configured tenant.
  template <typename Fn>
  void ForEach(Fn fn) const {
    for (const auto& [id, state] : tenants_) fn(id, *state);
  }

 private:
  friend class Admission;
  std::unordered_map<std::string, std::shared_ptr<TenantAdmission>> tenants_;
};

// Per-tenant limits checked before a request's payload is even decoded: the
// queue bound (admitted, not yet running), the pending-bytes bound, the
// in-flight cap and the token bucket. Reads only per-tenant atomics; the
// caller passes the tenant's state from the AdmissionTable of its snapshot.
class Admission {
 public:
  struct Decision {
    RejectReason reason = RejectReason::kNone;
    absl::Status status;  // RESOURCE_EXHAUSTED naming the limit, when rejected
    Clock::Duration retry_after{0};  // > 0 when waiting would help
    InflightSlot slot;  // held until the request is answered, when admitted
    WaitSlot waiting;   // held until the request starts to run, when admitted
  };

  // What to do with rate limits shared by a fleet (rate_limit_backend).
  struct SharedPolicy {
    bool allow_on_failure = true;  // else UNAVAILABLE while the backend fails
    int64_t replicas = 1;          // the fallback bucket gets rate / replicas
    std::string key_prefix;        // bucket names: <key_prefix>rl:<tenant_id>
  };

  explicit Admission(Clock& clock) : clock_(clock) {}

  // Makes rate limits fleet-wide: every rate-limited request asks `limiter`.
  // Call before the first BuildTable and before any Admit.
  void SetSharedLimiter(std::shared_ptr<SharedRateLimiter> limiter, SharedPolicy policy);

  // The table for `config`. A tenant that is also in `previous` (may be
  // null) keeps its state object, counters and the spent share of its
  // buckets; its limits are updated in place at once (each limit is one
  // atomic), so build the table only when the config is known to be
  // accepted, right before publishing it. New tenants get fresh state;
  // tenants missing from `config` are dropped with the old table.
  std::shared_ptr<const AdmissionTable> BuildTable(const Config& config,
                                                   const AdmissionTable* previous) const;

  // Checks and takes one request's worth of every limit of `tenant`, using
  // the local token bucket (ignores a shared limiter). `bytes` is the
  // request's payload size, held against max_pending_bytes until answered.
  // A null `tenant` (not configured) is refused with UNAUTHENTICATED.
  Decision Admit(const std::shared_ptr<TenantAdmission>& tenant, int64_t bytes = 0);

  // Like Admit, but takes the rate-limit token from the shared limiter when
  // one is set. `done` runs exactly once: here (on the caller's thread), or
  // on the limiter's I/O thread, so it must only hand the call on.
  using AdmitCallback = std::function<void(Decision)>;
  void AdmitAsync(std::shared_ptr<TenantAdmission> tenant, int64_t bytes, AdmitCallback done);

  // True when rate limits are checked in a shared backend, i.e. AdmitAsync
  // may answer on the backend's thread; false: Admit answers at once.
  bool shared() const { return shared_ != nullptr; }

  // Takes one model load from the tenant's load budget
  // (model_loads_per_second): OK, or RESOURCE_EXHAUSTED saying when to retry.
  // `tenant_id` names it in the message.
  absl::Status AdmitModelLoad(TenantAdmission* tenant, const std::string& tenant_id);

 private:
  // Queue and in-flight caps, then (when `take_token`) the local bucket.
  Decision CheckLocal(const std::shared_ptr<TenantAdmission>& t, bool take_token, int64_t bytes);
  // Turns an admitted decision into a rejection (gives its slot back).
  void Reject(TenantAdmission& t, RejectReason reason, absl::Status status,
              Clock::Duration retry_after, Decision* d);
  // Applies the shared limiter's answer to a request admitted locally.
  void OnShared(TenantAdmission& t, const SharedRateLimiter::Result& r, Clock::TimePoint asked,
                Decision* d);
  Clock& clock_;
  std::shared_ptr<SharedRateLimiter> shared_;
  SharedPolicy policy_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_ADMISSION_ADMISSION_H_
