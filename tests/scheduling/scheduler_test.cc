#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
  ASSERT_TRUE(scheduler->Submit(MakeRequest(servable, "t", 1, 1, queued)).ok());
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
  EXPECT_FALSE(late->done());
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
  auto flag = r1->cancelled;
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

}  // namespace
}  // namespace fairserve
