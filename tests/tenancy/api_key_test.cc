#include "fairserve/tenancy/api_key.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "fairserve/config/config.h"

namespace fairserve {
namespace {

TEST(ApiKeyTest, HashIsSha256InStoredForm) {
  // sha256("abc"), the FIPS 180-2 test vector.
  EXPECT_EQ(HashApiKey("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(IsValidKeyHash(HashApiKey("acme-demo-key")));
}

TEST(ApiKeyTest, DigestsFromManyThreadsWithTheSharedAlgorithmAgree) {
  // Every thread digests with the one algorithm fetched per process: a
  // digest must not depend on what was hashed before, nor on the thread.
  const std::string abc = HashApiKey("abc");
  const std::string empty =
      "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  const std::string long_key(1000, 'k');
  const std::string long_hash = HashApiKey(long_key);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (HashApiKey(long_key) != long_hash) ++mismatches;
        if (HashApiKey("") != empty) ++mismatches;
        if (HashApiKey("abc") != abc) ++mismatches;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(HashApiKey(""), empty);
  EXPECT_NE(long_hash, abc);
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
