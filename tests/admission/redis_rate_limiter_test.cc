#include "fairserve/admission/redis_rate_limiter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "testing/redis_server.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;
using Kind = SharedRateLimiter::Result::Kind;
using Millis = std::chrono::milliseconds;

class RedisRateLimiterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.started()) << "redis-server did not start"; }

  std::unique_ptr<RedisRateLimiter> MakeLimiter(Millis timeout = Millis(100)) {
    RedisRateLimiter::Options o;
    o.address = redis_.address();
    o.timeout = timeout;
    auto limiter = RedisRateLimiter::Create(o);
    EXPECT_TRUE(limiter.ok()) << limiter.status();
    EXPECT_TRUE((*limiter)->WaitUntilUp(std::chrono::seconds(5)));
    return std::move(*limiter);
  }

  // One check, waited for.
  static SharedRateLimiter::Result Check(RedisRateLimiter& l, const std::string& bucket,
                                         double rate, double burst) {
    std::promise<SharedRateLimiter::Result> p;
    l.Check(bucket, rate, burst, [&p](const SharedRateLimiter::Result& r) { p.set_value(r); });
    return p.get_future().get();
  }

  testing_util::RedisServer redis_;
};

TEST_F(RedisRateLimiterTest, BurstThenDeniedWithTimeToRefill) {
  auto l = MakeLimiter();
  // 1 token per 10 s, burst 5: the first five pass, the sixth waits ~10 s.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Check(*l, "t:a", 0.1, 5).kind, Kind::kAllowed) << i;
  SharedRateLimiter::Result r = Check(*l, "t:a", 0.1, 5);
  EXPECT_EQ(r.kind, Kind::kDenied);
  EXPECT_GT(r.retry_after, std::chrono::seconds(9));
  EXPECT_LE(r.retry_after, std::chrono::seconds(10));
  // Another bucket is independent.
  EXPECT_EQ(Check(*l, "t:b", 0.1, 5).kind, Kind::kAllowed);
  RedisRateLimiter::Stats s = l->stats();
  EXPECT_EQ(s.allowed, 6u);
  EXPECT_EQ(s.denied, 1u);
  EXPECT_TRUE(s.up);
}

TEST_F(RedisRateLimiterTest, TwoReplicasShareOneBucket) {
  auto a = MakeLimiter();
  auto b = MakeLimiter();
  int allowed = 0;
  for (int i = 0; i < 10; ++i) {
    allowed += Check(i % 2 ? *a : *b, "t:shared", 0.1, 6).kind == Kind::kAllowed;
  }
  EXPECT_EQ(allowed, 6);  // the burst once, across both
}

TEST_F(RedisRateLimiterTest, ManyConcurrentChecksAreAllAnsweredInOrderOfTheBucket) {
  auto l = MakeLimiter();
  constexpr int kChecks = 2000;
  std::atomic<int> allowed{0}, answered{0};
  std::promise<void> all;
  for (int i = 0; i < kChecks; ++i) {
    l->Check("t:many", 0.1, 500, [&](const SharedRateLimiter::Result& r) {
      allowed += r.kind == Kind::kAllowed;
      if (++answered == kChecks) all.set_value();
    });
  }
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(allowed.load(), 500);
}

TEST_F(RedisRateLimiterTest, KilledRedisFailsChecksThenRecoversAfterRestart) {
  auto l = MakeLimiter(Millis(100));
  EXPECT_EQ(Check(*l, "t:k", 1000, 10).kind, Kind::kAllowed);
  redis_.Kill();
  SharedRateLimiter::Result r = Check(*l, "t:k", 1000, 10);
  EXPECT_EQ(r.kind, Kind::kFailed);
  EXPECT_THAT(r.error, HasSubstr("no answer from Redis"));
  // Known down now: answered on the calling thread, before Check returns,
  // without queueing for Redis.
  bool answered = false;
  l->Check("t:k", 1000, 10, [&](const SharedRateLimiter::Result& res) {
    answered = true;
    EXPECT_EQ(res.kind, Kind::kFailed);
  });
  EXPECT_TRUE(answered);
  EXPECT_FALSE(l->stats().up);
  EXPECT_EQ(l->stats().disconnects, 1u);

  // A fresh Redis knows no script: the limiter loads it when it reconnects.
  ASSERT_TRUE(redis_.Restart());
  ASSERT_TRUE(l->WaitUntilUp(std::chrono::seconds(10)));
  EXPECT_EQ(Check(*l, "t:k", 1000, 10).kind, Kind::kAllowed);
  EXPECT_GE(l->stats().connect_failures, 1u);
}

TEST_F(RedisRateLimiterTest, UnresponsiveRedisFailsWithinTheTimeout) {
  auto l = MakeLimiter(Millis(200));
  EXPECT_EQ(Check(*l, "t:p", 1000, 10).kind, Kind::kAllowed);
  redis_.Pause();
  auto start = std::chrono::steady_clock::now();
  SharedRateLimiter::Result r = Check(*l, "t:p", 1000, 10);
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.kind, Kind::kFailed);
  EXPECT_THAT(r.error, HasSubstr("timed out"));
  // A wide margin (10x timeout_ms): the point is "after the timeout", not "forever".
  EXPECT_LT(waited, Millis(2000));
  redis_.Resume();
  ASSERT_TRUE(l->WaitUntilUp(std::chrono::seconds(10)));
  EXPECT_EQ(Check(*l, "t:p", 1000, 10).kind, Kind::kAllowed);
}

TEST_F(RedisRateLimiterTest, ScriptFlushedUnderneathIsReloaded) {
  auto l = MakeLimiter();
  EXPECT_EQ(Check(*l, "t:f", 1000, 10).kind, Kind::kAllowed);
  ASSERT_EQ(redis_.Command("SCRIPT FLUSH"), "OK");
  EXPECT_EQ(Check(*l, "t:f", 1000, 10).kind, Kind::kAllowed);
  EXPECT_TRUE(l->stats().up);
}

TEST_F(RedisRateLimiterTest, NeverReachableRedisFailsEveryCheck) {
  RedisRateLimiter::Options o;
  o.address = "127.0.0.1:1";  // nothing listens on port 1
  o.timeout = Millis(50);
  auto l = RedisRateLimiter::Create(o);
  ASSERT_TRUE(l.ok());
  EXPECT_FALSE((*l)->WaitUntilUp(Millis(200)));
  SharedRateLimiter::Result r = Check(**l, "t:x", 10, 1);
  EXPECT_EQ(r.kind, Kind::kFailed);
  EXPECT_THAT(r.error, HasSubstr("cannot connect"));
}

TEST(RedisRateLimiterCreateTest, RejectsMalformedAddresses) {
  for (const char* bad : {"localhost", ":6379", "host:0", "host:99999", "host:port"}) {
    RedisRateLimiter::Options o;
    o.address = bad;
    auto l = RedisRateLimiter::Create(o);
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace fairserve
