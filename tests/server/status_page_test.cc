#include "fairserve/server/status_page.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fairserve/tenancy/api_key.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;

// Who may open /status, before anything is read for the page.
class StatusPageAccessTest : public ::testing::Test {
 protected:
  void Configure(StatusPageMode mode) {
    auto config = std::make_shared<Config>();
    config->server.status_page = mode;
    config->server.admin_api_key_hashes = {HashApiKey("admin-key")};
    TenantConfig acme;
    acme.id = "acme";
    acme.api_key_hashes = {HashApiKey("acme-key")};
    config->tenants = {acme};
    Admission admission(clock_);
    runtime_.Set(std::make_shared<RuntimeSnapshot>(
        RuntimeSnapshot{std::make_shared<TenantRegistry>(config),
                        admission.BuildTable(*config, nullptr)}));
  }
  std::pair<int, std::string> Get(const std::string& addr, const std::string& auth) {
    StatusPageDeps deps;
    deps.runtime = &runtime_;
    deps.authenticator = &authenticator_;
    StatusPage page(deps);
    return page.Respond(addr, auth);
  }

  FakeClock clock_;
  AuthThrottle throttle_{clock_, {5, 20, 100}};
  Runtime runtime_;
  Authenticator authenticator_{throttle_};
};

TEST_F(StatusPageAccessTest, LoopbackModeRefusesOtherClients) {
  Configure(StatusPageMode::kLoopback);
  for (const char* addr : {"10.0.0.5", "192.168.1.2", "::ffff:10.1.1.1", "2001:db8::1"}) {
    auto [code, body] = Get(addr, "Bearer admin-key");  // even with an admin key
    EXPECT_EQ(code, 403) << addr;
    EXPECT_THAT(body, HasSubstr("only served to loopback clients")) << addr;
  }
}

TEST_F(StatusPageAccessTest, OffIsNotFound) {
  Configure(StatusPageMode::kOff);
  EXPECT_EQ(Get("127.0.0.1", "").first, 404);
}

TEST_F(StatusPageAccessTest, AdminModeNeedsAnAdminKeyFromAnyAddress) {
  Configure(StatusPageMode::kAdmin);
  EXPECT_EQ(Get("10.0.0.5", "").first, 401);
  EXPECT_EQ(Get("127.0.0.1", "").first, 401);  // loopback is not enough either
  auto [code, body] = Get("10.0.0.5", "Bearer acme-key");
  EXPECT_EQ(code, 403);
  EXPECT_THAT(body, HasSubstr("needs an admin key"));
  EXPECT_EQ(Get("10.0.0.5", "Bearer wrong").first, 401);
}

}  // namespace
}  // namespace fairserve
