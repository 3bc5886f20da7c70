#include "fairserve/tenancy/api_key.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fairserve {

namespace {

// OpenSSL 3's one-shot SHA256() looks the algorithm up in the provider table
// (a read lock, a hash lookup, string compares) and allocates a context on
// every call: about two thirds of a key check's time. The algorithm is
// fetched once per process and each thread keeps one context.
struct Sha256Context {
  Sha256Context() : md(EVP_MD_fetch(nullptr, "SHA256", nullptr)), ctx(EVP_MD_CTX_new()) {
    if (md == nullptr || ctx == nullptr) std::abort();  // libcrypto without SHA-256: unusable
  }
  ~Sha256Context() {
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
  }
  EVP_MD* md;
  EVP_MD_CTX* ctx;
};

}  // namespace

void Sha256(absl::string_view data, uint8_t (&digest)[32]) {
  thread_local Sha256Context context;
  unsigned int size = 0;
  if (EVP_DigestInit_ex2(context.ctx, context.md, nullptr) != 1 ||
      EVP_DigestUpdate(context.ctx, data.data(), data.size()) != 1 ||
      EVP_DigestFinal_ex(context.ctx, digest, &size) != 1 || size != 32) {
    std::abort();  // cannot fail for an in-memory SHA-256 short of memory corruption
  }
}

std::string HashApiKey(absl::string_view key) {
  uint8_t digest[32];
  Sha256(key, digest);
  return absl::StrCat(
      "sha256:", absl::BytesToHexString(absl::string_view(
                     reinterpret_cast<const char*>(digest), sizeof(digest))));
}

std::string GenerateApiKey() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();  // no entropy: never hand out a weak key
  std::string encoded;
  absl::WebSafeBase64Escape(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)), &encoded);
  return absl::StrCat("fs_", encoded);
}

absl::string_view ExtractApiKey(absl::string_view authorization, absl::string_view x_api_key) {
  constexpr absl::string_view kBearer = "bearer ";
  if (authorization.size() > kBearer.size() &&
      absl::StartsWithIgnoreCase(authorization, kBearer)) {
    return absl::StripAsciiWhitespace(authorization.substr(kBearer.size()));
  }
  return absl::StripAsciiWhitespace(x_api_key);
}

}  // namespace fairserve
