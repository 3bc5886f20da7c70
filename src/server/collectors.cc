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
    for (RejectReason r : kRejectReasons) {
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

std::vector<CollectedFamily> CollectTenantSettings(const TenantRegistry& registry) {
  const Config& config = registry.config();
  CollectedFamily rps{"fairserve_tenant_rate_limit_rps",
                      "Configured requests per second of a tenant (0 = unlimited)",
                      MetricType::kGauge, {}};
  CollectedFamily weight{"fairserve_tenant_weight", "Configured scheduling weight",
                         MetricType::kGauge, {}};
  CollectedFamily price_s{"fairserve_price_per_compute_second",
                          "Price of one compute-second for a tenant", MetricType::kGauge, {}};
  CollectedFamily price_r{"fairserve_price_per_1k_requests",
                          "Price of 1000 successful requests for a tenant", MetricType::kGauge, {}};
  for (const TenantConfig& t : config.tenants) {
    const Prices& p = config.pricing.For(t.id);
    Labels labels{{"tenant_id", t.id}};
    rps.metrics.push_back({labels, t.rate_limit.requests_per_second, {}, 0, 0});
    weight.metrics.push_back({labels, t.weight, {}, 0, 0});
    Labels priced{{"tenant_id", t.id}, {"currency", config.pricing.currency}};
    price_s.metrics.push_back({priced, p.per_compute_second, {}, 0, 0});
    price_r.metrics.push_back({priced, p.per_1k_requests, {}, 0, 0});
  }
  return {rps, weight, price_s, price_r};
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

std::vector<CollectedFamily> CollectRateLimiterMetrics(const RedisRateLimiter& limiter) {
  RedisRateLimiter::Stats s = limiter.stats();
  auto one = [](const char* name, const char* help, MetricType type, double value) {
    return CollectedFamily{name, help, type, {{{}, value, {}, 0, 0}}};
  };
  CollectedFamily checks{"fairserve_rate_limit_backend_checks_total",
                         "Shared rate-limit checks by answer (failed: the backend could not "
                         "answer and on_failure applied)",
                         MetricType::kCounter, {}};
  checks.metrics.push_back({{{"result", "allowed"}}, static_cast<double>(s.allowed), {}, 0, 0});
  checks.metrics.push_back({{{"result", "denied"}}, static_cast<double>(s.denied), {}, 0, 0});
  checks.metrics.push_back({{{"result", "failed"}}, static_cast<double>(s.failed), {}, 0, 0});
  return {one("fairserve_rate_limit_backend_up",
              "1 while the shared rate-limit backend (Redis) answers, else 0", MetricType::kGauge,
              s.up ? 1 : 0),
          std::move(checks),
          one("fairserve_rate_limit_backend_disconnects_total",
              "Times the shared rate-limit backend went from up to down", MetricType::kCounter,
              static_cast<double>(s.disconnects)),
          one("fairserve_rate_limit_backend_connect_failures_total",
              "Failed attempts to (re)connect to the shared rate-limit backend",
              MetricType::kCounter, static_cast<double>(s.connect_failures))};
}

std::vector<CollectedFamily> CollectAuthThrottleMetrics(const AuthThrottle& throttle) {
  return {{"fairserve_auth_throttled_requests_total",
           "Calls refused because their peer address failed authentication too often",
           MetricType::kCounter, {{{}, static_cast<double>(throttle.throttled()), {}, 0, 0}}},
          {"fairserve_auth_throttle_tracked_peers",
           "Peer addresses with recent failed authentications", MetricType::kGauge,
           {{{}, static_cast<double>(throttle.tracked()), {}, 0, 0}}}};
}

}  // namespace fairserve
