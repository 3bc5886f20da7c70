#include "fairserve/server/rejection_holder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace fairserve {
namespace {

using std::chrono::milliseconds;

class RejectionHolderTest : public ::testing::Test {
 protected:
  RejectionHolder::Options Opts(size_t per_tenant, size_t total = 100) {
    RejectionHolder::Options o;
    o.per_tenant = per_tenant;
    o.total = total;
    o.max_hold = milliseconds(500);
    o.start_thread = false;  // the test calls AnswerDue in simulated time
    return o;
  }
  FakeClock clock_;
};

TEST_F(RejectionHolderTest, AnswersAtTheRetryPointNotBefore) {
  RejectionHolder holder(Opts(4), clock_);
  int answered = 0;
  ASSERT_TRUE(holder.Hold("acme", clock_.Now() + milliseconds(100), [&] { ++answered; }));
  EXPECT_EQ(holder.held(), 1u);
  clock_.Advance(milliseconds(99));
  EXPECT_EQ(holder.AnswerDue(clock_.Now()), 0u);
  clock_.Advance(milliseconds(1));
  EXPECT_EQ(holder.AnswerDue(clock_.Now()), 1u);
  EXPECT_EQ(answered, 1);
  EXPECT_EQ(holder.held(), 0u);
  EXPECT_EQ(holder.held_total(), 1u);
}

TEST_F(RejectionHolderTest, NeverHoldsPastMaxHold) {
  RejectionHolder holder(Opts(4), clock_);
  int answered = 0;
  ASSERT_TRUE(holder.Hold("acme", clock_.Now() + std::chrono::seconds(60), [&] { ++answered; }));
  clock_.Advance(milliseconds(500));
  EXPECT_EQ(holder.AnswerDue(clock_.Now()), 1u);
}

// A tenant's cap and the server's total bound what is held; past them the
// caller answers at once, and other tenants keep their own room.
TEST_F(RejectionHolderTest, PerTenantAndTotalBounds) {
  RejectionHolder holder(Opts(2, 3), clock_);
  auto until = clock_.Now() + milliseconds(100);
  EXPECT_TRUE(holder.Hold("flood", until, [] {}));
  EXPECT_TRUE(holder.Hold("flood", until, [] {}));
  EXPECT_FALSE(holder.Hold("flood", until, [] {}));  // its cap
  EXPECT_TRUE(holder.Hold("other", until, [] {}));
  EXPECT_FALSE(holder.Hold("third", until, [] {}));  // the total
  EXPECT_EQ(holder.overflow_total(), 2u);
  clock_.Advance(milliseconds(100));
  EXPECT_EQ(holder.AnswerDue(clock_.Now()), 3u);
  EXPECT_TRUE(holder.Hold("flood", clock_.Now() + milliseconds(1), [] {}));  // room again
}

TEST_F(RejectionHolderTest, OffOrNothingToWaitForAnswersAtOnce) {
  RejectionHolder off(Opts(0), clock_);
  EXPECT_FALSE(off.Hold("acme", clock_.Now() + milliseconds(100), [] {}));
  RejectionHolder on(Opts(4), clock_);
  EXPECT_FALSE(on.Hold("acme", clock_.Now(), [] {}));  // retry point reached (or deadline)
}

// Stopping (drain, destruction) answers everything held, and holds no more.
TEST_F(RejectionHolderTest, StopAnswersEverythingHeld) {
  int answered = 0;
  {
    RejectionHolder holder(Opts(8), clock_);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(holder.Hold("acme", clock_.Now() + milliseconds(100), [&] { ++answered; }));
    }
    holder.Stop();
    EXPECT_EQ(answered, 5);
    EXPECT_FALSE(holder.Hold("acme", clock_.Now() + milliseconds(100), [] {}));
  }
  EXPECT_EQ(answered, 5);
}

// With its own thread, answers go out in real time, in due order.
TEST(RejectionHolderThreadTest, ItsThreadAnswersInDueOrder) {
  RejectionHolder::Options o;
  o.per_tenant = 8;
  RejectionHolder holder(o, SteadyClock::Get());
  std::mutex mu;
  std::vector<int> order;
  auto now = SteadyClock::Get().Now();
  for (int i : {3, 1, 2}) {
    ASSERT_TRUE(holder.Hold("acme", now + milliseconds(20 * i), [&, i] {
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(i);
    }));
  }
  for (int i = 0; i < 500 && holder.held() > 0; ++i) std::this_thread::sleep_for(milliseconds(5));
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(order, ::testing::ElementsAre(1, 2, 3));
}

}  // namespace
}  // namespace fairserve
