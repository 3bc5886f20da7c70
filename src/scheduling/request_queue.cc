#include "fairserve/scheduling/request_queue.h"

#include <algorithm>

namespace fairserve {

RequestQueue::~RequestQueue() {
  for (auto& r : queue_) Release(std::move(r));
}

void RequestQueue::Push(std::unique_ptr<InferenceRequest> request) {
  queue_.push_back(std::move(request));
}

std::unique_ptr<InferenceRequest> RequestQueue::Release(std::unique_ptr<InferenceRequest> r) {
  if (r) r->waiting.reset();
  return r;
}

int64_t RequestQueue::BatchableSamples(int64_t limit) const {
  if (queue_.empty()) return 0;
  const InferenceRequest& head = *queue_.front();
  int64_t samples = 0;
  for (const auto& r : queue_) {
    if (r.get() == &head || head.BatchableWith(*r)) samples += r->batch_size;
    if (samples >= limit) break;
  }
  return samples;
}

std::vector<std::unique_ptr<InferenceRequest>> RequestQueue::TakeBatch() {
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  if (queue_.empty()) return batch;
  batch.push_back(Release(std::move(queue_.front())));
  queue_.pop_front();
  const InferenceRequest& head = *batch.front();
  int64_t limit = head.BatchLimit();
  int64_t samples = head.batch_size;
  for (auto it = queue_.begin(); it != queue_.end() && samples < limit;) {
    InferenceRequest& r = **it;
    int64_t r_limit = std::min(limit, r.BatchLimit());
    if (head.BatchableWith(r) && samples + r.batch_size <= r_limit) {
      samples += r.batch_size;
      limit = r_limit;
      batch.push_back(Release(std::move(*it)));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  return batch;
}

void RequestQueue::TakeDead(Clock::TimePoint now,
                            std::vector<std::unique_ptr<InferenceRequest>>* out) {
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->Dead(now)) {
      out->push_back(Release(std::move(*it)));
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

void RequestQueue::TakeAll(std::vector<std::unique_ptr<InferenceRequest>>* out) {
  for (auto& r : queue_) out->push_back(Release(std::move(r)));
  queue_.clear();
}

}  // namespace fairserve
