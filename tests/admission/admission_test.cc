#include "fairserve/admission/admission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fairserve {
namespace {

using ::testing::HasSubstr;

class AdmissionTest : public ::testing::Test {
 protected:
  void Configure(double rps, double burst, int64_t max_inflight, int64_t max_queue) {
    Config c;
    TenantConfig a;
    a.id = "acme";
    a.rate_limit = {rps, burst};
    a.max_inflight = max_inflight;
    a.max_queue = max_queue;
    TenantConfig g;
    g.id = "globex";
    c.tenants = {a, g};
    admission_.Update(c);
  }
  FakeClock clock_;
  Admission admission_{clock_};
};

TEST_F(AdmissionTest, RateLimitRejectsWithRetryHint) {
  Configure(10, 2, 0, 100);
  EXPECT_TRUE(admission_.Admit("acme").status.ok());
  EXPECT_TRUE(admission_.Admit("acme").status.ok());
  Admission::Decision d = admission_.Admit("acme");
  EXPECT_EQ(d.reason, RejectReason::kRateLimit);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(d.status.message()), HasSubstr("rate limit"));
  EXPECT_EQ(d.retry_after, std::chrono::milliseconds(100));
  // Another tenant is untouched.
  EXPECT_TRUE(admission_.Admit("globex").status.ok());
}

TEST_F(AdmissionTest, InflightCapIsReleasedBySlot) {
  Configure(0, 0, 2, 100);
  auto a = admission_.Admit("acme");
  auto b = admission_.Admit("acme");
  ASSERT_TRUE(a.status.ok());
  ASSERT_TRUE(b.status.ok());
  auto c = admission_.Admit("acme");
  EXPECT_EQ(c.reason, RejectReason::kMaxInflight);
  EXPECT_THAT(std::string(c.status.message()), HasSubstr("max_inflight 2"));
  { InflightSlot released = std::move(a.slot); }
  EXPECT_TRUE(admission_.Admit("acme").status.ok());
  EXPECT_EQ(admission_.Find("acme")->inflight().load(), 1);  // only b is left: the last one's slot died
}

TEST_F(AdmissionTest, RejectedRequestsDoNotHoldSlotsOrTokens) {
  Configure(1, 1, 1, 100);
  auto first = admission_.Admit("acme");
  ASSERT_TRUE(first.status.ok());
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(admission_.Admit("acme").status.ok());
  EXPECT_EQ(admission_.Find("acme")->inflight().load(), 1);
}

TEST_F(AdmissionTest, QueueBound) {
  Configure(0, 0, 0, 3);
  admission_.Find("acme")->queued()->store(3);
  auto d = admission_.Admit("acme");
  EXPECT_EQ(d.reason, RejectReason::kMaxQueue);
  EXPECT_THAT(std::string(d.status.message()), HasSubstr("max_queue 3"));
}

TEST_F(AdmissionTest, ReloadKeepsStateOfRemainingTenants) {
  Configure(10, 1, 0, 100);
  ASSERT_TRUE(admission_.Admit("acme").status.ok());
  auto before = admission_.Find("acme");
  Configure(10, 1, 0, 100);
  EXPECT_EQ(admission_.Find("acme"), before);
  EXPECT_FALSE(admission_.Admit("acme").status.ok());  // the spent token stays spent
  Configure(1000, 1, 0, 100);
  clock_.Advance(std::chrono::milliseconds(2));
  EXPECT_TRUE(admission_.Admit("acme").status.ok());  // a raised limit applies at once
  EXPECT_EQ(admission_.Find("initech"), nullptr);
}

}  // namespace
}  // namespace fairserve
