#include "fairserve/scheduling/scheduler.h"

#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "fairserve/scheduling/queue_policy.h"
#include "fairserve/scheduling/request_queue.h"

namespace fairserve {

Clock::TimePoint BatchReadyAt(const RequestQueue& q, bool flush,
                              bool queue_running);  // fair_policy.cc

namespace {

constexpr auto kSweepInterval = std::chrono::milliseconds(10);

// A call runs on its caller's thread only when the device has been idle for
// at least this many times the call's estimated cost (see
// SchedulerOptions::run_on_caller_below). One call at a time leaves a gap
// of a client round trip between batches, about 8 times a tiny model's
// cost on this project's VM; back-to-back calls on a connection leave only
// their own decoding, about 2 times: the factor lies between.
constexpr double kCallerRunIdleFactor = 4;

class FifoPolicy final : public QueuePolicy {
 public:
  void Push(std::unique_ptr<InferenceRequest> request, Clock::TimePoint) override {
    queue_.Push(std::move(request));
  }
  bool Pop(Clock::TimePoint now, bool flush, Dispatch* out, Clock::TimePoint* wake_at) override {
    *wake_at = Clock::TimePoint::max();
    if (queue_.empty()) return false;
    // The baseline dispatches as batches fill or time out, whatever runs.
    Clock::TimePoint at = BatchReadyAt(queue_, flush, /*queue_running=*/false);
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
  // The baseline keeps no measurements: every batch goes to a worker.
  double EstimateSeconds(const InferenceRequest&) const override { return -1; }

 private:
  RequestQueue queue_;
};

// Worker threads around a QueuePolicy. The policy is only touched under mu_;
// batches run outside it. At most `slots_` batches run at once: one per
// worker, whether a worker or a caller (run_on_caller_below) runs it.
class ThreadedScheduler final : public Scheduler {
 public:
  ThreadedScheduler(const SchedulerOptions& options, Clock& clock, BatchRunner& runner,
                    std::unique_ptr<QueuePolicy> policy)
      : options_(options),
        clock_(clock),
        runner_(runner),
        slots_(std::max(1, options.workers)),
        run_on_caller_below_s_(
            std::chrono::duration<double>(options.run_on_caller_below).count()),
        policy_(std::move(policy)) {
    for (int i = 0; i < slots_; ++i) {
      workers_.emplace_back([this, i] {
        const std::string name = (options_.thread_name + "-" + std::to_string(i)).substr(0, 15);
        pthread_setname_np(pthread_self(), name.c_str());
        WorkerLoop();
      });
    }
    reaper_ = std::thread([this] { ReaperLoop(); });
  }

  ~ThreadedScheduler() override { Shutdown(std::chrono::milliseconds(0)); }

  absl::Status Submit(std::unique_ptr<InferenceRequest> request) override {
    Clock::TimePoint now = clock_.Now();
    Clock::TimePoint limit = now + options_.max_queue_wait;
    if (request->deadline > limit) request->deadline = limit;
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("the server is shutting down");
    const bool here = MayRunOnCaller(*request, now);
    policy_->Push(std::move(request), now);
    if (!here) {
      const bool wake = TakeWake();
      lock.unlock();
      if (wake) cv_.notify_one();
      return absl::OkStatus();
    }
    // The only request queued, and ready: the policy hands it straight back.
    Dispatch dispatch;
    Clock::TimePoint wake_at;
    if (policy_->Pop(now, false, &dispatch, &wake_at)) {
      ++caller_runs_;
      PrepareCallerThread();
      RunLocked(lock, std::move(dispatch));
    }
    const bool wake = TakeWake();  // what came meanwhile waited for this slot
    lock.unlock();
    if (wake) cv_.notify_one();
    return absl::OkStatus();
  }

  int64_t CallerRuns() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return caller_runs_;
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
      r->waiting.reset();  // before the answer: the client may call again at once
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

  // options_.thread_init, once per thread that runs this scheduler's
  // batches as a caller.
  void PrepareCallerThread() {
    if (!options_.thread_init) return;
    thread_local std::vector<const ThreadedScheduler*> prepared;
    if (std::find(prepared.begin(), prepared.end(), this) != prepared.end()) return;
    options_.thread_init();
    prepared.push_back(this);
  }

  // See SchedulerOptions::run_on_caller_below.
  bool MayRunOnCaller(const InferenceRequest& r, Clock::TimePoint now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!r.may_run_on_caller || run_on_caller_below_s_ <= 0) return false;
    if (running_ != 0 || policy_->size() != 0 || r.Dead(now)) return false;
    const int64_t limit = r.BatchLimit();
    const bool ready = r.servable->config.max_queue_delay_us <= 0 || limit <= 1 ||
                       r.batch_size >= limit;
    if (!ready) return false;
    const double estimate = policy_->EstimateSeconds(r);
    if (estimate < 0 || estimate >= run_on_caller_below_s_) return false;
    // Idle for a while: calls come one at a time. A call right behind the
    // last batch means back-to-back traffic, which queues and batches.
    const double idle = std::chrono::duration<double>(now - idle_since_).count();
    return idle >= kCallerRunIdleFactor * estimate;
  }

  // Runs a dispatched batch in one of the slots: mu_ is released for the
  // run and held again when this returns. The slot is freed and the policy
  // told before the answers go out (BatchRunner::Run's settle), so the
  // next request of a client that has its answer sees both.
  void RunLocked(std::unique_lock<std::mutex>& lock, Dispatch dispatch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++running_;
    const bool wake = TakeWake();  // more than this batch is queued
    lock.unlock();
    if (wake) cv_.notify_one();
    runner_.Run(std::move(dispatch.requests), [&](const BatchRecord& record) {
      std::lock_guard<std::mutex> settle_lock(mu_);
      --running_;
      policy_->Done(dispatch, record);
      if (running_ == 0 && policy_->size() == 0) idle_since_ = clock_.Now();
    });
    lock.lock();
  }

  // Whether to wake a sleeping worker (notify cv_ once mu_ is released):
  // something is queued, a slot is free, and no worker is already on its
  // way. A worker that wakes takes every request ready for one batch, so
  // waking a second one for the next request only costs it two context
  // switches to find the queue empty; a worker that takes a batch and
  // leaves more queued wakes the next one itself (RunLocked).
  bool TakeWake() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (signalled_ > 0 || sleeping_ == 0 || running_ >= slots_ || policy_->size() == 0) {
      return false;
    }
    ++signalled_;
    return true;
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
      Clock::TimePoint wake_at = Clock::TimePoint::max();
      // Every slot taken means a caller runs a batch in this worker's:
      // the caller wakes a worker when it ends and more is queued.
      if (running_ < slots_ && policy_->Pop(now, stopping_, &dispatch, &wake_at)) {
        RunLocked(lock, std::move(dispatch));
        continue;
      }
      Clock::TimePoint until = wake_at;
      if (stopping_) until = std::min(until, drain_until_);
      ++sleeping_;
      if (until == Clock::TimePoint::max()) {
        cv_.wait(lock);  // nothing queued: Submit or Shutdown wakes us
      } else {
        cv_.wait_until(lock, until);
      }
      --sleeping_;
      if (signalled_ > 0) --signalled_;  // or a timeout: one notify too many at worst
    }
    lock.unlock();
    cv_.notify_all();
  }

  const SchedulerOptions options_;
  Clock& clock_;
  BatchRunner& runner_;
  const int slots_;
  const double run_on_caller_below_s_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable reaper_cv_;  // wakes the reaper early, for Shutdown
  std::unique_ptr<QueuePolicy> policy_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // batches running, by workers or callers
  int64_t caller_runs_ ABSL_GUARDED_BY(mu_) = 0;
  int sleeping_ ABSL_GUARDED_BY(mu_) = 0;   // workers waiting on cv_
  int signalled_ ABSL_GUARDED_BY(mu_) = 0;  // 0 or 1: woken by TakeWake, not yet awake
  // When the last batch ended with nothing else running or queued.
  Clock::TimePoint idle_since_ ABSL_GUARDED_BY(mu_);
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

  int64_t CallerRuns() const override {
    int64_t runs = 0;
    for (const auto& [name, s] : per_device_) runs += s->CallerRuns();
    return runs;
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
