#include "fairserve/tenancy/tenant_registry.h"

#include <openssl/crypto.h>

#include <cstring>

#include "absl/strings/escaping.h"
#include "fairserve/tenancy/api_key.h"

namespace fairserve {
namespace {

uint64_t Prefix(const uint8_t* digest) {
  uint64_t p;
  std::memcpy(&p, digest, sizeof(p));
  return p;
}

}  // namespace

TenantRegistry::TenantRegistry(std::shared_ptr<const Config> config) : config_(std::move(config)) {
  for (const TenantConfig& tenant : config_->tenants) {
    by_id_[tenant.id] = &tenant;
    for (const std::string& name : tenant.client_cert_names) by_cert_name_[name] = &tenant;
    for (const std::string& hash : tenant.api_key_hashes) {
      // Config validation guarantees "sha256:" + 64 hex digits.
      std::string raw = absl::HexStringToBytes(absl::string_view(hash).substr(7));
      Entry entry;
      std::memcpy(entry.digest.data(), raw.data(), entry.digest.size());
      entry.tenant = &tenant;
      by_prefix_.emplace(Prefix(entry.digest.data()), entry);
    }
  }
  for (const std::string& hash : config_->server.admin_api_key_hashes) {
    std::string raw = absl::HexStringToBytes(absl::string_view(hash).substr(7));
    Digest d;
    std::memcpy(d.data(), raw.data(), d.size());
    admin_digests_.push_back(d);
  }
}

TenantRegistry::KeyMatch TenantRegistry::Identify(absl::string_view api_key) const {
  KeyMatch match;
  if (api_key.empty()) return match;
  uint8_t digest[32];  // hashed once, compared with every candidate in constant time
  Sha256(api_key, digest);
  for (const Digest& d : admin_digests_) {
    match.admin |= CRYPTO_memcmp(d.data(), digest, sizeof(digest)) == 0;
  }
  auto range = by_prefix_.equal_range(Prefix(digest));
  for (auto it = range.first; it != range.second; ++it) {
    if (CRYPTO_memcmp(it->second.digest.data(), digest, sizeof(digest)) == 0) {
      match.tenant = it->second.tenant;
    }
  }
  return match;
}

bool TenantRegistry::IsAdmin(absl::string_view api_key) const { return Identify(api_key).admin; }

const TenantConfig* TenantRegistry::Authenticate(absl::string_view api_key) const {
  return Identify(api_key).tenant;
}

const TenantConfig* TenantRegistry::AuthenticateCertificate(
    const std::vector<std::string>& names) const {
  for (const std::string& name : names) {
    auto it = by_cert_name_.find(name);
    if (it != by_cert_name_.end()) return it->second;
  }
  return nullptr;
}

const TenantConfig* TenantRegistry::FindById(absl::string_view id) const {
  auto it = by_id_.find(std::string(id));
  return it == by_id_.end() ? nullptr : it->second;
}

}  // namespace fairserve
