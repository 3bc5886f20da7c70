#ifndef FAIRSERVE_ADMISSION_ADMISSION_H_
#define FAIRSERVE_ADMISSION_ADMISSION_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "fairserve/admission/token_bucket.h"
#include "fairserve/common/clock.h"
#include "fairserve/common/snapshot.h"
#include "fairserve/config/config.h"

namespace fairserve {

// Why a request was turned away; also the `reason` label of
// fairserve_rejected_requests_total.
enum class RejectReason { kNone, kRateLimit, kMaxInflight, kMaxQueue };
const char* RejectReasonName(RejectReason reason);
// Every reason a request can be rejected for (kNone excluded).
inline constexpr RejectReason kRejectReasons[] = {
    RejectReason::kRateLimit, RejectReason::kMaxInflight, RejectReason::kMaxQueue};

// The admission state of one tenant: its token bucket and counters. Shared
// by all requests of that tenant and by nobody else, so one tenant's flood
// never contends with another tenant's checks. Thread-safe (atomics only).
class TenantAdmission {
 public:
  explicit TenantAdmission(const TenantConfig& config);

  // Applies a new config's limits at `now`; counters and the spent share of
  // the token bucket carry over.
  void Reconfigure(const TenantConfig& config, Clock::TimePoint now);

  // Requests admitted and not yet answered (queued or running).
  std::atomic<int64_t>& inflight() { return inflight_; }
  // Requests waiting in a scheduler queue; the scheduler decrements it when
  // it takes a request out of its queue.
  const std::shared_ptr<std::atomic<int64_t>>& queued() const { return queued_; }
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
  std::atomic<int64_t> max_inflight_{0};
  std::atomic<int64_t> max_queue_{0};
  std::atomic<bool> limited_{false};
  TokenBucket bucket_;
  TokenBucket load_bucket_;
  std::atomic<bool> loads_limited_{false};
  std::atomic<int64_t> inflight_{0};
  std::shared_ptr<std::atomic<int64_t>> queued_ = std::make_shared<std::atomic<int64_t>>(0);
  std::array<std::atomic<uint64_t>, 4> rejected_{};
};

// Releases an admitted request's in-flight slot when destroyed.
class InflightSlot {
 public:
  InflightSlot() = default;
  explicit InflightSlot(std::shared_ptr<TenantAdmission> tenant) : tenant_(std::move(tenant)) {}
  InflightSlot(InflightSlot&&) = default;
  InflightSlot& operator=(InflightSlot&&) = default;
  ~InflightSlot() {
    if (tenant_) tenant_->inflight().fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  std::shared_ptr<TenantAdmission> tenant_;
};

// Per-tenant limits checked before a request's payload is even looked at:
// the token bucket, the in-flight cap and the queue bound. Reads only
// per-tenant atomics and one immutable table.
class Admission {
 public:
  struct Decision {
    RejectReason reason = RejectReason::kNone;
    absl::Status status;  // RESOURCE_EXHAUSTED naming the limit, when rejected
    Clock::Duration retry_after{0};  // > 0 when waiting would help
    InflightSlot slot;               // held while the request lives, when admitted
    std::shared_ptr<std::atomic<int64_t>> queued;  // the tenant's queue counter
  };

  explicit Admission(Clock& clock) : clock_(clock) { table_.Set(std::make_shared<Table>()); }

  // Builds the table for `config`, keeping the state of tenants that stay.
  void Update(const Config& config);

  // Checks and takes one request's worth of every limit of `tenant_id`.
  Decision Admit(const std::string& tenant_id);

  // Takes one model load from `tenant_id`'s load budget
  // (model_loads_per_second): OK, or RESOURCE_EXHAUSTED saying when to retry.
  absl::Status AdmitModelLoad(const std::string& tenant_id);

  std::shared_ptr<TenantAdmission> Find(const std::string& tenant_id) const;

  // Calls fn(tenant_id, state) for every configured tenant.
  template <typename Fn>
  void ForEach(Fn fn) const {
    std::shared_ptr<const Table> table = table_.Get();
    for (const auto& [id, state] : *table) fn(id, *state);
  }

 private:
  using Table = std::unordered_map<std::string, std::shared_ptr<TenantAdmission>>;
  Clock& clock_;
  Snapshot<Table> table_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_ADMISSION_ADMISSION_H_
