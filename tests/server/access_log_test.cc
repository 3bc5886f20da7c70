#include "fairserve/server/access_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace fairserve {
namespace {

using ::testing::HasSubstr;

TEST(AccessLogTest, PlainAndJson) {
  AccessRecord r{"acme", "mlp", "1", "req\"7\n", absl::StatusCode::kOk, 2, 8, 0.5, 1.25, 2.0};
  EXPECT_EQ(AccessLog::Render(r, AccessLog::Format::kPlain),
            "access tenant=acme model=mlp version=1 id=req?7? status=ok rows=2 batch=8 "
            "queue_ms=0.500 compute_ms=1.250 total_ms=2.000");
  EXPECT_EQ(AccessLog::Render(r, AccessLog::Format::kJson),
            "{\"type\":\"access\",\"tenant\":\"acme\",\"model\":\"mlp\",\"version\":\"1\","
            "\"id\":\"req?7?\",\"status\":\"ok\",\"rows\":2,\"batch\":8,\"queue_ms\":0.500,"
            "\"compute_ms\":1.250,\"total_ms\":2.000}");
  r.code = absl::StatusCode::kResourceExhausted;
  EXPECT_THAT(AccessLog::Render(r, AccessLog::Format::kPlain), HasSubstr("status=resource_exhausted"));
}

}  // namespace
}  // namespace fairserve
