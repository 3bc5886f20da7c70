#ifndef FAIRSERVE_METERING_SERVER_METRICS_H_
#define FAIRSERVE_METERING_SERVER_METRICS_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "fairserve/common/clock.h"
#include "fairserve/metering/metrics.h"
#include "fairserve/scheduling/request.h"

namespace fairserve {

// The metrics fairserve exports, registered in one place so names, labels and
// buckets are consistent (see docs/metrics.md). Also a BatchObserver: every
// completed batch updates the per-tenant compute and queue metrics.
class ServerMetrics final : public BatchObserver {
 public:
  explicit ServerMetrics(Registry& registry);

  // BatchObserver: compute-seconds per tenant and model (the batch time split
  // by samples), queue time, batch size.
  void OnBatch(const BatchRecord& record) override;

  // A request answered, from its arrival to its reply.
  void RequestDone(const std::string& tenant, const std::string& model, absl::StatusCode code,
                   Clock::Duration duration);
  // An admitted request answered before it was queued (permission, unknown
  // model, validation). Admission rejections are counted by admission itself
  // (fairserve_rejected_requests_total).
  void RequestRejected(const std::string& tenant, absl::StatusCode code);
  void Unauthenticated() { unauthenticated_.Increment(); }

  // Where tenant_requests_total{status="resource_exhausted"} gets the
  // requests admission turned away (counted there, on the tenant's own
  // atomics): returns (tenant_id, rejections so far) pairs.
  void SetRejectionSource(std::function<std::vector<std::pair<std::string, double>>()> source);

  // Requests of `tenant` counted so far (every status, not admission rejections).
  double RequestsTotal(const std::string& tenant) const;

  // "ok", "invalid_argument", ... (the status label).
  static std::string StatusLabel(absl::StatusCode code);

 private:
  Family<Counter>& compute_seconds_;
  // Not registered directly: collected together with admission's rejections
  // so tenant_requests_total counts every request a tenant sent.
  Family<Counter> requests_;
  std::function<std::vector<std::pair<std::string, double>>()> rejection_source_;
  Family<Counter>& samples_;
  Family<Counter>& batch_compute_seconds_;
  Counter& unauthenticated_;
  Family<Histogram>& request_duration_;
  Family<Histogram>& queue_duration_;
  Family<Histogram>& batch_size_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_SERVER_METRICS_H_
