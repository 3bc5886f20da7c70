#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_map>

#include "fairserve/scheduling/queue_policy.h"
#include "fairserve/scheduling/request_queue.h"

namespace fairserve {

// When the batch led by q.front() may run.
Clock::TimePoint BatchReadyAt(const RequestQueue& q, bool flush) {
  const InferenceRequest& head = q.front();
  int64_t limit = head.BatchLimit();
  int64_t delay_us = head.servable->config.max_queue_delay_us;
  if (flush || limit <= 1 || delay_us <= 0 || q.BatchableSamples(limit) >= limit) {
    return Clock::TimePoint::min();
  }
  // Never wait for company past the point where the head's deadline is near.
  return std::min(head.arrival + std::chrono::microseconds(delay_us), head.deadline);
}

struct FairPolicy::TenantState {
  double service = 0;  // seconds of compute / weight, estimates of running batches included
  double weight = 1;
  int64_t queued = 0;
  int running = 0;
  double running_estimate = 0;  // weighted estimates charged for batches still running
  uint64_t last_dispatch = 0;   // dispatch sequence number, for round-robin ties
  std::map<const Servable*, RequestQueue> queues;
};

struct FairPolicy::Impl {
  std::unordered_map<std::string, TenantState> tenants;
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
  double MinBackloggedService(const TenantState* except) const {
    double best = std::numeric_limits<double>::infinity();
    for (const auto& [id, t] : tenants) {
      if (&t != except && (t.queued > 0 || t.running > 0)) {
        best = std::min(best, t.service - t.running_estimate);
      }
    }
    return std::isinf(best) ? virtual_time : best;
  }
};

FairPolicy::FairPolicy() : impl_(std::make_unique<Impl>()) {}
FairPolicy::~FairPolicy() = default;

void FairPolicy::Push(std::unique_ptr<InferenceRequest> request, Clock::TimePoint) {
  TenantState& t = impl_->tenants[request->tenant_id];
  t.weight = request->tenant_weight > 0 ? request->tenant_weight : 1.0;
  if (t.queued == 0 && t.running == 0) {
    // Back from idle: no credit for the time away.
    t.service = std::max(t.service, impl_->MinBackloggedService(&t));
  }
  t.queues[request->servable.get()].Push(std::move(request));
  ++t.queued;
  ++size_;
}

bool FairPolicy::Pop(Clock::TimePoint now, bool flush, Dispatch* out,
                     Clock::TimePoint* wake_at) {
  *wake_at = Clock::TimePoint::max();
  TenantState* best = nullptr;
  const std::string* best_id = nullptr;
  RequestQueue* best_queue = nullptr;
  for (auto& [id, t] : impl_->tenants) {
    if (t.queued == 0) continue;
    RequestQueue* ready = nullptr;
    for (auto& [servable, q] : t.queues) {
      if (q.empty()) continue;
      Clock::TimePoint at = BatchReadyAt(q, flush);
      if (at > now) {
        *wake_at = std::min(*wake_at, at);
      } else if (!ready || q.front().arrival < ready->front().arrival) {
        ready = &q;
      }
    }
    if (!ready) continue;
    // Ties go to the tenant served longest ago (round robin).
    bool better = !best || t.service < best->service ||
                  (t.service == best->service && t.last_dispatch < best->last_dispatch);
    if (better) {
      best = &t;
      best_id = &id;
      best_queue = ready;
    }
  }
  if (!best) return false;

  impl_->virtual_time = std::max(impl_->virtual_time, best->service);
  const Servable* servable = best_queue->front().servable.get();
  out->requests = best_queue->TakeBatch();
  if (best_queue->empty()) best->queues.erase(servable);
  int64_t samples = 0;
  for (const auto& r : out->requests) samples += r->batch_size;
  best->queued -= static_cast<int64_t>(out->requests.size());
  size_ -= static_cast<int64_t>(out->requests.size());
  ++best->running;
  best->last_dispatch = ++impl_->dispatches;
  out->tenant_id = *best_id;
  out->weight = best->weight;
  auto cost = impl_->per_sample_cost.find(servable);
  out->servable = servable;
  out->samples = samples;
  out->estimate_seconds = cost == impl_->per_sample_cost.end() ? 0 : cost->second * samples;
  best->service += out->estimate_seconds / best->weight;
  best->running_estimate += out->estimate_seconds / best->weight;
  return true;
}

void FairPolicy::Done(const Dispatch& dispatch, const BatchRecord& record) {
  auto it = impl_->tenants.find(dispatch.tenant_id);
  if (it == impl_->tenants.end()) return;
  TenantState& t = it->second;
  --t.running;
  t.running_estimate -= dispatch.estimate_seconds / dispatch.weight;
  if (t.running == 0) t.running_estimate = 0;  // no drift from rounding
  t.service += (record.device_seconds - dispatch.estimate_seconds) / dispatch.weight;
  if (record.samples > 0 && record.compute_seconds > 0) {
    double per_sample = record.compute_seconds / record.samples;
    double& smoothed = impl_->per_sample_cost[dispatch.servable];
    smoothed = smoothed == 0 ? per_sample : 0.8 * smoothed + 0.2 * per_sample;
  }
}

void FairPolicy::TakeDead(Clock::TimePoint now,
                          std::vector<std::unique_ptr<InferenceRequest>>* out) {
  for (auto& [id, t] : impl_->tenants) {
    for (auto it = t.queues.begin(); it != t.queues.end();) {
      size_t before = out->size();
      it->second.TakeDead(now, out);
      int64_t removed = static_cast<int64_t>(out->size() - before);
      t.queued -= removed;
      size_ -= removed;
      it = it->second.empty() ? t.queues.erase(it) : std::next(it);
    }
  }
}

void FairPolicy::TakeAll(std::vector<std::unique_ptr<InferenceRequest>>* out) {
  for (auto& [id, t] : impl_->tenants) {
    for (auto& [servable, q] : t.queues) q.TakeAll(out);
    t.queues.clear();
    t.queued = 0;
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
