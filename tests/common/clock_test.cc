#include "fairserve/common/clock.h"

#include <gtest/gtest.h>

namespace fairserve {
namespace {

TEST(FakeClockTest, MovesOnlyWhenAdvanced) {
  FakeClock clock;
  Clock::TimePoint t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(std::chrono::milliseconds(5));
  EXPECT_EQ(clock.Now() - t0, std::chrono::milliseconds(5));
}

TEST(SteadyClockTest, IsMonotonic) {
  Clock& clock = SteadyClock::Get();
  Clock::TimePoint a = clock.Now();
  EXPECT_LE(a, clock.Now());
}

}  // namespace
}  // namespace fairserve
