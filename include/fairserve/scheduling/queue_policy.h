#ifndef FAIRSERVE_SCHEDULING_QUEUE_POLICY_H_
#define FAIRSERVE_SCHEDULING_QUEUE_POLICY_H_

#include <memory>
#include <string>
#include <vector>

#include "fairserve/common/clock.h"
#include "fairserve/scheduling/request.h"

namespace fairserve {

// A batch a policy handed out, with what the policy needs back once it ran.
struct Dispatch {
  std::vector<std::unique_ptr<InferenceRequest>> requests;
  std::string tenant_id;
  double weight = 1.0;
  double estimate_seconds = 0;  // cost charged ahead, corrected once measured
  const Servable* servable = nullptr;
  int64_t samples = 0;
};

// Which queued request runs next. A policy is a plain data structure with no
// threads and no clock of its own: the scheduler calls it under its lock and
// passes the time in, so tests drive it step by step in simulated time.
class QueuePolicy {
 public:
  virtual ~QueuePolicy() = default;

  virtual void Push(std::unique_ptr<InferenceRequest> request, Clock::TimePoint now) = 0;

  // Fills `out` with the next batch that is ready at `now` and returns true.
  // Otherwise returns false and sets *wake_at to when one will be ready
  // (TimePoint::max() when nothing is queued). A batch is ready when it is
  // full or its oldest request has waited the model's max_queue_delay_us;
  // with `flush` every non-empty queue is ready. (FairPolicy: a partial
  // batch of a model with a queue delay also waits while a batch of the
  // same tenant and model runs.)
  virtual bool Pop(Clock::TimePoint now, bool flush, Dispatch* out, Clock::TimePoint* wake_at) = 0;

  // Tells the policy what a dispatched batch really cost.
  virtual void Done(const Dispatch& dispatch, const BatchRecord& record) = 0;

  // Removes cancelled and expired requests.
  virtual void TakeDead(Clock::TimePoint now,
                        std::vector<std::unique_ptr<InferenceRequest>>* out) = 0;
  virtual void TakeAll(std::vector<std::unique_ptr<InferenceRequest>>* out) = 0;
  virtual int64_t size() const = 0;

  // What running `request` alone would cost, from the batches of its model
  // measured so far; negative while nothing is known.
  virtual double EstimateSeconds(const InferenceRequest& request) const = 0;
};

// One global first-in-first-out queue (the baseline).
std::unique_ptr<QueuePolicy> MakeFifoPolicy();

// Weighted fair queuing on measured cost (virtual token counter): each
// tenant's service is the compute time its batches used divided by its
// weight; the ready tenant with the least service goes next; a tenant that
// comes back from idle is lifted to the least service among the backlogged
// ones, so idle time banks no credit. Requests wait in one queue per
// (tenant, model version); a batch holds one tenant's requests of one model.
class FairPolicy : public QueuePolicy {
 public:
  FairPolicy();
  ~FairPolicy() override;

  void Push(std::unique_ptr<InferenceRequest> request, Clock::TimePoint now) override;
  bool Pop(Clock::TimePoint now, bool flush, Dispatch* out, Clock::TimePoint* wake_at) override;
  void Done(const Dispatch& dispatch, const BatchRecord& record) override;
  void TakeDead(Clock::TimePoint now, std::vector<std::unique_ptr<InferenceRequest>>* out) override;
  void TakeAll(std::vector<std::unique_ptr<InferenceRequest>>* out) override;
  int64_t size() const override { return size_; }
  double EstimateSeconds(const InferenceRequest& request) const override;

  // Weighted service of `tenant` so far (seconds / weight), for tests.
  double Service(const std::string& tenant) const;
  int64_t Queued(const std::string& tenant) const;

 private:
  struct TenantState;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t size_ = 0;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SCHEDULING_QUEUE_POLICY_H_
