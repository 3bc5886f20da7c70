#include "fairserve/tenancy/api_key.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace fairserve {

std::string HashApiKey(absl::string_view key) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
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
