#include "fairserve/tenancy/tenant_registry.h"

#include <gtest/gtest.h>

#include "fairserve/tenancy/api_key.h"

namespace fairserve {
namespace {

class TenantRegistryTest : public ::testing::Test {
 protected:
  TenantRegistryTest() {
    auto config = std::make_shared<Config>();
    TenantConfig a;
    a.id = "acme";
    a.api_key_hashes = {HashApiKey("acme-1"), HashApiKey("acme-2")};
    TenantConfig g;
    g.id = "globex";
    g.api_key_hashes = {HashApiKey("globex-1")};
    config->tenants = {a, g};
    registry_ = std::make_unique<TenantRegistry>(config);
  }
  std::string Who(const std::string& key) {
    const TenantConfig* t = registry_->Authenticate(key);
    return t ? t->id : "";
  }
  std::unique_ptr<TenantRegistry> registry_;
};

TEST_F(TenantRegistryTest, MapsEveryKeyToItsTenant) {
  EXPECT_EQ(Who("acme-1"), "acme");
  EXPECT_EQ(Who("acme-2"), "acme");
  EXPECT_EQ(Who("globex-1"), "globex");
}

TEST_F(TenantRegistryTest, RejectsUnknownEmptyAndNearMisses) {
  EXPECT_EQ(Who(""), "");
  EXPECT_EQ(Who("acme-3"), "");
  EXPECT_EQ(Who("acme-1 "), "");
  EXPECT_EQ(Who(HashApiKey("acme-1")), "");  // the stored hash is not a key
}

TEST_F(TenantRegistryTest, FindsById) {
  ASSERT_NE(registry_->FindById("globex"), nullptr);
  EXPECT_EQ(registry_->FindById("initech"), nullptr);
}

}  // namespace
}  // namespace fairserve
