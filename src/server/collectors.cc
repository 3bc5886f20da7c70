#include "fairserve/server/collectors.h"

#include <map>

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

std::vector<CollectedFamily> CollectModelMetrics(const ModelCache& cache) {
  CollectedFamily memory{"fairserve_model_memory_bytes",
                         "Bytes charged for a resident model version", MetricType::kGauge, {}};
  CollectedFamily states{"fairserve_models", "Model versions by state", MetricType::kGauge, {}};
  std::map<std::string, double> by_state;
  for (const ModelState& m : cache.Index()) {
    by_state[m.state] += 1;
    if (m.state == "READY") {
      memory.metrics.push_back({{{"model_name", m.name}, {"version", m.version}}, double(m.bytes), {}, 0, 0});
    }
  }
  for (const auto& [state, n] : by_state) states.metrics.push_back({{{"state", state}}, n, {}, 0, 0});
  CollectedFamily used{"fairserve_memory_used_bytes",
                       "Model bytes charged to a memory partition (tenant quota or shared pool)",
                       MetricType::kGauge, {}};
  CollectedFamily capacity{"fairserve_memory_capacity_bytes",
                           "Size of a memory partition (0 = unlimited)", MetricType::kGauge, {}};
  for (const PartitionUsage& p : cache.Partitions()) {
    Labels labels{{"partition", p.partition.empty() ? "shared" : p.partition}};
    used.metrics.push_back({labels, double(p.used), {}, 0, 0});
    capacity.metrics.push_back({labels, double(p.capacity), {}, 0, 0});
  }
  ModelCache::Counters c = cache.counters();
  auto counter = [](const char* name, const char* help, double v) {
    return CollectedFamily{name, help, MetricType::kCounter, {{{}, v, {}, 0, 0}}};
  };
  return {memory, states, used, capacity,
          counter("fairserve_model_loads_total", "Model loads that succeeded", c.loads),
          counter("fairserve_model_load_failures_total", "Model loads that failed", c.load_failures),
          counter("fairserve_model_evictions_total", "Models evicted to make room", c.evictions),
          counter("fairserve_model_cache_hits_total", "Requests that found their model resident", c.hits),
          counter("fairserve_model_cache_misses_total", "Requests that had to load their model", c.misses)};
}

}  // namespace fairserve
