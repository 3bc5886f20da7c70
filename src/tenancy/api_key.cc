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
// (a read lock, a hash lookup, string compares) on every call: about two
// thirds of a key check's time. Here the algorithm is fetched once and kept
// for the process's life; each digest still allocates its own context (a
// per-thread context would save about 50 ns more, at the price of freeing
// it at thread exit, possibly after OpenSSL's own exit-time cleanup).
const EVP_MD* Sha256Algorithm() {
  static const EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) std::abort();  // libcrypto without SHA-256: unusable
    return fetched;
  }();
  return md;
}

}  // namespace

void Sha256(absl::string_view data, uint8_t (&digest)[32]) {
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &size, Sha256Algorithm(), nullptr) != 1 ||
      size != 32) {
    std::abort();  // fails only without memory for its context
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
