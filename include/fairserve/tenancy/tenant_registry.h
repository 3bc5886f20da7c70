#ifndef FAIRSERVE_TENANCY_TENANT_REGISTRY_H_
#define FAIRSERVE_TENANCY_TENANT_REGISTRY_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/string_view.h"
#include "fairserve/config/config.h"

namespace fairserve {

// Maps API keys to tenants. Immutable: built from one config snapshot and
// shared by all threads; a reload builds a new registry.
class TenantRegistry {
 public:
  explicit TenantRegistry(std::shared_ptr<const Config> config);

  // What `api_key` is: an admin key, a tenant's key, or nothing. The key is
  // hashed once and compared with the stored hashes in constant time. (Config
  // validation keeps admin and tenant keys apart, so at most one is set.)
  struct KeyMatch {
    const TenantConfig* tenant = nullptr;
    bool admin = false;
  };
  KeyMatch Identify(absl::string_view api_key) const;

  // The tenant that owns `api_key`, or nullptr. The key is hashed and compared
  // with the stored hashes in constant time. The returned pointer lives as
  // long as this registry.
  const TenantConfig* Authenticate(absl::string_view api_key) const;

  // The tenant one of whose client_cert_names is among `names` (the subject
  // CN and SANs of a client certificate the TLS handshake verified), or nullptr.
  const TenantConfig* AuthenticateCertificate(const std::vector<std::string>& names) const;

  const TenantConfig* FindById(absl::string_view id) const;

  // True when `api_key` is one of server.admin_api_keys (constant-time compare).
  bool IsAdmin(absl::string_view api_key) const;
  const Config& config() const { return *config_; }
  const std::shared_ptr<const Config>& config_ptr() const { return config_; }

 private:
  using Digest = std::array<uint8_t, 32>;
  struct Entry {
    Digest digest;
    const TenantConfig* tenant;
  };

  std::shared_ptr<const Config> config_;
  // Indexed by the first 8 bytes of each key's SHA-256. Looking up by a prefix
  // of a hash reveals nothing usable about the key itself; the full digest is
  // then compared with CRYPTO_memcmp, which does not stop at the first
  // differing byte.
  std::unordered_multimap<uint64_t, Entry> by_prefix_;
  std::unordered_map<std::string, const TenantConfig*> by_id_;
  std::unordered_map<std::string, const TenantConfig*> by_cert_name_;
  std::vector<Digest> admin_digests_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_TENANCY_TENANT_REGISTRY_H_
