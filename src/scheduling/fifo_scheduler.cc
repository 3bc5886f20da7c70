#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "fairserve/scheduling/scheduler.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

class FifoScheduler final : public Scheduler {
 public:
  FifoScheduler(const SchedulerOptions& options, Clock& clock, BatchRunner& runner)
      : options_(options), clock_(clock), runner_(runner) {
    for (int i = 0; i < std::max(1, options_.workers); ++i) {
      workers_.emplace_back([this] { WorkerLoop(); });
    }
  }

  ~FifoScheduler() override { Shutdown(std::chrono::milliseconds(0)); }

  absl::Status Submit(std::unique_ptr<InferenceRequest> request) override {
    Clock::TimePoint limit = clock_.Now() + options_.max_queue_wait;
    if (request->deadline > limit) request->deadline = limit;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return absl::UnavailableError("the server is shutting down");
      queue_.push_back(std::move(request));
    }
    cv_.notify_one();
    return absl::OkStatus();
  }

  void Shutdown(std::chrono::milliseconds drain) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ && workers_.empty()) return;
      stopping_ = true;
      drain_until_ = clock_.Now() + drain;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) {
      if (t.joinable()) t.join();
    }
    workers_.clear();
    // Whatever is left could not be run within the drain time.
    std::deque<std::unique_ptr<InferenceRequest>> left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      left.swap(queue_);
    }
    for (auto& r : left) {
      r->on_done(absl::UnavailableError("the server shut down before this request could run"));
    }
  }

  int64_t QueueDepth() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(queue_.size());
  }

 private:
  void WorkerLoop() {
    if (options_.thread_init) options_.thread_init();
    while (true) {
      std::vector<std::unique_ptr<InferenceRequest>> batch;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty() || (stopping_ && clock_.Now() >= drain_until_)) return;
        TakeBatch(&batch);
      }
      runner_.Run(std::move(batch));
    }
  }

  // Takes the oldest request and the queued requests that can share its batch.
  void TakeBatch(std::vector<std::unique_ptr<InferenceRequest>>* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    batch->push_back(std::move(queue_.front()));
    queue_.pop_front();
    const InferenceRequest& head = *batch->front();
    int64_t limit = head.servable->config.max_batch_size;
    if (head.max_batch_size > 0) limit = std::min(limit, head.max_batch_size);
    int64_t samples = head.batch_size;
    for (auto it = queue_.begin(); it != queue_.end() && samples < limit;) {
      InferenceRequest& r = **it;
      int64_t r_limit = r.max_batch_size > 0 ? std::min(limit, r.max_batch_size) : limit;
      if (head.BatchableWith(r) && samples + r.batch_size <= r_limit) {
        samples += r.batch_size;
        limit = r_limit;
        batch->push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }

  const SchedulerOptions options_;
  Clock& clock_;
  BatchRunner& runner_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<InferenceRequest>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Clock::TimePoint drain_until_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<Scheduler> MakeFifoScheduler(const SchedulerOptions& options, Clock& clock,
                                             BatchRunner& runner) {
  return std::make_unique<FifoScheduler>(options, clock, runner);
}

}  // namespace fairserve
