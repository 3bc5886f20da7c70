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

void WaitDone(const std::vector<std::shared_ptr<Outcome>>& outcomes) {
  for (const auto& o : outcomes) {
    while (!o->done()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST(FifoSchedulerTest, BatchesQueuedRequestsUpToMaxBatch) {
  auto exec = std::make_shared<GateExecutor>();
  auto servable = MakeServable(exec, /*max_batch=*/4);
  BatchRunner runner(SteadyClock::Get(), {});
  SchedulerOptions options;
  auto scheduler = MakeFifoScheduler(options, SteadyClock::Get(), runner);

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

TEST(FifoSchedulerTest, TenantBatchCapIsRespected) {
  auto exec = std::make_shared<GateExecutor>();
  auto servable = MakeServable(exec, 8);
  BatchRunner runner(SteadyClock::Get(), {});
  auto scheduler = MakeFifoScheduler({}, SteadyClock::Get(), runner);
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

TEST(FifoSchedulerTest, ShutdownRejectsNewAndAnswersLeftovers) {
  auto exec = std::make_shared<GateExecutor>();
  auto servable = MakeServable(exec, 1);
  BatchRunner runner(SteadyClock::Get(), {});
  auto scheduler = MakeFifoScheduler({}, SteadyClock::Get(), runner);
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

}  // namespace
}  // namespace fairserve
