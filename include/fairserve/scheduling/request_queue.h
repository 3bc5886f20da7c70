#ifndef FAIRSERVE_SCHEDULING_REQUEST_QUEUE_H_
#define FAIRSERVE_SCHEDULING_REQUEST_QUEUE_H_

#include <deque>
#include <memory>
#include <vector>

#include "fairserve/scheduling/request.h"

namespace fairserve {

// A FIFO of requests that keeps each request's tenant queue counter in step.
// Not thread-safe: its owner's lock guards it.
class RequestQueue {
 public:
  RequestQueue() = default;
  RequestQueue(RequestQueue&&) = default;
  RequestQueue& operator=(RequestQueue&&) = default;
  ~RequestQueue();

  void Push(std::unique_ptr<InferenceRequest> request);
  bool empty() const { return queue_.empty(); }
  size_t size() const { return queue_.size(); }
  const InferenceRequest& front() const { return *queue_.front(); }
  // Samples waiting that could join a batch led by front().
  int64_t BatchableSamples(int64_t limit) const;

  // Takes the head and the queued requests batchable with it, in order, up to
  // the head's batch limit (and each member's own cap).
  std::vector<std::unique_ptr<InferenceRequest>> TakeBatch();

  // Removes requests that are cancelled or past their deadline at `now`.
  void TakeDead(Clock::TimePoint now, std::vector<std::unique_ptr<InferenceRequest>>* out);
  // Removes everything.
  void TakeAll(std::vector<std::unique_ptr<InferenceRequest>>* out);

 private:
  std::unique_ptr<InferenceRequest> Release(std::unique_ptr<InferenceRequest> r);
  std::deque<std::unique_ptr<InferenceRequest>> queue_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SCHEDULING_REQUEST_QUEUE_H_
