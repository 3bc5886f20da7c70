#ifndef FAIRSERVE_METERING_SERVER_METRICS_H_
#define FAIRSERVE_METERING_SERVER_METRICS_H_

#include <array>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
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
//
// Hot paths never look up a label set in prometheus-cpp's families (a mutex
// and a hash of every label per call): the metrics of each (tenant, model)
// and each tenant's per-status request counters are looked up once and their
// pointers kept in a table read under a shared lock. Thread-safe; called
// from gRPC threads and worker threads.
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
  static constexpr size_t kCodes = 17;  // absl::StatusCode 0..16
  // Metric handles of one tenant: per model, and per status code.
  struct TenantHandles {
    struct PerModel {
      Counter* compute_seconds = nullptr;
      Counter* samples = nullptr;
      Histogram* queue_duration = nullptr;
      Histogram* request_duration = nullptr;
    };
    std::unordered_map<std::string, PerModel> models;
    std::array<Counter*, kCodes> requests{};
  };
  struct ModelHandles {
    Counter* batch_compute_seconds = nullptr;
    Histogram* batch_size = nullptr;
  };
  // The handles of (tenant, model) / (tenant, code) / model, created on
  // first use.
  const TenantHandles::PerModel& For(const std::string& tenant, const std::string& model);
  Counter& RequestCounter(const std::string& tenant, absl::StatusCode code);
  const ModelHandles& ForModel(const std::string& model);
  TenantHandles& TenantLocked(const std::string& tenant);

  Family<Counter>& compute_seconds_;
  // Not registered directly: collected together with admission's rejections
  // so tenant_requests_total counts every request a tenant sent.
  Family<Counter> requests_;
  std::function<std::vector<std::pair<std::string, double>>()> rejection_source_;
  Family<Counter>& samples_;
  Family<Counter>& batch_compute_seconds_;
  Counter& unauthenticated_;
  HistogramFamily& request_duration_;
  HistogramFamily& queue_duration_;
  HistogramFamily& batch_size_;

  std::shared_mutex handles_mu_;
  std::unordered_map<std::string, std::unique_ptr<TenantHandles>> tenants_;  // by handles_mu_
  std::unordered_map<std::string, ModelHandles> models_;                     // by handles_mu_
};

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_SERVER_METRICS_H_
