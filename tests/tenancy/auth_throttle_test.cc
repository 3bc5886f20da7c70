#include "fairserve/tenancy/auth_throttle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fairserve {
namespace {

using ::testing::HasSubstr;
using std::chrono::milliseconds;

class AuthThrottleTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  AuthThrottle throttle_{clock_, {/*failures_per_second=*/10, /*burst=*/3, /*max_peers=*/100}};
};

TEST_F(AuthThrottleTest, BurstOfFailuresThenBlockedUntilRefill) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(throttle_.Blocked("ipv4:10.0.0.1"), milliseconds(0)) << i;
    throttle_.RecordFailure("ipv4:10.0.0.1");
  }
  EXPECT_EQ(throttle_.Blocked("ipv4:10.0.0.1"), milliseconds(100));
  absl::Status s = throttle_.Check("ipv4:10.0.0.1");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("retry after 100 ms"));
  // Other peers are not affected.
  EXPECT_EQ(throttle_.Blocked("ipv4:10.0.0.2"), milliseconds(0));
  clock_.Advance(milliseconds(100));
  EXPECT_TRUE(throttle_.Check("ipv4:10.0.0.1").ok());
  EXPECT_EQ(throttle_.throttled(), 2u);
}

TEST_F(AuthThrottleTest, PeersAreForgottenOnceTheirBucketIsFull) {
  throttle_.RecordFailure("ipv4:10.0.0.1");
  EXPECT_EQ(throttle_.tracked(), 1u);
  clock_.Advance(milliseconds(100));
  EXPECT_EQ(throttle_.Blocked("ipv4:10.0.0.1"), milliseconds(0));
  EXPECT_EQ(throttle_.tracked(), 0u);
}

TEST_F(AuthThrottleTest, TrackedPeersAreBounded) {
  for (int i = 0; i < 1000; ++i) throttle_.RecordFailure("ipv6:[fd00::" + std::to_string(i) + "]");
  EXPECT_LE(throttle_.tracked(), 100u);
  clock_.Advance(std::chrono::seconds(1));
  // Once their buckets are full the old entries make room again.
  throttle_.RecordFailure("ipv4:10.9.9.9");
  throttle_.RecordFailure("ipv4:10.9.9.9");
  throttle_.RecordFailure("ipv4:10.9.9.9");
  EXPECT_GT(throttle_.Blocked("ipv4:10.9.9.9"), milliseconds(0));
}

TEST_F(AuthThrottleTest, ZeroRateDisables) {
  throttle_.Reconfigure({0, 3, 100});
  for (int i = 0; i < 100; ++i) throttle_.RecordFailure("ipv4:10.0.0.1");
  EXPECT_EQ(throttle_.Blocked("ipv4:10.0.0.1"), milliseconds(0));
}

TEST(PeerHostTest, DropsThePort) {
  EXPECT_EQ(PeerHost("ipv4:127.0.0.1:54321"), "ipv4:127.0.0.1");
  EXPECT_EQ(PeerHost("ipv6:[::1]:5000"), "ipv6:[::1]");
  EXPECT_EQ(PeerHost("unix:/tmp/sock"), "unix:/tmp/sock");
  EXPECT_EQ(PeerHost("ipv4:10.0.0.1"), "ipv4:10.0.0.1");
  EXPECT_EQ(PeerHost("ipv6:[::1]"), "ipv6:[::1]");
}

}  // namespace
}  // namespace fairserve
