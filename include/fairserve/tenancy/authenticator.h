#ifndef FAIRSERVE_TENANCY_AUTHENTICATOR_H_
#define FAIRSERVE_TENANCY_AUTHENTICATOR_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fairserve/common/clock.h"
#include "fairserve/tenancy/auth_throttle.h"
#include "fairserve/tenancy/tenant_registry.h"

namespace fairserve {

// Who a call is, for every front end (gRPC inference, the admin service,
// the HTTP status page and REST). The registry is the one the call was
// authenticated against (from the runtime snapshot the call took); the call
// keeps it, so a reload in between never leaves `tenant` dangling.
struct Principal {
  std::shared_ptr<const TenantRegistry> registry;
  const TenantConfig* tenant = nullptr;  // set when a tenant key or certificate matched
  bool admin = false;                    // set when an admin key matched
};

// What a call presented, as the front end read it.
struct Credentials {
  // The peer's host, in AuthThrottle's form (PeerHost()).
  absl::string_view peer;
  // Raw metadata or header values; ExtractApiKey() takes the key from them.
  absl::string_view authorization;
  absl::string_view x_api_key;
  // The names (subject CN and SANs) of the client certificate the TLS
  // handshake verified; asked only when no key was sent. Null: none.
  std::function<std::vector<std::string>()> certificate_names;
};

// The one place that turns credentials into a Principal.
//
// An API key, when sent, decides: an admin key makes an admin principal, a
// tenant key a tenant principal. Without a key, a verified client
// certificate named in a tenant's client_cert_names makes that tenant.
//
// Failed logins: only a key that was presented and matched nothing counts,
// once per call, against the peer's AuthThrottle bucket. A call without any
// credential is refused but not counted (it guessed nothing), and a
// certificate was already verified by the handshake. While the peer is
// throttled every call from it is refused before any key is looked at.
//
// The registry is passed per call, not read here: a call takes one runtime
// snapshot and authenticates and admits against that same snapshot.
//
// Thread-safe; Authenticate() runs on the caller's thread and takes no lock
// beyond, for a throttled or failing peer, one AuthThrottle shard mutex.
class Authenticator {
 public:
  // `on_unauthenticated` runs (on the calling thread) once for every
  // refusal with UNAUTHENTICATED, e.g. to count it in a metric.
  explicit Authenticator(AuthThrottle& throttle,
                         std::function<void()> on_unauthenticated = nullptr);

  using Registry = std::shared_ptr<const TenantRegistry>;

  // The principal in `registry` (not null), or:
  // - RESOURCE_EXHAUSTED while the peer is throttled; *retry_after (when
  //   given) is set to the wait;
  // - UNAUTHENTICATED when no credential matched.
  absl::StatusOr<Principal> Authenticate(const Registry& registry, const Credentials& credentials,
                                         Clock::Duration* retry_after = nullptr) const;

  // Authenticate(), then PERMISSION_DENIED unless the principal is an admin.
  // `what` names the operation in the message.
  absl::StatusOr<Principal> AuthenticateAdmin(const Registry& registry,
                                              const Credentials& credentials,
                                              absl::string_view what,
                                              Clock::Duration* retry_after = nullptr) const;

  // Authenticate(), then PERMISSION_DENIED unless the principal is a tenant.
  absl::StatusOr<Principal> AuthenticateTenant(const Registry& registry,
                                               const Credentials& credentials,
                                               Clock::Duration* retry_after = nullptr) const;

 private:
  absl::Status Refuse() const;

  AuthThrottle& throttle_;
  std::function<void()> on_unauthenticated_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_TENANCY_AUTHENTICATOR_H_
