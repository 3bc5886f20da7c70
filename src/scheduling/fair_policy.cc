#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "fairserve/scheduling/queue_policy.h"
#include "fairserve/scheduling/request_queue.h"

namespace fairserve {

// When the batch led by q.front() may run. `queue_running`: a batch taken
// from this same queue (tenant and model) is running now.
Clock::TimePoint BatchReadyAt(const RequestQueue& q, bool flush, bool queue_running) {
  const InferenceRequest& head = q.front();
  int64_t limit = head.BatchLimit();
  int64_t delay_us = head.servable->config.max_queue_delay_us;
  if (flush || limit <= 1 || delay_us <= 0 || q.BatchableSamples(limit) >= limit) {
    return Clock::TimePoint::min();
  }
  // A model that batches (a queue delay) and whose tenant already has a
  // batch of it running: a partial batch waits for that batch to end (its
  // worker takes this one as it finishes) unless it fills first. Without
  // this, a second worker takes whatever arrived meanwhile, often one row,
  // and a batch's fixed cost (mlp_large: 3.6 ms for 1 row, 6.2 ms for 32
  // on one core) is paid for it (docs/scheduling.md).
  if (queue_running) return head.deadline;
  // Never wait for company past the point where the head's deadline is near.
  return std::min(head.arrival + std::chrono::microseconds(delay_us), head.deadline);
}

struct FairPolicy::TenantState {
  double service = 0;  // seconds of compute / weight, estimates of running batches included
  double weight = 1;
  int64_t queued = 0;
  // Batches running, per model (queue); a model is absent when none runs.
  std::map<const Servable*, int> running;
  double running_estimate = 0;  // weighted estimates charged for batches still running
  uint64_t last_dispatch = 0;   // dispatch sequence number, for round-robin ties
  std::map<const Servable*, RequestQueue> queues;
  // Where this tenant stands in Impl's indexes (set by Index(), used by Unindex()).
  bool in_order = false, in_active = false;
  std::tuple<double, uint64_t, TenantState*> order_key;
  std::pair<double, TenantState*> active_key;
};

struct FairPolicy::Impl {
  // Element references stay valid as the map grows; tenants are never erased.
  std::unordered_map<std::string, TenantState> tenants;
  // Tenants with queued requests, least service first (ties: served longest
  // ago): Pop walks it from the front and stops at the first tenant with a
  // batch ready, so a cycle costs O(log tenants), not a scan of them all.
  std::set<std::tuple<double, uint64_t, TenantState*>> order;
  // Tenants queued or running, by service not counting running batches:
  // the front is where a tenant back from idle starts.
  std::set<std::pair<double, TenantState*>> active;
  // The least service among backlogged tenants at the last dispatch: where a
  // tenant returning from idle starts when nobody else is backlogged.
  double virtual_time = 0;
  // Measured seconds per sample of each model version, smoothed, to charge a
  // batch ahead of its run (it matters with several workers).
  std::unordered_map<const Servable*, double> per_sample_cost;
  uint64_t dispatches = 0;

  // The least service of the backlogged tenants, not counting batches that
  // are still running: a tenant returning from idle starts level with the
  // others' completed service, so it goes before their next batch (it waits
  // for at most the batch in progress) and still banks no credit.
  // REQUIRES: `t` is not indexed (Unindex first).
  double MinBackloggedService() const {
    return active.empty() ? virtual_time : active.begin()->first;
  }

  // Every change to a tenant's service, dispatch number, queued or running
  // count happens between Unindex(t) and Index(t).
  void Unindex(TenantState& t) {
    if (t.in_order) order.erase(t.order_key);
    if (t.in_active) active.erase(t.active_key);
    t.in_order = t.in_active = false;
  }
  void Index(TenantState& t) {
    if (t.queued > 0) {
      t.order_key = {t.service, t.last_dispatch, &t};
      t.in_order = order.insert(t.order_key).second;
    }
    if (t.queued > 0 || !t.running.empty()) {
      t.active_key = {t.service - t.running_estimate, &t};
      t.in_active = active.insert(t.active_key).second;
    }
  }
};

FairPolicy::FairPolicy() : impl_(std::make_unique<Impl>()) {}
FairPolicy::~FairPolicy() = default;

void FairPolicy::Push(std::unique_ptr<InferenceRequest> request, Clock::TimePoint) {
  TenantState& t = impl_->tenants[request->tenant_id];
  impl_->Unindex(t);
  t.weight = request->tenant_weight > 0 ? request->tenant_weight : 1.0;
  if (t.queued == 0 && t.running.empty()) {
    // Back from idle: no credit for the time away.
    t.service = std::max(t.service, impl_->MinBackloggedService());
  }
  t.queues[request->servable.get()].Push(std::move(request));
  ++t.queued;
  ++size_;
  impl_->Index(t);
}

bool FairPolicy::Pop(Clock::TimePoint now, bool flush, Dispatch* out,
                     Clock::TimePoint* wake_at) {
  *wake_at = Clock::TimePoint::max();
  TenantState* best = nullptr;
  RequestQueue* best_queue = nullptr;
  // Least service first, ties to the tenant served longest ago (round
  // robin): the first tenant with a batch ready now goes. A tenant whose
  // batches still wait for company is skipped, and tells when to look again.
  for (const auto& [service, dispatched, t] : impl_->order) {
    RequestQueue* ready = nullptr;
    for (auto& [servable, q] : t->queues) {
      if (q.empty()) continue;
      Clock::TimePoint at = BatchReadyAt(q, flush, t->running.count(servable) > 0);
      if (at > now) {
        *wake_at = std::min(*wake_at, at);
      } else if (!ready || q.front().arrival < ready->front().arrival) {
        ready = &q;
      }
    }
    if (ready) {
      best = t;
      best_queue = ready;
      break;
    }
  }
  if (!best) return false;
  impl_->Unindex(*best);

  impl_->virtual_time = std::max(impl_->virtual_time, best->service);
  const Servable* servable = best_queue->front().servable.get();
  out->requests = best_queue->TakeBatch();
  if (best_queue->empty()) best->queues.erase(servable);
  int64_t samples = 0;
  for (const auto& r : out->requests) samples += r->batch_size;
  best->queued -= static_cast<int64_t>(out->requests.size());
  size_ -= static_cast<int64_t>(out->requests.size());
  ++best->running[servable];
  best->last_dispatch = ++impl_->dispatches;
  out->tenant_id = out->requests.front()->tenant_id;
  out->weight = best->weight;
  auto cost = impl_->per_sample_cost.find(servable);
  out->servable = servable;
  out->samples = samples;
  out->estimate_seconds = cost == impl_->per_sample_cost.end() ? 0 : cost->second * samples;
  best->service += out->estimate_seconds / best->weight;
  best->running_estimate += out->estimate_seconds / best->weight;
  impl_->Index(*best);
  return true;
}

void FairPolicy::Done(const Dispatch& dispatch, const BatchRecord& record) {
  auto it = impl_->tenants.find(dispatch.tenant_id);
  if (it == impl_->tenants.end()) return;
  TenantState& t = it->second;
  impl_->Unindex(t);
  auto model = t.running.find(dispatch.servable);
  if (model != t.running.end() && --model->second == 0) t.running.erase(model);
  t.running_estimate -= dispatch.estimate_seconds / dispatch.weight;
  if (t.running.empty()) t.running_estimate = 0;  // no drift from rounding
  t.service += (record.device_seconds - dispatch.estimate_seconds) / dispatch.weight;
  impl_->Index(t);
  if (record.samples > 0 && record.compute_seconds > 0) {
    double per_sample = record.compute_seconds / record.samples;
    double& smoothed = impl_->per_sample_cost[dispatch.servable];
    smoothed = smoothed == 0 ? per_sample : 0.8 * smoothed + 0.2 * per_sample;
  }
}

double FairPolicy::EstimateSeconds(const InferenceRequest& request) const {
  auto cost = impl_->per_sample_cost.find(request.servable.get());
  return cost == impl_->per_sample_cost.end() ? -1 : cost->second * request.batch_size;
}

void FairPolicy::TakeDead(Clock::TimePoint now,
                          std::vector<std::unique_ptr<InferenceRequest>>* out) {
  for (auto& [id, t] : impl_->tenants) {
    if (t.queues.empty()) continue;
    int64_t removed = 0;
    for (auto it = t.queues.begin(); it != t.queues.end();) {
      size_t before = out->size();
      it->second.TakeDead(now, out);
      removed += static_cast<int64_t>(out->size() - before);
      it = it->second.empty() ? t.queues.erase(it) : std::next(it);
    }
    if (removed == 0) continue;
    // The index keys are the stored ones, so re-index after the change.
    impl_->Unindex(t);
    t.queued -= removed;
    size_ -= removed;
    impl_->Index(t);
  }
}

void FairPolicy::TakeAll(std::vector<std::unique_ptr<InferenceRequest>>* out) {
  for (auto& [id, t] : impl_->tenants) {
    impl_->Unindex(t);
    for (auto& [servable, q] : t.queues) q.TakeAll(out);
    t.queues.clear();
    t.queued = 0;
    impl_->Index(t);
  }
  size_ = 0;
}

double FairPolicy::Service(const std::string& tenant) const {
  auto it = impl_->tenants.find(tenant);
  return it == impl_->tenants.end() ? 0 : it->second.service;
}

int64_t FairPolicy::Queued(const std::string& tenant) const {
  auto it = impl_->tenants.find(tenant);
  return it == impl_->tenants.end() ? 0 : it->second.queued;
}

}  // namespace fairserve
