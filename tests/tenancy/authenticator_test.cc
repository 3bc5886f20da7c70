#include "fairserve/tenancy/authenticator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fairserve/tenancy/api_key.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = std::make_shared<Config>();
    config->server.admin_api_key_hashes = {HashApiKey("admin-key")};
    config->server.tls.client_ca_file = "ca.pem";
    TenantConfig acme;
    acme.id = "acme";
    acme.api_key_hashes = {HashApiKey("acme-key")};
    TenantConfig certonly;
    certonly.id = "certonly";
    certonly.client_cert_names = {"certonly.example.com"};
    config->tenants = {acme, certonly};
    registry_ = std::make_shared<TenantRegistry>(config);
  }

  absl::StatusOr<Principal> Auth(absl::string_view key, std::vector<std::string> names = {}) {
    std::string authorization = key.empty() ? "" : "Bearer " + std::string(key);
    Credentials c;
    c.peer = "ipv4:10.0.0.1";
    c.authorization = authorization;
    c.certificate_names = [names] { return names; };
    return authenticator_.Authenticate(registry_, c);
  }

  FakeClock clock_;
  AuthThrottle throttle_{clock_, {/*failures_per_second=*/1, /*burst=*/3, /*max_peers=*/100}};
  std::shared_ptr<const TenantRegistry> registry_;
  int unauthenticated_ = 0;
  Authenticator authenticator_{throttle_, [this] { ++unauthenticated_; }};
};

TEST_F(AuthenticatorTest, KeysAndCertificatesMakePrincipals) {
  auto admin = Auth("admin-key");
  ASSERT_TRUE(admin.ok());
  EXPECT_TRUE(admin->admin);
  EXPECT_EQ(admin->tenant, nullptr);
  auto acme = Auth("acme-key");
  ASSERT_TRUE(acme.ok());
  EXPECT_FALSE(acme->admin);
  EXPECT_EQ(acme->tenant->id, "acme");
  auto cert = Auth("", {"other", "certonly.example.com"});
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->tenant->id, "certonly");
  // A key, when sent, decides over the certificate.
  EXPECT_EQ(Auth("acme-key", {"certonly.example.com"})->tenant->id, "acme");
  EXPECT_EQ(unauthenticated_, 0);
}

// Each wrong key counts once; calls without credentials and certificate
// tenants are never counted, so a certificate-only tenant cannot lock
// itself out however often it calls.
TEST_F(AuthenticatorTest, OnlyAPresentedWrongKeyCountsAsAFailedLogin) {
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(Auth("", {"certonly.example.com"}).ok()) << i;
    EXPECT_EQ(Auth("").status().code(), absl::StatusCode::kUnauthenticated) << i;
  }
  EXPECT_EQ(throttle_.tracked(), 0u);
  EXPECT_EQ(unauthenticated_, 10);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Auth("guess").status().code(), absl::StatusCode::kUnauthenticated) << i;
  }
  // Exactly the burst of 3: the fourth call is throttled, even with a good key.
  Clock::Duration retry{};
  Credentials c;
  c.peer = "ipv4:10.0.0.1";
  c.authorization = "Bearer acme-key";
  auto throttled = authenticator_.Authenticate(registry_, c, &retry);
  EXPECT_EQ(throttled.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(retry, std::chrono::seconds(1));
  EXPECT_EQ(unauthenticated_, 13);
  clock_.Advance(std::chrono::seconds(1));
  EXPECT_TRUE(authenticator_.Authenticate(registry_, c).ok());
}

TEST_F(AuthenticatorTest, AdminAndTenantRequirements) {
  Credentials tenant;
  tenant.peer = "ipv4:10.0.0.2";
  tenant.authorization = "Bearer acme-key";
  auto denied = authenticator_.AuthenticateAdmin(registry_, tenant, "Reload");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(denied.status().message()),
              HasSubstr("Reload needs an admin key (server.admin_api_keys); tenant 'acme'"));
  Credentials admin;
  admin.peer = "ipv4:10.0.0.2";
  admin.x_api_key = "admin-key";
  EXPECT_TRUE(authenticator_.AuthenticateAdmin(registry_, admin, "Reload").ok());
  EXPECT_EQ(authenticator_.AuthenticateTenant(registry_, admin).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(authenticator_.AuthenticateTenant(registry_, tenant)->tenant->id, "acme");
  EXPECT_EQ(throttle_.tracked(), 0u);
}

}  // namespace
}  // namespace fairserve
