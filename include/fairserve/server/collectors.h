#ifndef FAIRSERVE_SERVER_COLLECTORS_H_
#define FAIRSERVE_SERVER_COLLECTORS_H_

#include <vector>

#include "fairserve/admission/admission.h"
#include "fairserve/metering/metrics.h"
#include "fairserve/models/model_cache.h"
#include "fairserve/server/access_log.h"
#include "fairserve/scheduling/scheduler.h"
#include "fairserve/server/rejection_holder.h"
#include "fairserve/admission/redis_rate_limiter.h"
#include "fairserve/tenancy/auth_throttle.h"
#include "fairserve/tenancy/tenant_registry.h"

namespace fairserve {

// Metric families computed at scrape time from state that lives elsewhere
// (registered with Registry::AddCollectable).

// Admission's per-tenant counters as metric families, read at scrape time so
// the rejection path itself touches only its tenant's atomics:
// fairserve_rejected_requests_total{tenant_id,reason},
// fairserve_queue_depth{tenant_id}, fairserve_inflight_requests{tenant_id}.
std::vector<CollectedFamily> CollectAdmissionMetrics(const AdmissionTable& admission);

// Tenants' configured limits and prices (they follow reloads): what alert
// and cost rules join on. fairserve_tenant_rate_limit_rps,
// fairserve_tenant_weight, fairserve_price_per_compute_second,
// fairserve_price_per_1k_requests.
std::vector<CollectedFamily> CollectTenantSettings(const TenantRegistry& registry);

// The model cache as metric families: fairserve_model_memory_bytes{model_name,
// version} of resident models, fairserve_models{state},
// fairserve_memory_used_bytes / fairserve_memory_capacity_bytes{partition},
// and load, eviction, hit and miss counters.
std::vector<CollectedFamily> CollectModelMetrics(const ModelCache& cache);

// The shared rate limiter's health: fairserve_rate_limit_backend_up (1/0),
// fairserve_rate_limit_backend_checks_total{result=allowed|denied|failed},
// fairserve_rate_limit_backend_disconnects_total,
// fairserve_rate_limit_backend_connect_failures_total.
std::vector<CollectedFamily> CollectRateLimiterMetrics(const RedisRateLimiter& limiter);

// The failed-authentication throttle: fairserve_auth_throttled_requests_total,
// fairserve_auth_throttle_tracked_peers.
std::vector<CollectedFamily> CollectAuthThrottleMetrics(const AuthThrottle& throttle);

// fairserve_access_log_dropped_total.
std::vector<CollectedFamily> CollectAccessLogMetrics(const AccessLog& log);
std::vector<CollectedFamily> CollectRejectionHoldMetrics(const RejectionHolder& holder);
// Batches run on their call's own thread (scheduler.run_on_caller_below_us).
std::vector<CollectedFamily> CollectSchedulerMetrics(const Scheduler& scheduler);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_COLLECTORS_H_
