#include "fairserve/admission/admission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>

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
    table_ = admission_.BuildTable(c, table_.get());
  }
  FakeClock clock_;
  Admission admission_{clock_};
  std::shared_ptr<const AdmissionTable> table_;
};

TEST_F(AdmissionTest, RateLimitRejectsWithRetryHint) {
  Configure(10, 2, 0, 100);
  EXPECT_TRUE(admission_.Admit(table_->Find("acme")).status.ok());
  EXPECT_TRUE(admission_.Admit(table_->Find("acme")).status.ok());
  Admission::Decision d = admission_.Admit(table_->Find("acme"));
  EXPECT_EQ(d.reason, RejectReason::kRateLimit);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(d.status.message()), HasSubstr("rate limit"));
  EXPECT_EQ(d.retry_after, std::chrono::milliseconds(100));
  // Another tenant is untouched.
  EXPECT_TRUE(admission_.Admit(table_->Find("globex")).status.ok());
}

TEST_F(AdmissionTest, InflightCapIsReleasedBySlot) {
  Configure(0, 0, 2, 100);
  auto a = admission_.Admit(table_->Find("acme"));
  auto b = admission_.Admit(table_->Find("acme"));
  ASSERT_TRUE(a.status.ok());
  ASSERT_TRUE(b.status.ok());
  auto c = admission_.Admit(table_->Find("acme"));
  EXPECT_EQ(c.reason, RejectReason::kMaxInflight);
  EXPECT_THAT(std::string(c.status.message()), HasSubstr("max_inflight 2"));
  { InflightSlot released = std::move(a.slot); }
  EXPECT_TRUE(admission_.Admit(table_->Find("acme")).status.ok());
  // Only b is left: the last one's slot died.
  EXPECT_EQ(table_->Find("acme")->inflight().load(), 1);
}

TEST_F(AdmissionTest, RejectedRequestsDoNotHoldSlotsOrTokens) {
  Configure(1, 1, 1, 100);
  auto first = admission_.Admit(table_->Find("acme"));
  ASSERT_TRUE(first.status.ok());
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(admission_.Admit(table_->Find("acme")).status.ok());
  EXPECT_EQ(table_->Find("acme")->inflight().load(), 1);
}

TEST_F(AdmissionTest, QueueBound) {
  Configure(0, 0, 0, 3);
  table_->Find("acme")->waiting().store(3);
  auto d = admission_.Admit(table_->Find("acme"));
  EXPECT_EQ(d.reason, RejectReason::kMaxQueue);
  EXPECT_THAT(std::string(d.status.message()), HasSubstr("max_queue 3"));
}

// max_queue counts every admitted request that is not yet running, not only
// those already in a scheduler queue: a tenant used to be able to park
// thousands of payloads waiting for a model load or a Redis answer.
TEST_F(AdmissionTest, QueueBoundCountsEveryAdmittedRequestUntilItRuns) {
  Configure(0, 0, 0, 2);
  auto a = admission_.Admit(table_->Find("acme"));
  auto b = admission_.Admit(table_->Find("acme"));
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(table_->Find("acme")->waiting().load(), 2);
  EXPECT_EQ(admission_.Admit(table_->Find("acme")).reason, RejectReason::kMaxQueue);
  a.waiting.Release();  // a starts to run: its place is free, its in-flight slot is not
  EXPECT_EQ(table_->Find("acme")->inflight().load(), 2);
  auto c = admission_.Admit(table_->Find("acme"));
  EXPECT_TRUE(c.status.ok());
  EXPECT_TRUE(admission_.Admit(table_->Find("globex")).status.ok());  // others are not affected
}

TEST_F(AdmissionTest, PendingBytesAreBounded) {
  Config c;
  TenantConfig a;
  a.id = "acme";
  a.max_pending_bytes = 100;
  c.tenants = {a};
  table_ = admission_.BuildTable(c, table_.get());
  auto big = admission_.Admit(table_->Find("acme"), 1000);  // one request alone always passes
  ASSERT_TRUE(big.status.ok());
  auto next = admission_.Admit(table_->Find("acme"), 1);
  EXPECT_EQ(next.reason, RejectReason::kMaxPendingBytes);
  EXPECT_THAT(std::string(next.status.message()),
              HasSubstr("already hold 1000 bytes of payload (max_pending_bytes 100)"));
  EXPECT_GT(next.retry_after, Clock::Duration(0));
  EXPECT_EQ(table_->Find("acme")->pending_bytes().load(), 1000);
  big.slot.Release();  // answered
  EXPECT_EQ(table_->Find("acme")->pending_bytes().load(), 0);
  auto small1 = admission_.Admit(table_->Find("acme"), 60);
  ASSERT_TRUE(small1.status.ok());
  EXPECT_EQ(admission_.Admit(table_->Find("acme"), 60).reason, RejectReason::kMaxPendingBytes);
  EXPECT_TRUE(admission_.Admit(table_->Find("acme"), 40).status.ok());
  EXPECT_EQ(table_->Find("acme")->rejected(RejectReason::kMaxPendingBytes), 2u);
}

TEST_F(AdmissionTest, ReloadKeepsStateOfRemainingTenants) {
  Configure(10, 1, 0, 100);
  ASSERT_TRUE(admission_.Admit(table_->Find("acme")).status.ok());
  auto before = table_->Find("acme");
  Configure(10, 1, 0, 100);
  EXPECT_EQ(table_->Find("acme"), before);
  EXPECT_FALSE(admission_.Admit(table_->Find("acme")).status.ok());  // the spent token stays spent
  Configure(1000, 1, 0, 100);
  clock_.Advance(std::chrono::milliseconds(2));
  // A raised limit applies at once.
  EXPECT_TRUE(admission_.Admit(table_->Find("acme")).status.ok());
  EXPECT_EQ(table_->Find("initech"), nullptr);
}

TEST_F(AdmissionTest, TableBuiltForANewConfigLeavesThePublishedOneAlone) {
  Configure(10, 1, 0, 100);
  std::shared_ptr<const AdmissionTable> published = table_;
  Config next;
  TenantConfig initech;
  initech.id = "initech";
  next.tenants = {initech};
  std::shared_ptr<const AdmissionTable> built = admission_.BuildTable(next, published.get());
  // Calls still holding the published table keep finding their tenants,
  // and the new tenant exists only in the new table.
  EXPECT_NE(published->Find("acme"), nullptr);
  EXPECT_EQ(published->Find("initech"), nullptr);
  EXPECT_EQ(built->Find("acme"), nullptr);
  EXPECT_NE(built->Find("initech"), nullptr);
  Admission::Decision d = admission_.Admit(built->Find("acme"));
  EXPECT_EQ(d.status.code(), absl::StatusCode::kUnauthenticated);
}

// A shared limiter that answers what the test tells it to, and remembers
// what it was asked.
class FakeSharedLimiter final : public SharedRateLimiter {
 public:
  void Check(const std::string& bucket, double rate, double burst, Callback done) override {
    asked.push_back(bucket);
    last_rate = rate;
    last_burst = burst;
    done(next);
  }
  std::string Describe() const override { return "fake backend"; }

  Result next;
  std::vector<std::string> asked;
  double last_rate = 0;
  double last_burst = 0;
};

class SharedAdmissionTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(/*allow_on_failure=*/true); }
  void Start(bool allow_on_failure) {
    limiter_ = std::make_shared<FakeSharedLimiter>();
    admission_ = std::make_unique<Admission>(clock_);
    admission_->SetSharedLimiter(limiter_, {allow_on_failure, /*replicas=*/4, "fs:"});
    Config c;
    TenantConfig a;
    a.id = "acme";
    a.rate_limit = {40, 8};
    TenantConfig g;
    g.id = "globex";  // no rate limit: never asks the backend
    c.tenants = {a, g};
    table_ = admission_->BuildTable(c, nullptr);
  }
  Admission::Decision Admit(const std::string& tenant) {
    std::optional<Admission::Decision> out;
    admission_->AdmitAsync(table_->Find(tenant), 0,
                           [&](Admission::Decision d) { out = std::move(d); });
    EXPECT_TRUE(out.has_value()) << "the fake answers at once";
    return std::move(*out);
  }
  void Answer(SharedRateLimiter::Result::Kind kind, Clock::Duration retry = {}) {
    limiter_->next.kind = kind;
    limiter_->next.retry_after = retry;
    limiter_->next.error = "connection refused";
  }
  FakeClock clock_;
  std::shared_ptr<FakeSharedLimiter> limiter_;
  std::unique_ptr<Admission> admission_;
  std::shared_ptr<const AdmissionTable> table_;
};

using Kind = SharedRateLimiter::Result::Kind;

TEST_F(SharedAdmissionTest, AllowedTakesTheTokenFromTheSharedBucketOnly) {
  Answer(Kind::kAllowed);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(Admit("acme").status.ok()) << i;  // local bucket unused
  EXPECT_EQ(limiter_->asked.size(), 100u);
  EXPECT_EQ(limiter_->asked[0], "fs:rl:acme");
  EXPECT_EQ(limiter_->last_rate, 40);
  EXPECT_EQ(limiter_->last_burst, 8);
  EXPECT_TRUE(Admit("globex").status.ok());
  EXPECT_EQ(limiter_->asked.size(), 100u);
}

TEST_F(SharedAdmissionTest, DeniedIsRememberedUntilTheBucketRefills) {
  Answer(Kind::kDenied, std::chrono::milliseconds(25));
  Admission::Decision d = Admit("acme");
  EXPECT_EQ(d.reason, RejectReason::kRateLimit);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(d.status.message()), HasSubstr("(fleet-wide); retry after 25 ms"));
  EXPECT_EQ(d.retry_after, std::chrono::milliseconds(25));
  EXPECT_EQ(table_->Find("acme")->inflight().load(), 0);
  // Until then nobody asks Redis again: a flood costs one round trip per refill.
  clock_.Advance(std::chrono::milliseconds(10));
  Answer(Kind::kAllowed);
  d = Admit("acme");
  EXPECT_EQ(d.reason, RejectReason::kRateLimit);
  EXPECT_EQ(d.retry_after, std::chrono::milliseconds(15));
  EXPECT_EQ(limiter_->asked.size(), 1u);
  clock_.Advance(std::chrono::milliseconds(15));
  EXPECT_TRUE(Admit("acme").status.ok());
  EXPECT_EQ(limiter_->asked.size(), 2u);
  EXPECT_EQ(table_->Find("acme")->rejected(RejectReason::kRateLimit), 2u);
}

TEST_F(SharedAdmissionTest, FailureWithAllowFallsBackToThisReplicasShare) {
  Answer(Kind::kFailed);
  // 40/s and burst 8 over 4 replicas: a local bucket of 10/s, burst 2.
  EXPECT_TRUE(Admit("acme").status.ok());
  EXPECT_TRUE(Admit("acme").status.ok());
  Admission::Decision d = Admit("acme");
  EXPECT_EQ(d.reason, RejectReason::kRateLimit);
  EXPECT_THAT(std::string(d.status.message()), HasSubstr("this replica's share"));
  EXPECT_EQ(d.retry_after, std::chrono::milliseconds(100));
  clock_.Advance(std::chrono::milliseconds(100));
  EXPECT_TRUE(Admit("acme").status.ok());
}

TEST_F(SharedAdmissionTest, FailureWithDenyIsUnavailableNamingTheBackend) {
  Start(/*allow_on_failure=*/false);
  Answer(Kind::kFailed);
  Admission::Decision d = Admit("acme");
  EXPECT_EQ(d.reason, RejectReason::kRateLimitBackend);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(d.status.message()),
              HasSubstr("shared rate limiter (fake backend) is unavailable: connection refused"));
  EXPECT_GT(d.retry_after, Clock::Duration(0));
  EXPECT_EQ(table_->Find("acme")->rejected(RejectReason::kRateLimitBackend), 1u);
  EXPECT_EQ(table_->Find("acme")->inflight().load(), 0);
  // A tenant without a rate limit does not depend on the backend.
  EXPECT_TRUE(Admit("globex").status.ok());
}

TEST_F(SharedAdmissionTest, LocalCapsAreCheckedBeforeAskingTheBackend) {
  Answer(Kind::kAllowed);
  table_->Find("acme")->waiting().store(1024);
  EXPECT_EQ(Admit("acme").reason, RejectReason::kMaxQueue);
  EXPECT_TRUE(limiter_->asked.empty());
}

}  // namespace
}  // namespace fairserve
