#include "fairserve/scheduling/scheduler.h"

#include <pthread.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "fairserve/scheduling/queue_policy.h"
#include "fairserve/scheduling/request_queue.h"

namespace fairserve {

Clock::TimePoint BatchReadyAt(const RequestQueue& q, bool flush);  // fair_policy.cc

namespace {

constexpr auto kSweepInterval = std::chrono::milliseconds(10);

class FifoPolicy final : public QueuePolicy {
 public:
  void Push(std::unique_ptr<InferenceRequest> request, Clock::TimePoint) override {
    queue_.Push(std::move(request));
  }
  bool Pop(Clock::TimePoint now, bool flush, Dispatch* out, Clock::TimePoint* wake_at) override {
    *wake_at = Clock::TimePoint::max();
    if (queue_.empty()) return false;
    Clock::TimePoint at = BatchReadyAt(queue_, flush);
    if (at > now) {
      *wake_at = at;
      return false;
    }
    out->tenant_id = queue_.front().tenant_id;
    out->requests = queue_.TakeBatch();
    return true;
  }
  void Done(const Dispatch&, const BatchRecord&) override {}
  void TakeDead(Clock::TimePoint now, std::vector<std::unique_ptr<InferenceRequest>>* out) override {
    queue_.TakeDead(now, out);
  }
  void TakeAll(std::vector<std::unique_ptr<InferenceRequest>>* out) override { queue_.TakeAll(out); }
  int64_t size() const override { return static_cast<int64_t>(queue_.size()); }

 private:
  RequestQueue queue_;
};

// Worker threads around a QueuePolicy. The policy is only touched under mu_;
// batches run outside it.
class ThreadedScheduler final : public Scheduler {
 public:
  ThreadedScheduler(const SchedulerOptions& options, Clock& clock, BatchRunner& runner,
                    std::unique_ptr<QueuePolicy> policy)
      : options_(options), clock_(clock), runner_(runner), policy_(std::move(policy)) {
    for (int i = 0; i < std::max(1, options_.workers); ++i) {
      workers_.emplace_back([this] { WorkerLoop(); });
    }
    reaper_ = std::thread([this] { ReaperLoop(); });
  }

  ~ThreadedScheduler() override { Shutdown(std::chrono::milliseconds(0)); }

  absl::Status Submit(std::unique_ptr<InferenceRequest> request) override {
    Clock::TimePoint now = clock_.Now();
    Clock::TimePoint limit = now + options_.max_queue_wait;
    if (request->deadline > limit) request->deadline = limit;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return absl::UnavailableError("the server is shutting down");
      policy_->Push(std::move(request), now);
    }
    cv_.notify_one();
    return absl::OkStatus();
  }

  void Shutdown(std::chrono::milliseconds drain) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_) {
        stopping_ = true;
        drain_until_ = clock_.Now() + drain;
      }
    }
    cv_.notify_all();
    reaper_cv_.notify_all();
    std::vector<std::thread> workers;
    std::thread reaper;
    {
      std::lock_guard<std::mutex> lock(join_mu_);
      workers.swap(workers_);
      reaper.swap(reaper_);
    }
    for (std::thread& t : workers) t.join();
    if (reaper.joinable()) reaper.join();
    std::vector<std::unique_ptr<InferenceRequest>> left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      policy_->TakeAll(&left);
    }
    for (auto& r : left) {
      r->on_done(absl::UnavailableError("the server shut down before this request could run"));
    }
  }

  int64_t QueueDepth() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return policy_->size();
  }

 private:
  // Every kSweepInterval, answers the queued requests that were cancelled or
  // whose deadline passed (CANCELLED / DEADLINE_EXCEEDED, without running),
  // so their admission slots come back at once even while every worker is
  // busy with a long batch. The only sweeper: idle workers sleep until
  // there is work. Runs until Shutdown; the answers are cheap and never run
  // a model.
  void ReaperLoop() {
    pthread_setname_np(pthread_self(), "fs-reaper");
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      reaper_cv_.wait_for(lock, kSweepInterval, [this] { return stopping_; });
      if (stopping_) break;
      std::vector<std::unique_ptr<InferenceRequest>> dead;
      policy_->TakeDead(clock_.Now(), &dead);
      if (dead.empty()) continue;
      lock.unlock();
      AnswerDead(std::move(dead));
      lock.lock();
    }
  }

  // Answers requests taken out as dead (DEADLINE_EXCEEDED / CANCELLED); the
  // runner sees each is dead and never runs it. Call without mu_ held.
  void AnswerDead(std::vector<std::unique_ptr<InferenceRequest>> dead) {
    for (auto& r : dead) {
      std::vector<std::unique_ptr<InferenceRequest>> one;
      one.push_back(std::move(r));
      runner_.Run(std::move(one));
    }
  }

  void WorkerLoop() {
    if (options_.thread_init) options_.thread_init();
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      // Dead requests are the reaper's (a worker would only repeat its
      // sweep); one dispatched before the reaper saw it is answered by the
      // runner without running.
      Clock::TimePoint now = clock_.Now();
      if (stopping_ && (now >= drain_until_ || policy_->size() == 0)) break;
      Dispatch dispatch;
      Clock::TimePoint wake_at;
      if (policy_->Pop(now, stopping_, &dispatch, &wake_at)) {
        lock.unlock();
        BatchRecord record = runner_.Run(std::move(dispatch.requests));
        lock.lock();
        policy_->Done(dispatch, record);
        continue;
      }
      Clock::TimePoint until = wake_at;
      if (stopping_) until = std::min(until, drain_until_);
      if (until == Clock::TimePoint::max()) {
        cv_.wait(lock);  // nothing queued: Submit or Shutdown wakes us
      } else {
        cv_.wait_until(lock, until);
      }
    }
    lock.unlock();
    cv_.notify_all();
  }

  const SchedulerOptions options_;
  Clock& clock_;
  BatchRunner& runner_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable reaper_cv_;  // wakes the reaper early, for Shutdown
  std::unique_ptr<QueuePolicy> policy_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Clock::TimePoint drain_until_ ABSL_GUARDED_BY(mu_);
  std::mutex join_mu_;
  std::vector<std::thread> workers_;
  std::thread reaper_;
};

class DeviceScheduler final : public Scheduler {
 public:
  explicit DeviceScheduler(std::map<std::string, std::unique_ptr<Scheduler>> per_device)
      : per_device_(std::move(per_device)) {}

  absl::Status Submit(std::unique_ptr<InferenceRequest> request) override {
    const std::string& device = request->servable->config.device;
    auto it = device.empty() ? per_device_.begin() : per_device_.find(device);
    if (it == per_device_.end()) {
      return absl::InternalError(
          absl::StrCat("no scheduler for device '", device, "' (the model cache placed a model "
                       "on a device the server does not run)"));
    }
    return it->second->Submit(std::move(request));
  }

  void Shutdown(std::chrono::milliseconds drain) override {
    // Each device drains at once, not one after another.
    std::vector<std::thread> threads;
    for (auto& [name, s] : per_device_) {
      threads.emplace_back([&s = s, drain] { s->Shutdown(drain); });
    }
    for (std::thread& t : threads) t.join();
  }

  int64_t QueueDepth() const override {
    int64_t depth = 0;
    for (const auto& [name, s] : per_device_) depth += s->QueueDepth();
    return depth;
  }

 private:
  std::map<std::string, std::unique_ptr<Scheduler>> per_device_;
};

}  // namespace

std::unique_ptr<Scheduler> MakeDeviceScheduler(
    std::map<std::string, std::unique_ptr<Scheduler>> per_device) {
  return std::make_unique<DeviceScheduler>(std::move(per_device));
}

std::unique_ptr<QueuePolicy> MakeFifoPolicy() { return std::make_unique<FifoPolicy>(); }

std::unique_ptr<Scheduler> MakeScheduler(const SchedulerOptions& options, Clock& clock,
                                         BatchRunner& runner) {
  std::unique_ptr<QueuePolicy> policy;
  if (options.policy == "fifo") {
    policy = MakeFifoPolicy();
  } else {
    policy = std::make_unique<FairPolicy>();
  }
  return std::make_unique<ThreadedScheduler>(options, clock, runner, std::move(policy));
}

}  // namespace fairserve
