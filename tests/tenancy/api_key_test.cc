#include "fairserve/tenancy/api_key.h"

#include <gtest/gtest.h>

#include "fairserve/config/config.h"

namespace fairserve {
namespace {

TEST(ApiKeyTest, HashIsSha256InStoredForm) {
  // sha256("abc"), the FIPS 180-2 test vector.
  EXPECT_EQ(HashApiKey("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(IsValidKeyHash(HashApiKey("acme-demo-key")));
}

TEST(ApiKeyTest, GeneratedKeysAreRandomAndUrlSafe) {
  std::string a = GenerateApiKey();
  std::string b = GenerateApiKey();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("fs_", 0), 0u);
  EXPECT_GE(a.size(), 40u);
  EXPECT_EQ(a.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
}

TEST(ApiKeyTest, ExtractsBearerOrHeader) {
  EXPECT_EQ(ExtractApiKey("Bearer k1", ""), "k1");
  EXPECT_EQ(ExtractApiKey("bearer  k1 ", ""), "k1");
  EXPECT_EQ(ExtractApiKey("", "k2"), "k2");
  EXPECT_EQ(ExtractApiKey("Basic dXNlcjpwdw==", "k2"), "k2");
  EXPECT_EQ(ExtractApiKey("Bearer ", ""), "");
  EXPECT_EQ(ExtractApiKey("", ""), "");
}

}  // namespace
}  // namespace fairserve
