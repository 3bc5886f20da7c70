#include "fairserve/common/task_executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <set>
#include <thread>

namespace fairserve {
namespace {

TEST(TaskExecutorTest, RunsEveryTaskOnItsOwnThreads) {
  std::atomic<int> ran{0};
  std::mutex mu;
  std::set<std::thread::id> threads;
  {
    TaskExecutor executor(2, "test");
    for (int i = 0; i < 1000; ++i) {
      executor.Post([&] {
        std::lock_guard<std::mutex> lock(mu);
        threads.insert(std::this_thread::get_id());
        ++ran;
      });
    }
    executor.Shutdown();  // runs what is queued first
    EXPECT_EQ(ran.load(), 1000);
  }
  EXPECT_EQ(threads.count(std::this_thread::get_id()), 0u);
  EXPECT_LE(threads.size(), 2u);
}

TEST(TaskExecutorTest, PostAfterShutdownRunsOnTheCaller) {
  TaskExecutor executor(1, "test");
  executor.Shutdown();
  std::thread::id where;
  executor.Post([&] { where = std::this_thread::get_id(); });
  EXPECT_EQ(where, std::this_thread::get_id());
}

TEST(TaskExecutorTest, PostingFromManyThreads) {
  std::atomic<int> ran{0};
  TaskExecutor executor(2, "test");
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < 500; ++i) executor.Post([&] { ++ran; });
    });
  }
  for (auto& p : posters) p.join();
  executor.Shutdown();
  EXPECT_EQ(ran.load(), 2000);
}

TEST(AskThenContinueTest, AnAnswerGivenAtOnceContinuesOnTheCaller) {
  TaskExecutor executor(1, "test");
  std::thread::id where;
  AskThenContinue<int>(
      executor, [](auto done) { done(7); },
      [&](int v) {
        EXPECT_EQ(v, 7);
        where = std::this_thread::get_id();
      });
  EXPECT_EQ(where, std::this_thread::get_id());
}

// The answer comes on the component's thread after `ask` returned: the
// continuation must run on the executor, not on that thread.
TEST(AskThenContinueTest, ALateAnswerContinuesOnTheExecutorNotTheAnsweringThread) {
  TaskExecutor executor(1, "test");
  std::function<void(int)> pending;
  std::thread::id answering, where;
  std::atomic<bool> done{false};
  AskThenContinue<int>(
      executor, [&](auto cb) { pending = cb; },
      [&](int v) {
        EXPECT_EQ(v, 9);
        where = std::this_thread::get_id();
        done = true;
      });
  EXPECT_FALSE(done.load());
  std::thread component([&] {
    answering = std::this_thread::get_id();
    pending(9);
  });
  component.join();
  executor.Shutdown();
  ASSERT_TRUE(done.load());
  EXPECT_NE(where, answering);
  EXPECT_NE(where, std::this_thread::get_id());
}

// Answers racing the return of `ask` (TSan runs this): each continuation
// runs exactly once.
TEST(AskThenContinueTest, RacingAnswersRunOnceEach) {
  TaskExecutor executor(2, "test");
  std::atomic<int> ran{0};
  for (int i = 0; i < 2000; ++i) {
    AskThenContinue<int>(
        executor, [&](auto cb) { std::thread([cb] { cb(1); }).detach(); },
        [&](int v) { ran += v; });
  }
  for (int i = 0; i < 5000 && ran.load() < 2000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  executor.Shutdown();
  EXPECT_EQ(ran.load(), 2000);
}

}  // namespace
}  // namespace fairserve
