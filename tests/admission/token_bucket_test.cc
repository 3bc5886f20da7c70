#include "fairserve/admission/token_bucket.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace fairserve {
namespace {

using std::chrono::milliseconds;

TEST(TokenBucketTest, BurstThenRate) {
  FakeClock clock;
  TokenBucket bucket(/*rate=*/10, /*burst=*/3);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(bucket.TryAcquire(clock.Now()).allowed) << i;
  TokenBucket::Decision d = bucket.TryAcquire(clock.Now());
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after, milliseconds(100));
  clock.Advance(milliseconds(99));
  EXPECT_FALSE(bucket.TryAcquire(clock.Now()).allowed);
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(bucket.TryAcquire(clock.Now()).allowed);
  EXPECT_FALSE(bucket.TryAcquire(clock.Now()).allowed);
}

TEST(TokenBucketTest, IdleTimeRefillsOnlyUpToBurst) {
  FakeClock clock;
  TokenBucket bucket(100, 5);
  clock.Advance(std::chrono::hours(1));
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += bucket.TryAcquire(clock.Now()).allowed;
  EXPECT_EQ(allowed, 5);
}

TEST(TokenBucketTest, SustainedRateOverSimulatedSecond) {
  FakeClock clock;
  TokenBucket bucket(50, 1);
  int allowed = 0;
  for (int ms = 0; ms < 1000; ++ms) {
    allowed += bucket.TryAcquire(clock.Now()).allowed;
    clock.Advance(milliseconds(1));
  }
  EXPECT_EQ(allowed, 50);
}

TEST(TokenBucketTest, ReconfigureChangesRate) {
  FakeClock clock;
  TokenBucket bucket(1, 1);
  EXPECT_TRUE(bucket.TryAcquire(clock.Now()).allowed);
  EXPECT_FALSE(bucket.TryAcquire(clock.Now()).allowed);
  // The spent token's debt (1 s at the old rate) shrinks with the new rate.
  bucket.Reconfigure(1000, 1, clock.Now());
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(bucket.TryAcquire(clock.Now()).allowed);
  EXPECT_FALSE(bucket.TryAcquire(clock.Now()).allowed);
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(bucket.TryAcquire(clock.Now()).allowed);
  // Lowering the rate does not hand out a fresh burst either.
  bucket.Reconfigure(1, 1, clock.Now());
  EXPECT_FALSE(bucket.TryAcquire(clock.Now()).allowed);
}

TEST(TokenBucketTest, ConcurrentCallersNeverOverspend) {
  FakeClock clock;  // time stands still: exactly `burst` tokens exist
  TokenBucket bucket(1, 1000);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) allowed += bucket.TryAcquire(clock.Now()).allowed;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 1000);
}

}  // namespace
}  // namespace fairserve
