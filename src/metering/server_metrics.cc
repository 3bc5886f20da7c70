#include "fairserve/metering/server_metrics.h"

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/status/status.h"

namespace fairserve {
namespace {

std::vector<double> LatencyBounds() {
  // 100 µs .. ~52 s, doubling.
  return Histogram::ExponentialBounds(0.0001, 2, 20);
}

double Seconds(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

ServerMetrics::ServerMetrics(Registry& registry)
    : compute_seconds_(registry.AddCounter(
          "tenant_gpu_compute_seconds_total",
          "Measured compute time used by a tenant's requests (batch time split by samples), "
          "in seconds; on CPU devices this is CPU compute time")),
      requests_("tenant_requests_total",
                "Requests answered per tenant, by gRPC status (admission rejections included "
                "as resource_exhausted)",
                [] { return std::make_unique<Counter>(); }),
      samples_(registry.AddCounter("tenant_samples_total",
                                   "Samples (batch rows) run per tenant and model")),
      batch_compute_seconds_(registry.AddCounter(
          "fairserve_batch_compute_seconds_total",
          "Measured compute time of executed batches per model; the per-tenant "
          "tenant_gpu_compute_seconds_total split of it adds up to this")),
      unauthenticated_(registry
                           .AddCounter("fairserve_unauthenticated_requests_total",
                                       "Calls without a valid API key")
                           .Add({})),
      request_duration_(registry.AddHistogram(
          "fairserve_request_duration_seconds",
          "Time from a request's arrival to its reply, per tenant and model", LatencyBounds())),
      queue_duration_(registry.AddHistogram(
          "fairserve_queue_duration_seconds",
          "Time a request waited in its queue before its batch ran", LatencyBounds())),
      batch_size_(registry.AddHistogram("fairserve_batch_size", "Samples per executed batch",
                                        Histogram::ExponentialBounds(1, 2, 11))) {
  registry.AddCollectable([this] {
    std::map<Labels, double> values;
    requests_.ForEach([&](const Labels& labels, const Counter& c) { values[labels] = c.Value(); });
    if (rejection_source_) {
      for (const auto& [tenant, n] : rejection_source_()) {
        if (n > 0) values[{{"status", "resource_exhausted"}, {"tenant_id", tenant}}] += n;
      }
    }
    CollectedFamily family{requests_.name(), requests_.help(), MetricType::kCounter, {}};
    for (const auto& [labels, v] : values) {
      CollectedMetric m;
      m.labels = labels;
      m.value = v;
      family.metrics.push_back(std::move(m));
    }
    return std::vector<CollectedFamily>{std::move(family)};
  });
}

void ServerMetrics::SetRejectionSource(
    std::function<std::vector<std::pair<std::string, double>>()> source) {
  rejection_source_ = std::move(source);
}

double ServerMetrics::RequestsTotal(const std::string& tenant) const {
  double total = 0;
  requests_.ForEach([&](const Labels& labels, const Counter& c) {
    auto it = labels.find("tenant_id");
    if (it != labels.end() && it->second == tenant) total += c.Value();
  });
  return total;
}

std::string ServerMetrics::StatusLabel(absl::StatusCode code) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(code));
}

void ServerMetrics::OnBatch(const BatchRecord& record) {
  if (record.samples > 0) {
    batch_size_.Add({{"model_name", record.model_name}}).Observe(record.samples);
  }
  if (record.compute_seconds > 0) {
    batch_compute_seconds_.Add({{"model_name", record.model_name}})
        .Increment(record.compute_seconds);
  }
  for (const BatchItem& item : record.items) {
    Labels labels{{"tenant_id", item.tenant_id}, {"model_name", record.model_name}};
    if (item.compute_seconds > 0) compute_seconds_.Add(labels).Increment(item.compute_seconds);
    if (item.code == absl::StatusCode::kOk) {
      samples_.Add(labels).Increment(item.samples);
      queue_duration_.Add(labels).Observe(Seconds(item.queue_time));
    }
  }
}

void ServerMetrics::RequestDone(const std::string& tenant, const std::string& model,
                                absl::StatusCode code, Clock::Duration duration) {
  requests_.Add({{"tenant_id", tenant}, {"status", StatusLabel(code)}}).Increment();
  if (code == absl::StatusCode::kOk) {
    request_duration_.Add({{"tenant_id", tenant}, {"model_name", model}})
        .Observe(Seconds(duration));
  }
}

void ServerMetrics::RequestRejected(const std::string& tenant, absl::StatusCode code) {
  requests_.Add({{"tenant_id", tenant}, {"status", StatusLabel(code)}}).Increment();
}

}  // namespace fairserve
