#include "fairserve/server/admission_metrics.h"

namespace fairserve {

std::vector<CollectedFamily> CollectAdmissionMetrics(const Admission& admission) {
  CollectedFamily rejected{"fairserve_rejected_requests_total",
                           "Requests turned away by admission control, per tenant and limit",
                           MetricType::kCounter, {}};
  CollectedFamily depth{"fairserve_queue_depth", "Requests waiting in a queue, per tenant",
                        MetricType::kGauge, {}};
  CollectedFamily inflight{"fairserve_inflight_requests",
                           "Requests admitted and not yet answered, per tenant",
                           MetricType::kGauge, {}};
  admission.ForEach([&](const std::string& id, TenantAdmission& t) {
    for (RejectReason r :
         {RejectReason::kRateLimit, RejectReason::kMaxInflight, RejectReason::kMaxQueue}) {
      CollectedMetric m;
      m.labels = {{"tenant_id", id}, {"reason", RejectReasonName(r)}};
      m.value = static_cast<double>(t.rejected(r));
      rejected.metrics.push_back(std::move(m));
    }
    CollectedMetric d;
    d.labels = {{"tenant_id", id}};
    d.value = static_cast<double>(t.queued()->load(std::memory_order_relaxed));
    depth.metrics.push_back(d);
    d.value = static_cast<double>(t.inflight().load(std::memory_order_relaxed));
    inflight.metrics.push_back(d);
  });
  return {std::move(rejected), std::move(depth), std::move(inflight)};
}

}  // namespace fairserve
