#include "fairserve/tenancy/authenticator.h"

#include "absl/strings/str_cat.h"
#include "fairserve/tenancy/api_key.h"

namespace fairserve {

Authenticator::Authenticator(AuthThrottle& throttle, std::function<void()> on_unauthenticated)
    : throttle_(throttle), on_unauthenticated_(std::move(on_unauthenticated)) {}

absl::Status Authenticator::Refuse() const {
  if (on_unauthenticated_) on_unauthenticated_();
  return absl::UnauthenticatedError(
      "missing or invalid API key; send 'authorization: Bearer <key>' or 'x-api-key: <key>' "
      "(or, with mutual TLS, a client certificate named in a tenant's client_cert_names)");
}

absl::StatusOr<Principal> Authenticator::Authenticate(const Registry& registry,
                                                      const Credentials& credentials,
                                                      Clock::Duration* retry_after) const {
  Clock::Duration wait = throttle_.Blocked(credentials.peer);
  if (wait > Clock::Duration(0)) {
    if (retry_after) *retry_after = wait;
    return throttle_.Check(credentials.peer);
  }
  Principal p;
  p.registry = registry;
  absl::string_view key = ExtractApiKey(credentials.authorization, credentials.x_api_key);
  if (!key.empty()) {
    TenantRegistry::KeyMatch match = p.registry->Identify(key);
    if (match.admin) {
      p.admin = true;
      return p;
    }
    p.tenant = match.tenant;
    if (p.tenant != nullptr) return p;
    throttle_.RecordFailure(credentials.peer);
    return Refuse();
  }
  if (credentials.certificate_names) {
    p.tenant = p.registry->AuthenticateCertificate(credentials.certificate_names());
    if (p.tenant != nullptr) return p;
  }
  return Refuse();
}

absl::StatusOr<Principal> Authenticator::AuthenticateAdmin(const Registry& registry,
                                                           const Credentials& credentials,
                                                           absl::string_view what,
                                                           Clock::Duration* retry_after) const {
  absl::StatusOr<Principal> p = Authenticate(registry, credentials, retry_after);
  if (p.ok() && !p->admin) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, " needs an admin key (server.admin_api_keys); tenant '",
                     p->tenant->id, "' is not an admin"));
  }
  return p;
}

absl::StatusOr<Principal> Authenticator::AuthenticateTenant(const Registry& registry,
                                                            const Credentials& credentials,
                                                            Clock::Duration* retry_after) const {
  absl::StatusOr<Principal> p = Authenticate(registry, credentials, retry_after);
  if (p.ok() && p->tenant == nullptr) {
    return absl::PermissionDeniedError(
        "an admin key identifies no tenant; inference needs a tenant's key or certificate");
  }
  return p;
}

}  // namespace fairserve
