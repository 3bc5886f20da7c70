#include "fairserve/metering/server_metrics.h"

#include <chrono>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/status/status.h"

namespace fairserve {
namespace {

std::vector<double> LatencyBounds() {
  // 100 µs .. ~52 s, doubling.
  return ExponentialBounds(0.0001, 2, 20);
}

double Seconds(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }

constexpr char kRequestsName[] = "tenant_requests_total";
constexpr char kRequestsHelp[] =
    "Requests answered per tenant, by gRPC status (admission rejections included as "
    "resource_exhausted)";

}  // namespace

ServerMetrics::ServerMetrics(Registry& registry)
    : compute_seconds_(registry.AddCounter(
          "tenant_gpu_compute_seconds_total",
          "Measured compute time used by a tenant's requests (batch time split by samples), "
          "in seconds; on CPU devices this is CPU compute time")),
      requests_(kRequestsName, kRequestsHelp, {}),
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
                                        ExponentialBounds(1, 2, 11))) {
  registry.AddCollectable([this] {
    // (status, tenant_id) -> requests: labels in name order, as on the page.
    std::map<std::pair<std::string, std::string>, double> values;
    for (const CollectedFamily& f : requests_.Collect()) {
      for (const prometheus::ClientMetric& m : f.metric) {
        std::pair<std::string, std::string> key;
        for (const auto& l : m.label) (l.name == "status" ? key.first : key.second) = l.value;
        values[key] += m.counter.value;
      }
    }
    if (rejection_source_) {
      for (const auto& [tenant, n] : rejection_source_()) {
        if (n > 0) values[{"resource_exhausted", tenant}] += n;
      }
    }
    CollectedFamily family = CounterFamily(kRequestsName, kRequestsHelp);
    family.metric.reserve(values.size());
    for (const auto& [key, v] : values) {
      AddSample(&family, {{"status", key.first}, {"tenant_id", key.second}}, v);
    }
    return FamilyList(std::move(family));
  });
}

ServerMetrics::TenantHandles& ServerMetrics::TenantLocked(const std::string& tenant) {
  std::unique_ptr<TenantHandles>& t = tenants_[tenant];
  if (!t) t = std::make_unique<TenantHandles>();
  return *t;
}

const ServerMetrics::TenantHandles::PerModel& ServerMetrics::For(const std::string& tenant,
                                                                const std::string& model) {
  {
    std::shared_lock<std::shared_mutex> lock(handles_mu_);
    auto t = tenants_.find(tenant);
    if (t != tenants_.end()) {
      auto m = t->second->models.find(model);
      if (m != t->second->models.end()) return m->second;
    }
  }
  std::unique_lock<std::shared_mutex> lock(handles_mu_);
  TenantHandles::PerModel& h = TenantLocked(tenant).models[model];
  if (h.compute_seconds == nullptr) {
    Labels labels{{"tenant_id", tenant}, {"model_name", model}};
    h.compute_seconds = &compute_seconds_.Add(labels);
    h.samples = &samples_.Add(labels);
    h.queue_duration = &queue_duration_.Add(labels);
    h.request_duration = &request_duration_.Add(labels);
  }
  return h;
}

Counter& ServerMetrics::RequestCounter(const std::string& tenant, absl::StatusCode code) {
  const size_t c = static_cast<size_t>(code) < kCodes ? static_cast<size_t>(code) : 2;  // UNKNOWN
  {
    std::shared_lock<std::shared_mutex> lock(handles_mu_);
    auto t = tenants_.find(tenant);
    if (t != tenants_.end() && t->second->requests[c] != nullptr) return *t->second->requests[c];
  }
  std::unique_lock<std::shared_mutex> lock(handles_mu_);
  Counter*& counter = TenantLocked(tenant).requests[c];
  if (counter == nullptr) {
    counter = &requests_.Add(
        {{"tenant_id", tenant}, {"status", StatusLabel(static_cast<absl::StatusCode>(c))}});
  }
  return *counter;
}

const ServerMetrics::ModelHandles& ServerMetrics::ForModel(const std::string& model) {
  {
    std::shared_lock<std::shared_mutex> lock(handles_mu_);
    auto m = models_.find(model);
    if (m != models_.end()) return m->second;
  }
  std::unique_lock<std::shared_mutex> lock(handles_mu_);
  ModelHandles& h = models_[model];
  if (h.batch_size == nullptr) {
    h.batch_compute_seconds = &batch_compute_seconds_.Add({{"model_name", model}});
    h.batch_size = &batch_size_.Add({{"model_name", model}});
  }
  return h;
}

void ServerMetrics::SetRejectionSource(
    std::function<std::vector<std::pair<std::string, double>>()> source) {
  rejection_source_ = std::move(source);
}

double ServerMetrics::RequestsTotal(const std::string& tenant) const {
  double total = 0;
  for (const CollectedFamily& f : requests_.Collect()) {
    for (const prometheus::ClientMetric& m : f.metric) {
      for (const auto& l : m.label) {
        if (l.name == "tenant_id" && l.value == tenant) total += m.counter.value;
      }
    }
  }
  return total;
}

std::string ServerMetrics::StatusLabel(absl::StatusCode code) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(code));
}

void ServerMetrics::OnBatch(const BatchRecord& record) {
  const ModelHandles& model = ForModel(record.model_name);
  if (record.samples > 0) model.batch_size->Observe(record.samples);
  if (record.compute_seconds > 0) model.batch_compute_seconds->Increment(record.compute_seconds);
  for (const BatchItem& item : record.items) {
    const TenantHandles::PerModel& h = For(item.tenant_id, record.model_name);
    if (item.compute_seconds > 0) h.compute_seconds->Increment(item.compute_seconds);
    if (item.code == absl::StatusCode::kOk) {
      h.samples->Increment(item.samples);
      h.queue_duration->Observe(Seconds(item.queue_time));
    }
  }
}

void ServerMetrics::RequestDone(const std::string& tenant, const std::string& model,
                                absl::StatusCode code, Clock::Duration duration) {
  RequestCounter(tenant, code).Increment();
  if (code == absl::StatusCode::kOk) For(tenant, model).request_duration->Observe(Seconds(duration));
}

void ServerMetrics::RequestRejected(const std::string& tenant, absl::StatusCode code) {
  RequestCounter(tenant, code).Increment();
}

}  // namespace fairserve
