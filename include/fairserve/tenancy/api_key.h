#ifndef FAIRSERVE_TENANCY_API_KEY_H_
#define FAIRSERVE_TENANCY_API_KEY_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace fairserve {

// SHA-256 of `data` into `digest`, with the algorithm fetched once per
// process (OpenSSL 3's SHA256() fetches it on every call).
void Sha256(absl::string_view data, uint8_t (&digest)[32]);

// Returns "sha256:<64 lowercase hex>" for an API key: the only form in which
// keys are stored in configs.
std::string HashApiKey(absl::string_view key);

// A new random API key ("fs_" + 43 URL-safe base64 characters, 256 bits from
// the OS's CSPRNG).
std::string GenerateApiKey();

// Extracts the API key from call metadata values: "Bearer <key>" in
// `authorization` (scheme case-insensitive), else `x_api_key`. Empty when
// neither carries a key.
absl::string_view ExtractApiKey(absl::string_view authorization, absl::string_view x_api_key);

}  // namespace fairserve

#endif  // FAIRSERVE_TENANCY_API_KEY_H_
