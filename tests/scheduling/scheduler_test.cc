#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <pthread.h>

#include <thread>

#include "fairserve/scheduling/scheduler.h"
#include "scheduling/test_util.h"

namespace fairserve {
namespace {

using namespace testing_util;

// An executor that blocks until released, so tests control what is queued.
class GateExecutor : public DoublingExecutor {
 public:
  GateExecutor() : DoublingExecutor(nullptr, Clock::Duration(0)) {}
  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>& inputs) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++started_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
    lock.unlock();
    return DoublingExecutor::Run(inputs);
  }
  void WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return started_ >= n; });
  }
  // Whether n runs started within `limit` (they wait at the gate meanwhile).
  bool WaitStartedFor(int n, std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return started_ >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int started_ = 0;
};

// Behaviour both policies share (with one tenant they must agree).
class SchedulerTest : public ::testing::TestWithParam<std::string> {
 protected:
  SchedulerOptions Options() {
    SchedulerOptions o;
    o.policy = GetParam();
    return o;
  }
};

void WaitDone(const std::vector<std::shared_ptr<Outcome>>& outcomes) {
  for (const auto& o : outcomes) {
    while (!o->done()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST_P(SchedulerTest, BatchesQueuedRequestsUpToMaxBatch) {
  auto exec = std::make_shared<GateExecutor>();
  auto servable = MakeServable(exec, /*max_batch=*/4);
  BatchRunner runner(SteadyClock::Get(), {});
  auto scheduler = MakeScheduler(Options(), SteadyClock::Get(), runner);

  std::vector<std::shared_ptr<Outcome>> outcomes;
  for (int i = 0; i < 7; ++i) {
    outcomes.push_back(std::make_shared<Outcome>());
    ASSERT_TRUE(scheduler->Submit(MakeRequest(servable, "t", 1, i, outcomes.back())).ok());
    if (i == 0) exec->WaitStarted(1);  // the first runs alone; the rest queue behind it
  }
  EXPECT_EQ(scheduler->QueueDepth(), 6);
  exec->Open();
  WaitDone(outcomes);
  EXPECT_THAT(exec->batches(), ::testing::ElementsAre(1, 4, 2));
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(outcomes[i]->result->ok());
    EXPECT_EQ(OutputFloats(**outcomes[i]->result)[0], 2.0f * i);
  }
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

TEST_P(SchedulerTest, TenantBatchCapIsRespected) {
  auto exec = std::make_shared<GateExecutor>();
  auto servable = MakeServable(exec, 8);
  BatchRunner runner(SteadyClock::Get(), {});
  auto scheduler = MakeScheduler(Options(), SteadyClock::Get(), runner);
  std::vector<std::shared_ptr<Outcome>> outcomes;
  for (int i = 0; i < 5; ++i) {
    outcomes.push_back(std::make_shared<Outcome>());
    auto r = MakeRequest(servable, "capped", 1, 1, outcomes.back());
    r->max_batch_size = 2;
    ASSERT_TRUE(scheduler->Submit(std::move(r)).ok());
    if (i == 0) exec->WaitStarted(1);
  }
  exec->Open();
  WaitDone(outcomes);
  EXPECT_THAT(exec->batches(), ::testing::ElementsAre(1, 2, 2));
}

// A request wakes one sleeping worker, not every one; a worker that takes a
// batch and leaves more queued wakes the next. Three one-row batches queued
// back to back must still run on three workers at once: none of the three
// can end before all have started.
TEST_P(SchedulerTest, BatchesQueuedAtOnceRunOnAsManyWorkers) {
  BatchRunner runner(SteadyClock::Get(), {});
  SchedulerOptions options = Options();
  options.workers = 3;
  auto scheduler = MakeScheduler(options, SteadyClock::Get(), runner);
  for (int round = 0; round < 20; ++round) {
    auto gated = std::make_shared<GateExecutor>();
    auto one = MakeServable(gated, /*max_batch=*/1);
    std::vector<std::shared_ptr<Outcome>> outcomes;
    for (int i = 0; i < 3; ++i) {
      outcomes.push_back(std::make_shared<Outcome>());
      ASSERT_TRUE(scheduler->Submit(MakeRequest(one, "t", 1, i, outcomes.back())).ok());
    }
    EXPECT_TRUE(gated->WaitStartedFor(3, std::chrono::seconds(10))) << "round " << round;
    gated->Open();
    WaitDone(outcomes);
  }
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

// A worker waiting out one tenant's batching delay still wakes for another
// tenant's request that is ready now (the fair policy; fifo's head waits,
// and everything behind it too).
TEST(FairSchedulerTest, AWorkerWaitingOnABatchingDelayWakesForAReadyRequest) {
  auto exec = std::make_shared<GateExecutor>();
  auto base = MakeServable(exec, 8);
  auto delayed = std::make_shared<Servable>(*base);
  delayed->config.max_queue_delay_us = 10'000'000;
  auto ready_exec = std::make_shared<GateExecutor>();
  auto ready = MakeServable(ready_exec, 8, "ready");
  BatchRunner runner(SteadyClock::Get(), {});
  SchedulerOptions options;
  options.policy = "fair";
  options.workers = 1;
  auto scheduler = MakeScheduler(options, SteadyClock::Get(), runner);
  auto waits = std::make_shared<Outcome>();
  auto r = MakeRequest(delayed, "t", 1, 1, waits);
  r->arrival = SteadyClock::Get().Now();
  ASSERT_TRUE(scheduler->Submit(std::move(r)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the worker waits out the delay
  auto now = std::make_shared<Outcome>();
  ASSERT_TRUE(scheduler->Submit(MakeRequest(ready, "u", 1, 2, now)).ok());
  EXPECT_TRUE(ready_exec->WaitStartedFor(1, std::chrono::seconds(5)));
  EXPECT_EQ(scheduler->QueueDepth(), 1);  // the delayed one still waits for company
  ready_exec->Open();
  exec->Open();
  WaitDone({now});
  ASSERT_TRUE(now->result->ok());
  EXPECT_EQ(OutputFloats(**now->result)[0], 4.0f);
  scheduler->Shutdown(std::chrono::milliseconds(0));
  WaitDone({waits});
}

// Each device has its own workers: a GPU model's request runs while every
// cpu worker is busy, and requests land on their model's device.
TEST(DeviceSchedulerTest, RoutesByTheModelsDeviceAndDevicesDoNotWaitOnEachOther) {
  auto cpu_exec = std::make_shared<GateExecutor>();
  auto gpu_exec = std::make_shared<DoublingExecutor>(nullptr, Clock::Duration(0));
  auto cpu_model = MakeServable(cpu_exec, 4, "on_cpu");
  auto gpu_servable = std::make_shared<Servable>(*MakeServable(gpu_exec, 4, "on_gpu"));
  gpu_servable->config.device = "cuda:0";
  std::shared_ptr<const Servable> gpu_model = gpu_servable;
  BatchRunner runner(SteadyClock::Get(), {});
  std::map<std::string, std::unique_ptr<Scheduler>> per_device;
  SchedulerOptions one_worker;
  per_device["cpu"] = MakeScheduler(one_worker, SteadyClock::Get(), runner);
  per_device["cuda:0"] = MakeScheduler(one_worker, SteadyClock::Get(), runner);
  auto scheduler = MakeDeviceScheduler(std::move(per_device));

  auto blocked = std::make_shared<Outcome>(), queued = std::make_shared<Outcome>();
  ASSERT_TRUE(scheduler->Submit(MakeRequest(cpu_model, "t", 1, 1, blocked)).ok());
  cpu_exec->WaitStarted(1);  // the only cpu worker is now held
  ASSERT_TRUE(scheduler->Submit(MakeRequest(cpu_model, "t", 1, 2, queued)).ok());
  auto on_gpu = std::make_shared<Outcome>();
  ASSERT_TRUE(scheduler->Submit(MakeRequest(gpu_model, "t", 1, 3, on_gpu)).ok());
  WaitDone({on_gpu});
  EXPECT_FALSE(blocked->done());
  EXPECT_EQ(scheduler->QueueDepth(), 1);  // the queued cpu request
  EXPECT_THAT(gpu_exec->batches(), ::testing::ElementsAre(1));

  auto stray = std::make_shared<Servable>(*MakeServable(gpu_exec, 4, "stray"));
  stray->config.device = "cuda:7";
  absl::Status s = scheduler->Submit(MakeRequest(stray, "t", 1, 4, std::make_shared<Outcome>()));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);

  cpu_exec->Open();
  WaitDone({blocked, queued});
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

TEST_P(SchedulerTest, ShutdownRejectsNewAndAnswersLeftovers) {
  auto exec = std::make_shared<GateExecutor>();
  auto servable = MakeServable(exec, 1);
  BatchRunner runner(SteadyClock::Get(), {});
  auto scheduler = MakeScheduler(Options(), SteadyClock::Get(), runner);
  auto running = std::make_shared<Outcome>(), queued = std::make_shared<Outcome>();
  ASSERT_TRUE(scheduler->Submit(MakeRequest(servable, "t", 1, 1, running)).ok());
  exec->WaitStarted(1);
  auto queued_request = MakeRequest(servable, "t", 1, 1, queued);
  std::shared_ptr<QueuePlaceAtAnswer> queued_place = TrackQueuePlace(queued_request.get());
  ASSERT_TRUE(scheduler->Submit(std::move(queued_request)).ok());
  std::thread stopper([&] { scheduler->Shutdown(std::chrono::milliseconds(0)); });
  // Shutdown waits for the running batch; release it.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto late = std::make_shared<Outcome>();
  EXPECT_EQ(scheduler->Submit(MakeRequest(servable, "t", 1, 1, late)).code(),
            absl::StatusCode::kUnavailable);
  exec->Open();
  stopper.join();
  EXPECT_TRUE(running->result->ok());
  EXPECT_EQ(queued->result->status().code(), absl::StatusCode::kUnavailable);
  // Answered without running: its queue place went back first.
  EXPECT_EQ(queued_place->waiting_free, true);
  EXPECT_FALSE(late->done());
}

// Records the name of the thread each batch ran on.
class ThreadNameExecutor : public DoublingExecutor {
 public:
  ThreadNameExecutor() : DoublingExecutor(nullptr, Clock::Duration(0)) {}
  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>& inputs) override {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    {
      std::lock_guard<std::mutex> lock(mu_);
      names_.push_back(name);
    }
    return DoublingExecutor::Run(inputs);
  }
  std::vector<std::string> names() {
    std::lock_guard<std::mutex> lock(mu_);
    return names_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> names_;
};

// Workers carry their device's name (the daemon's fs-cpu-0, fs-cuda:0-1),
// cut to what a Linux thread name holds, so top -H and perf tell them apart.
TEST_P(SchedulerTest, WorkersAreNamedAfterTheirDevice) {
  for (const std::string& given : {std::string("fs-cpu"), std::string("fs-cuda:12-and-more")}) {
    auto exec = std::make_shared<ThreadNameExecutor>();
    auto servable = MakeServable(exec);
    BatchRunner runner(SteadyClock::Get(), {});
    SchedulerOptions o = Options();
    o.thread_name = given;
    auto scheduler = MakeScheduler(o, SteadyClock::Get(), runner);
    auto done = std::make_shared<Outcome>();
    ASSERT_TRUE(scheduler->Submit(MakeRequest(servable, "t", 1, 1, done)).ok());
    WaitDone({done});
    scheduler->Shutdown(std::chrono::milliseconds(100));
    ASSERT_EQ(exec->names().size(), 1u);
    EXPECT_EQ(exec->names()[0], given == "fs-cpu" ? "fs-cpu-0" : "fs-cuda:12-and-");
  }
}

TEST_P(SchedulerTest, CancelledAndExpiredRequestsLeaveTheirQueue) {
  // A model that waits up to 10 s for a batch to fill: without the sweep the
  // requests would sit there that long.
  auto exec = std::make_shared<DoublingExecutor>(nullptr, Clock::Duration(0));
  auto base = MakeServable(exec, 8);
  auto servable = std::make_shared<Servable>(*base);
  servable->config.max_queue_delay_us = 10'000'000;
  BatchRunner runner(SteadyClock::Get(), {});
  auto scheduler = MakeScheduler(Options(), SteadyClock::Get(), runner);
  // Stands for admission's waiting slot: counts the requests holding one.
  auto counter = std::make_shared<std::atomic<int64_t>>(0);
  auto slot = [counter] {
    counter->fetch_add(1);
    return std::shared_ptr<void>(nullptr, [counter](void*) { counter->fetch_sub(1); });
  };
  auto cancelled = std::make_shared<Outcome>(), expired = std::make_shared<Outcome>();
  auto r1 = MakeRequest(servable, "t", 1, 1, cancelled);
  auto flag = r1->cancelled = std::make_shared<std::atomic<bool>>(false);
  r1->waiting = slot();
  auto r2 = MakeRequest(servable, "u", 1, 1, expired);
  r2->waiting = slot();
  r1->arrival = r2->arrival = SteadyClock::Get().Now();
  r2->deadline = SteadyClock::Get().Now() + std::chrono::milliseconds(30);
  ASSERT_TRUE(scheduler->Submit(std::move(r1)).ok());
  ASSERT_TRUE(scheduler->Submit(std::move(r2)).ok());
  EXPECT_EQ(counter->load(), 2);
  flag->store(true);
  auto start = std::chrono::steady_clock::now();
  WaitDone({cancelled, expired});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(cancelled->result->status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(expired->result->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(counter->load(), 0);
  EXPECT_TRUE(exec->batches().empty());
}

// Several workers and several tenants submitting from their own threads at
// once (the TSan step runs this): every request is answered once, with its
// own result, and under `fair` no batch mixes tenants (fifo's one global
// queue may).
TEST_P(SchedulerTest, ManyWorkersManyTenantsConcurrently) {
  class Recorder : public BatchObserver {
   public:
    void OnBatch(const BatchRecord& r) override {
      std::lock_guard<std::mutex> lock(mu);
      records.push_back(r);
    }
    std::mutex mu;
    std::vector<BatchRecord> records;
  } recorder;
  auto exec = std::make_shared<DoublingExecutor>(nullptr, Clock::Duration(0));
  auto servable = MakeServable(exec, /*max_batch=*/8);
  BatchRunner runner(SteadyClock::Get(), {&recorder});
  SchedulerOptions options = Options();
  options.workers = 4;
  auto scheduler = MakeScheduler(options, SteadyClock::Get(), runner);
  constexpr int kTenants = 4, kPerTenant = 200;
  std::vector<std::vector<std::shared_ptr<Outcome>>> outcomes(kTenants);
  std::vector<std::thread> clients;
  for (int t = 0; t < kTenants; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < kPerTenant; ++i) {
        outcomes[t].push_back(std::make_shared<Outcome>());
        auto r = MakeRequest(servable, "t" + std::to_string(t), 1, t * 1000 + i, outcomes[t].back());
        ASSERT_TRUE(scheduler->Submit(std::move(r)).ok());
      }
    });
  }
  for (auto& c : clients) c.join();
  for (int t = 0; t < kTenants; ++t) {
    WaitDone(outcomes[t]);
    for (int i = 0; i < kPerTenant; ++i) {
      ASSERT_TRUE(outcomes[t][i]->result->ok()) << t << "/" << i;
      EXPECT_EQ(OutputFloats(**outcomes[t][i]->result)[0], 2.0f * (t * 1000 + i));
    }
  }
  scheduler->Shutdown(std::chrono::milliseconds(100));
  std::lock_guard<std::mutex> lock(recorder.mu);
  size_t items = 0;
  for (const BatchRecord& r : recorder.records) {
    items += r.items.size();
    if (GetParam() != "fair") continue;
    for (const BatchItem& item : r.items) {
      EXPECT_EQ(item.tenant_id, r.items.front().tenant_id) << "a batch mixed tenants";
    }
  }
  EXPECT_EQ(items, static_cast<size_t>(kTenants * kPerTenant));
}

INSTANTIATE_TEST_SUITE_P(Policies, SchedulerTest, ::testing::Values("fifo", "fair"));

// Running a cheap, ready batch on the thread that submits it
// (SchedulerOptions::run_on_caller_below).
class RunOnCallerTest : public ::testing::Test {
 protected:
  // 10 us per sample, as the executor's device clock reports it; 1 worker;
  // below 100 us runs on the caller. One clock (the steady one) for the
  // scheduler and the runner: deadlines set by one are checked by the other.
  RunOnCallerTest()
      : exec_(std::make_shared<GateOrPassExecutor>()), runner_(SteadyClock::Get(), {}) {
    options_.workers = 1;
    options_.run_on_caller_below = std::chrono::microseconds(100);
  }

  // Doubles, 10 us a sample by its own clock; while closed, a run blocks
  // until Open().
  class GateOrPassExecutor : public DoublingExecutor {
   public:
    GateOrPassExecutor() : DoublingExecutor(nullptr, Clock::Duration(0), 10e-6) {}
    absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>& inputs) override {
      std::unique_lock<std::mutex> lock(mu_);
      ++running_;
      max_running_ = std::max(max_running_, running_);
      ++started_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return open_; });
      lock.unlock();
      auto out = DoublingExecutor::Run(inputs);
      lock.lock();
      --running_;
      return out;
    }
    void Close() {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = false;
    }
    void Open() {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
      cv_.notify_all();
    }
    void WaitStarted(int n) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return started_ >= n; });
    }
    int started() {
      std::lock_guard<std::mutex> lock(mu_);
      return started_;
    }
    int max_running() {
      std::lock_guard<std::mutex> lock(mu_);
      return max_running_;
    }

   private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = true;
    int running_ = 0, max_running_ = 0, started_ = 0;
  };

  // A request that records the thread it was answered on.
  struct Call {
    std::shared_ptr<Outcome> outcome = std::make_shared<Outcome>();
    std::shared_ptr<std::thread::id> thread = std::make_shared<std::thread::id>();
  };
  std::unique_ptr<InferenceRequest> Request(const Call& call, int64_t rows = 1,
                                            bool may_run_on_caller = true,
                                            std::shared_ptr<const Servable> servable = nullptr) {
    auto r = MakeRequest(servable ? servable : servable_, "t", rows, 1, call.outcome);
    r->may_run_on_caller = may_run_on_caller;
    r->on_done = [done = std::move(r->on_done), thread = call.thread](
                     absl::StatusOr<InferenceResult> result) {
      *thread = std::this_thread::get_id();
      done(std::move(result));
    };
    return r;
  }
  // With options_: a call whose cost is known still goes to a worker.
  void ExpectAWorkerRunsAMeasuredCall() {
    auto scheduler = MakeScheduler(options_, SteadyClock::Get(), runner_);
    Learn(*scheduler);
    Call call;
    ASSERT_TRUE(scheduler->Submit(Request(call)).ok());
    WaitDone({call.outcome});
    EXPECT_NE(*call.thread, std::this_thread::get_id());
    EXPECT_EQ(scheduler->CallerRuns(), 0);
    scheduler->Shutdown(std::chrono::milliseconds(100));
  }
  // Submits a first request and waits for it, so the policy knows the cost,
  // then leaves the device idle for 1 ms: over 4 times the 10 us estimate,
  // so the idle-gap rule lets the next call run on its caller.
  void Learn(Scheduler& s) {
    Call first;
    ASSERT_TRUE(s.Submit(Request(first)).ok());
    WaitDone({first.outcome});
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  std::shared_ptr<GateOrPassExecutor> exec_;
  std::shared_ptr<const Servable> servable_ = MakeServable(exec_, /*max_batch=*/64);
  BatchRunner runner_;
  SchedulerOptions options_;
};

TEST_F(RunOnCallerTest, ACheapReadyRequestRunsOnTheCallingThreadOnceItsCostIsKnown) {
  auto scheduler = MakeScheduler(options_, SteadyClock::Get(), runner_);
  Call first;  // nothing measured yet: a worker runs it
  ASSERT_TRUE(scheduler->Submit(Request(first)).ok());
  WaitDone({first.outcome});
  EXPECT_NE(*first.thread, std::this_thread::get_id());
  EXPECT_EQ(scheduler->CallerRuns(), 0);

  std::this_thread::sleep_for(std::chrono::milliseconds(1));  // idle for > 4 x 10 us
  Call second;  // 10 us estimated: answered inside Submit, on this thread
  ASSERT_TRUE(scheduler->Submit(Request(second)).ok());
  ASSERT_TRUE(second.outcome->done());
  EXPECT_EQ(*second.thread, std::this_thread::get_id());
  ASSERT_TRUE(second.outcome->result->ok());
  EXPECT_EQ(OutputFloats(**second.outcome->result)[0], 2.0f);
  EXPECT_EQ(scheduler->CallerRuns(), 1);
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

TEST_F(RunOnCallerTest, OtherRequestsGoToAWorker) {
  auto scheduler = MakeScheduler(options_, SteadyClock::Get(), runner_);
  Learn(*scheduler);
  std::vector<Call> calls(3);
  // Not marked (the transport's thread is shared, e.g. the executor).
  ASSERT_TRUE(scheduler->Submit(Request(calls[0], 1, /*may_run_on_caller=*/false)).ok());
  // Estimated at 20 x 10 us = 200 us: over the bound.
  ASSERT_TRUE(scheduler->Submit(Request(calls[1], 20)).ok());
  // Its model batches with a delay: it waits for company instead.
  auto delayed = std::make_shared<Servable>(*servable_);
  delayed->config.max_queue_delay_us = 1000;
  ASSERT_TRUE(scheduler->Submit(Request(calls[2], 1, true, delayed)).ok());
  WaitDone({calls[0].outcome, calls[1].outcome, calls[2].outcome});
  for (const Call& c : calls) EXPECT_NE(*c.thread, std::this_thread::get_id());
  EXPECT_EQ(scheduler->CallerRuns(), 0);
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

TEST_F(RunOnCallerTest, NeverWhileABatchRunsOrRequestsWait) {
  auto scheduler = MakeScheduler(options_, SteadyClock::Get(), runner_);
  Learn(*scheduler);
  exec_->Close();
  Call running, queued;
  ASSERT_TRUE(scheduler->Submit(Request(running, 1, /*may_run_on_caller=*/false)).ok());
  exec_->WaitStarted(2);  // the worker runs it, and blocks
  // A batch runs: this one queues (it would have run beside it, or in the
  // worker's place, and batching under load is what keeps throughput).
  ASSERT_TRUE(scheduler->Submit(Request(queued)).ok());
  EXPECT_FALSE(queued.outcome->done());
  EXPECT_EQ(scheduler->QueueDepth(), 1);
  exec_->Open();
  WaitDone({running.outcome, queued.outcome});
  EXPECT_NE(*queued.thread, std::this_thread::get_id());
  EXPECT_EQ(scheduler->CallerRuns(), 0);
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

// A call that comes right behind the last batch (back-to-back traffic on a
// connection) queues for a worker, so such calls batch; once the device has
// been idle for 4 times the call's estimated cost (10 us here), the next
// call runs on its caller again. A fake clock for both the scheduler and the
// runner sets the idle gaps exactly.
TEST_F(RunOnCallerTest, OnlyAfterTheDeviceWasIdleForFourTimesTheCallsCost) {
  FakeClock clock;
  BatchRunner runner(clock, {});
  auto scheduler = MakeScheduler(options_, clock, runner);
  Call first;  // a worker runs it; the device is idle from now on
  ASSERT_TRUE(scheduler->Submit(Request(first)).ok());
  WaitDone({first.outcome});

  Call right_behind;  // idle for 0 us
  ASSERT_TRUE(scheduler->Submit(Request(right_behind)).ok());
  WaitDone({right_behind.outcome});
  EXPECT_NE(*right_behind.thread, std::this_thread::get_id());

  clock.Advance(std::chrono::microseconds(39));
  Call just_short;  // idle for 39 us, under 4 x 10 us
  ASSERT_TRUE(scheduler->Submit(Request(just_short)).ok());
  WaitDone({just_short.outcome});
  EXPECT_NE(*just_short.thread, std::this_thread::get_id());
  EXPECT_EQ(scheduler->CallerRuns(), 0);

  clock.Advance(std::chrono::microseconds(41));
  Call after_a_gap;  // idle for 41 us: answered inside Submit, on this thread
  ASSERT_TRUE(scheduler->Submit(Request(after_a_gap)).ok());
  ASSERT_TRUE(after_a_gap.outcome->done());
  EXPECT_EQ(*after_a_gap.thread, std::this_thread::get_id());
  EXPECT_EQ(scheduler->CallerRuns(), 1);

  Call behind_a_caller_run;  // the caller's own batch counts as the last one
  ASSERT_TRUE(scheduler->Submit(Request(behind_a_caller_run)).ok());
  WaitDone({behind_a_caller_run.outcome});
  EXPECT_NE(*behind_a_caller_run.thread, std::this_thread::get_id());
  EXPECT_EQ(scheduler->CallerRuns(), 1);
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

TEST_F(RunOnCallerTest, ACallerRunTakesAWorkersSlot) {
  auto scheduler = MakeScheduler(options_, SteadyClock::Get(), runner_);
  Learn(*scheduler);
  exec_->Close();
  Call caller, next;
  std::thread::id submitter_id;
  std::thread submitter([&] {
    submitter_id = std::this_thread::get_id();
    ASSERT_TRUE(scheduler->Submit(Request(caller)).ok());
  });
  exec_->WaitStarted(2);  // the caller runs it (and blocks)
  // The one worker is idle, but its slot is taken: this one waits for it.
  ASSERT_TRUE(scheduler->Submit(Request(next)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(exec_->started(), 2);
  EXPECT_FALSE(next.outcome->done());
  exec_->Open();
  submitter.join();
  WaitDone({caller.outcome, next.outcome});
  EXPECT_EQ(*caller.thread, submitter_id);
  EXPECT_NE(*next.thread, std::this_thread::get_id());
  EXPECT_EQ(exec_->max_running(), 1);
  EXPECT_EQ(scheduler->CallerRuns(), 1);
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

TEST_F(RunOnCallerTest, OffWhenTheBoundIsZero) {
  options_.run_on_caller_below = std::chrono::microseconds(0);
  ExpectAWorkerRunsAMeasuredCall();
}

TEST_F(RunOnCallerTest, FifoNeverRunsOnTheCaller) {
  options_.policy = "fifo";
  ExpectAWorkerRunsAMeasuredCall();
}

// Callers and workers at once (the TSan step runs this): every request is
// answered once with its own result, and never more batches run at once
// than there are workers.
TEST_F(RunOnCallerTest, ManyCallersAndWorkersConcurrently) {
  options_.workers = 2;
  auto scheduler = MakeScheduler(options_, SteadyClock::Get(), runner_);
  Learn(*scheduler);
  constexpr int kClients = 4, kPerClient = 300;
  std::vector<std::vector<std::shared_ptr<Outcome>>> outcomes(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kPerClient; ++i) {
        outcomes[c].push_back(std::make_shared<Outcome>());
        auto r = MakeRequest(servable_, "t" + std::to_string(c), 1, c * 1000 + i,
                             outcomes[c].back());
        r->may_run_on_caller = true;
        ASSERT_TRUE(scheduler->Submit(std::move(r)).ok());
      }
    });
  }
  for (auto& c : clients) c.join();
  for (int c = 0; c < kClients; ++c) {
    WaitDone(outcomes[c]);
    for (int i = 0; i < kPerClient; ++i) {
      ASSERT_TRUE(outcomes[c][i]->result->ok());
      EXPECT_EQ(OutputFloats(**outcomes[c][i]->result)[0], 2.0f * (c * 1000 + i));
    }
  }
  EXPECT_LE(exec_->max_running(), 2);
  scheduler->Shutdown(std::chrono::milliseconds(100));
}

}  // namespace
}  // namespace fairserve
