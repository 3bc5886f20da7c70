#include "fairserve/server/collectors.h"

#include <map>
#include <set>

namespace fairserve {
namespace {

// A family with one unlabelled sample.
CollectedFamily One(CollectedFamily family, double value) {
  AddSample(&family, {}, value);
  return family;
}

}  // namespace

std::vector<CollectedFamily> CollectAdmissionMetrics(const AdmissionTable& admission) {
  CollectedFamily rejected =
      CounterFamily("fairserve_rejected_requests_total",
                    "Requests turned away by admission control, per tenant and limit");
  CollectedFamily depth = GaugeFamily(
      "fairserve_queue_depth",
      "Requests admitted and not yet running (waiting for a rate-limit answer, a model load, "
      "decoding, or in a queue), per tenant");
  CollectedFamily inflight = GaugeFamily("fairserve_inflight_requests",
                                         "Requests admitted and not yet answered, per tenant");
  CollectedFamily bytes = GaugeFamily("fairserve_pending_request_bytes",
                                      "Payload bytes of admitted, unanswered requests, per tenant");
  rejected.metric.reserve(admission.size() * std::size(kRejectReasons));
  for (CollectedFamily* f : {&depth, &inflight, &bytes}) f->metric.reserve(admission.size());
  admission.ForEach([&](const std::string& id, TenantAdmission& t) {
    for (RejectReason r : kRejectReasons) {
      AddSample(&rejected, {{"reason", RejectReasonName(r)}, {"tenant_id", id}},
                static_cast<double>(t.rejected(r)));
    }
    AddSample(&depth, {{"tenant_id", id}},
              static_cast<double>(t.waiting().load(std::memory_order_relaxed)));
    AddSample(&inflight, {{"tenant_id", id}},
              static_cast<double>(t.inflight().load(std::memory_order_relaxed)));
    AddSample(&bytes, {{"tenant_id", id}},
              static_cast<double>(t.pending_bytes().load(std::memory_order_relaxed)));
  });
  return FamilyList(std::move(rejected), std::move(depth), std::move(inflight), std::move(bytes));
}

std::vector<CollectedFamily> CollectTenantSettings(const TenantRegistry& registry) {
  const Config& config = registry.config();
  CollectedFamily rps = GaugeFamily("fairserve_tenant_rate_limit_rps",
                                    "Configured requests per second of a tenant (0 = unlimited)");
  CollectedFamily weight = GaugeFamily("fairserve_tenant_weight", "Configured scheduling weight");
  CollectedFamily price_s = GaugeFamily("fairserve_price_per_compute_second",
                                        "Price of one compute-second for a tenant");
  CollectedFamily price_r = GaugeFamily("fairserve_price_per_1k_requests",
                                        "Price of 1000 successful requests for a tenant");
  for (CollectedFamily* f : {&rps, &weight, &price_s, &price_r}) {
    f->metric.reserve(config.tenants.size());
  }
  for (const TenantConfig& t : config.tenants) {
    const Prices& p = config.pricing.For(t.id);
    AddSample(&rps, {{"tenant_id", t.id}}, t.rate_limit.requests_per_second);
    AddSample(&weight, {{"tenant_id", t.id}}, t.weight);
    AddSample(&price_s, {{"currency", config.pricing.currency}, {"tenant_id", t.id}},
              p.per_compute_second);
    AddSample(&price_r, {{"currency", config.pricing.currency}, {"tenant_id", t.id}},
              p.per_1k_requests);
  }
  return FamilyList(std::move(rps), std::move(weight), std::move(price_s), std::move(price_r));
}

std::vector<CollectedFamily> CollectModelMetrics(const ModelCache& cache) {
  CollectedFamily memory =
      GaugeFamily("fairserve_model_memory_bytes", "Bytes charged for a resident model version");
  CollectedFamily states = GaugeFamily("fairserve_models", "Model versions by state");
  std::map<std::string, double> by_state;
  CollectedFamily resident = GaugeFamily(
      "fairserve_tenant_resident_bytes",
      "Bytes of a tenant's private models resident on a device (measured on GPUs)");
  std::map<std::pair<std::string, std::string>, double> by_owner;
  for (const ModelState& m : cache.Index()) {
    by_state[m.state] += 1;
    if (m.state == "READY") {
      AddSample(&memory, {{"device", m.device}, {"model_name", m.name}, {"version", m.version}},
                static_cast<double>(m.bytes));
      if (!m.owner.empty()) by_owner[{m.owner, m.device}] += static_cast<double>(m.bytes);
    }
  }
  for (const auto& [key, bytes] : by_owner) {
    AddSample(&resident, {{"device", key.second}, {"tenant_id", key.first}}, bytes);
  }
  for (const auto& [state, n] : by_state) AddSample(&states, {{"state", state}}, n);
  CollectedFamily used = GaugeFamily(
      "fairserve_memory_used_bytes",
      "Model bytes charged to a memory partition (tenant quota or shared pool)");
  CollectedFamily capacity = GaugeFamily("fairserve_memory_capacity_bytes",
                                         "Size of a memory partition (0 = unlimited)");
  CollectedFamily device_memory = GaugeFamily(
      "fairserve_device_memory_bytes",
      "A GPU's memory: allocated (live tensors) and reserved (held by the caching allocator) "
      "by this process, and the device's total");
  std::set<std::string> devices;
  for (const PartitionUsage& p : cache.Partitions()) {
    const absl::string_view partition =
        p.partition.empty() ? absl::string_view("shared") : absl::string_view(p.partition);
    AddSample(&used, {{"device", p.device}, {"partition", partition}},
              static_cast<double>(p.used));
    AddSample(&capacity, {{"device", p.device}, {"partition", partition}},
              static_cast<double>(p.capacity));
    devices.insert(p.device);
  }
  for (const std::string& d : devices) {
    absl::StatusOr<DeviceMemoryStats> m = DeviceMemory(d);
    if (!m.ok()) continue;  // the cpu has no allocator statistics
    AddSample(&device_memory, {{"device", d}, {"kind", "allocated"}},
              static_cast<double>(m->allocated));
    AddSample(&device_memory, {{"device", d}, {"kind", "reserved"}},
              static_cast<double>(m->reserved));
    AddSample(&device_memory, {{"device", d}, {"kind", "total"}}, static_cast<double>(m->total));
  }
  ModelCache::Counters c = cache.counters();
  return FamilyList(std::move(memory), std::move(states), std::move(resident), std::move(used),
                    std::move(capacity), std::move(device_memory),
                    One(CounterFamily("fairserve_model_loads_total", "Model loads that succeeded"),
                        c.loads),
                    One(CounterFamily("fairserve_model_load_failures_total",
                                      "Model loads that failed"),
                        c.load_failures),
                    One(CounterFamily("fairserve_model_evictions_total",
                                      "Models evicted to make room"),
                        c.evictions),
                    One(CounterFamily("fairserve_model_cache_hits_total",
                                      "Requests that found their model resident"),
                        c.hits),
                    One(CounterFamily("fairserve_model_cache_misses_total",
                                      "Requests that had to load their model"),
                        c.misses));
}

std::vector<CollectedFamily> CollectRateLimiterMetrics(const RedisRateLimiter& limiter) {
  RedisRateLimiter::Stats s = limiter.stats();
  CollectedFamily checks =
      CounterFamily("fairserve_rate_limit_backend_checks_total",
                    "Shared rate-limit checks by answer (failed: the backend could not answer "
                    "and on_failure applied)");
  AddSample(&checks, {{"result", "allowed"}}, static_cast<double>(s.allowed));
  AddSample(&checks, {{"result", "denied"}}, static_cast<double>(s.denied));
  AddSample(&checks, {{"result", "failed"}}, static_cast<double>(s.failed));
  return {One(GaugeFamily("fairserve_rate_limit_backend_up",
                          "1 while the shared rate-limit backend (Redis) answers, else 0"),
              s.up ? 1 : 0),
          std::move(checks),
          One(CounterFamily("fairserve_rate_limit_backend_disconnects_total",
                            "Times the shared rate-limit backend went from up to down"),
              static_cast<double>(s.disconnects)),
          One(CounterFamily("fairserve_rate_limit_backend_connect_failures_total",
                            "Failed attempts to (re)connect to the shared rate-limit backend"),
              static_cast<double>(s.connect_failures))};
}

std::vector<CollectedFamily> CollectAuthThrottleMetrics(const AuthThrottle& throttle) {
  return {One(CounterFamily("fairserve_auth_throttled_requests_total",
                            "Calls refused because their peer address failed authentication too "
                            "often"),
              static_cast<double>(throttle.throttled())),
          One(GaugeFamily("fairserve_auth_throttle_tracked_peers",
                          "Peer addresses with recent failed authentications"),
              static_cast<double>(throttle.tracked()))};
}

std::vector<CollectedFamily> CollectAccessLogMetrics(const AccessLog& log) {
  return {One(CounterFamily("fairserve_access_log_dropped_total",
                            "Access-log lines dropped because the access-log thread could not "
                            "keep up"),
              static_cast<double>(log.dropped()))};
}

std::vector<CollectedFamily> CollectRejectionHoldMetrics(const RejectionHolder& holder) {
  return {One(GaugeFamily("fairserve_rejections_held",
                          "Refusals with a retry hint (rate limit, in-flight cap) held until "
                          "their retry point now (server.rejection_hold_per_tenant)"),
              static_cast<double>(holder.held())),
          One(CounterFamily("fairserve_rejections_held_total",
                            "Refusals with a retry hint whose answer was held until their "
                            "retry point"),
              static_cast<double>(holder.held_total())),
          One(CounterFamily("fairserve_rejections_hold_overflow_total",
                            "Refusals with a retry hint answered at once because their tenant's "
                            "or the server's hold bound was reached"),
              static_cast<double>(holder.overflow_total()))};
}

std::vector<CollectedFamily> CollectSchedulerMetrics(const Scheduler& scheduler) {
  return FamilyList(One(CounterFamily("fairserve_batches_run_on_caller_total",
                                      "Batches run on their call's own thread, with no hand-off "
                                      "to a worker (scheduler.run_on_caller_below_us)"),
                        static_cast<double>(scheduler.CallerRuns())));
}

}  // namespace fairserve
