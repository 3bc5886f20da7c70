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
    default: return "none";
  }
}

namespace {

double LoadRate(const TenantConfig& c) {
  return c.model_loads_per_second > 0 ? c.model_loads_per_second : 1.0;
}

}  // namespace

TenantAdmission::TenantAdmission(const TenantConfig& config)
    : bucket_(Rate(config), Burst(config)),
      load_bucket_(LoadRate(config), std::max(1.0, LoadRate(config))) {
  SetLimits(config);
}

void TenantAdmission::SetLimits(const TenantConfig& config) {
  max_inflight_.store(config.max_inflight, std::memory_order_relaxed);
  max_queue_.store(config.max_queue, std::memory_order_relaxed);
  limited_.store(config.rate_limit.requests_per_second > 0, std::memory_order_relaxed);
  loads_limited_.store(config.model_loads_per_second > 0, std::memory_order_relaxed);
}

void TenantAdmission::Reconfigure(const TenantConfig& config, Clock::TimePoint now) {
  SetLimits(config);
  bucket_.Reconfigure(Rate(config), Burst(config), now);
  load_bucket_.Reconfigure(LoadRate(config), std::max(1.0, LoadRate(config)), now);
}

void Admission::Update(const Config& config) {
  std::shared_ptr<const Table> old = table_.Get();
  auto table = std::make_shared<Table>();
  for (const TenantConfig& t : config.tenants) {
    auto it = old->find(t.id);
    std::shared_ptr<TenantAdmission> state;
    if (it != old->end()) {
      state = it->second;
      state->Reconfigure(t, clock_.Now());
    } else {
      state = std::make_shared<TenantAdmission>(t);
    }
    (*table)[t.id] = std::move(state);
  }
  table_.Set(std::move(table));
}

std::shared_ptr<TenantAdmission> Admission::Find(const std::string& tenant_id) const {
  std::shared_ptr<const Table> table = table_.Get();
  auto it = table->find(tenant_id);
  return it == table->end() ? nullptr : it->second;
}

absl::Status Admission::AdmitModelLoad(const std::string& tenant_id) {
  std::shared_ptr<TenantAdmission> t = Find(tenant_id);
  if (!t || !t->loads_limited_.load(std::memory_order_relaxed)) return absl::OkStatus();
  TokenBucket::Decision d = t->load_bucket_.TryAcquire(clock_.Now());
  if (d.allowed) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "tenant '%s' is loading models faster than its model_loads_per_second allows (its "
      "requests keep missing the model cache); retry after %d ms or use fewer models at once",
      tenant_id, std::chrono::duration_cast<std::chrono::milliseconds>(d.retry_after).count() + 1));
}

Admission::Decision Admission::Admit(const std::string& tenant_id) {
  Decision d;
  std::shared_ptr<TenantAdmission> t = Find(tenant_id);
  if (!t) {
    d.reason = RejectReason::kMaxInflight;
    d.status = absl::UnauthenticatedError("tenant is no longer configured");
    return d;
  }
  int64_t max_queue = t->max_queue_.load(std::memory_order_relaxed);
  auto reject = [&t](RejectReason reason) {
    t->rejected_[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
    return reason;
  };
  if (t->queued_->load(std::memory_order_relaxed) >= max_queue) {
    d.reason = reject(RejectReason::kMaxQueue);
    d.status = absl::ResourceExhaustedError(absl::StrCat(
        "tenant queue is full (max_queue ", max_queue, " requests waiting); retry later"));
    d.retry_after = std::chrono::milliseconds(10);
    return d;
  }
  int64_t max_inflight = t->max_inflight_.load(std::memory_order_relaxed);
  if (max_inflight > 0) {
    if (t->inflight_.fetch_add(1, std::memory_order_relaxed) >= max_inflight) {
      t->inflight_.fetch_sub(1, std::memory_order_relaxed);
      d.reason = reject(RejectReason::kMaxInflight);
      d.status = absl::ResourceExhaustedError(absl::StrCat(
          "too many requests in flight (max_inflight ", max_inflight,
          "); wait for earlier requests to finish"));
      d.retry_after = std::chrono::milliseconds(5);
      return d;
    }
  } else {
    t->inflight_.fetch_add(1, std::memory_order_relaxed);
  }
  // Taken from here on: the slot gives it back on every path below.
  InflightSlot slot(t);
  if (t->limited_.load(std::memory_order_relaxed)) {
    TokenBucket::Decision b = t->bucket_.TryAcquire(clock_.Now());
    if (!b.allowed) {
      d.reason = reject(RejectReason::kRateLimit);
      d.retry_after = std::max(b.retry_after, Clock::Duration(std::chrono::milliseconds(1)));
      d.status = absl::ResourceExhaustedError(absl::StrFormat(
          "rate limit exceeded; retry after %d ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(d.retry_after).count()));
      return d;
    }
  }
  d.slot = std::move(slot);
  d.queued = t->queued_;
  return d;
}

}  // namespace fairserve
