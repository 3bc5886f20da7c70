#include "fairserve/common/units.h"

#include <gtest/gtest.h>

namespace fairserve {
namespace {

TEST(ParseByteSizeTest, AcceptsPlainAndUnits) {
  EXPECT_EQ(*ParseByteSize("1048576"), 1048576u);
  EXPECT_EQ(*ParseByteSize("512MiB"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("1.5 GB"), 1500000000ull);
  EXPECT_EQ(*ParseByteSize("64KiB"), 65536u);
  EXPECT_EQ(*ParseByteSize("10B"), 10u);
}

TEST(ParseByteSizeTest, RejectsGarbage) {
  EXPECT_FALSE(ParseByteSize("").ok());
  EXPECT_FALSE(ParseByteSize("MiB").ok());
  EXPECT_FALSE(ParseByteSize("-5").ok());
  EXPECT_FALSE(ParseByteSize("12 parsecs").ok());
  EXPECT_FALSE(ParseByteSize("1e40").ok());
}

TEST(FormatBytesTest, PicksUnit) {
  EXPECT_EQ(FormatBytes(12), "12 B");
  EXPECT_EQ(FormatBytes(512ull << 20), "512.0 MiB");
}

}  // namespace
}  // namespace fairserve
