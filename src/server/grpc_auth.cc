#include "fairserve/server/grpc_auth.h"

#include <chrono>
#include <string>
#include <vector>

#include "fairserve/tenancy/auth_throttle.h"

namespace fairserve {
namespace {

// Subject CN and SANs of the client certificate the TLS handshake verified
// (empty without mutual TLS).
std::vector<std::string> CertificateNames(const grpc::ServerContextBase* ctx) {
  std::vector<std::string> names;
  std::shared_ptr<const grpc::AuthContext> auth = ctx->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return names;
  for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
    for (const grpc::string_ref& v : auth->FindPropertyValues(property)) {
      names.emplace_back(v.data(), v.size());
    }
  }
  return names;
}

}  // namespace

absl::string_view GrpcMetadata(const grpc::ServerContextBase* ctx, absl::string_view key) {
  auto it = ctx->client_metadata().find(grpc::string_ref(key.data(), key.size()));
  if (it == ctx->client_metadata().end()) return {};
  return absl::string_view(it->second.data(), it->second.size());
}

GrpcCredentials::GrpcCredentials(const grpc::ServerContextBase* ctx) : peer_(ctx->peer()) {
  credentials_.peer = PeerHost(peer_);
  credentials_.authorization = GrpcMetadata(ctx, "authorization");
  credentials_.x_api_key = GrpcMetadata(ctx, "x-api-key");
  credentials_.certificate_names = [ctx] { return CertificateNames(ctx); };
}

absl::StatusOr<Principal> AuthenticateAs(const Authenticator& authenticator,
                                         const Authenticator::Registry& registry,
                                         const Credentials& credentials, CallerKind kind,
                                         absl::string_view what, Clock::Duration* retry_after) {
  switch (kind) {
    case CallerKind::kAdmin:
      return authenticator.AuthenticateAdmin(registry, credentials, what, retry_after);
    case CallerKind::kTenant:
      return authenticator.AuthenticateTenant(registry, credentials, retry_after);
    case CallerKind::kAny:
      break;
  }
  return authenticator.Authenticate(registry, credentials, retry_after);
}

absl::StatusOr<Principal> AuthenticateGrpcCall(const Authenticator& authenticator,
                                               const Authenticator::Registry& registry,
                                               grpc::ServerContextBase* ctx, CallerKind kind,
                                               absl::string_view what) {
  GrpcCredentials credentials(ctx);
  const Credentials& c = credentials.get();
  Clock::Duration retry_after{0};
  absl::StatusOr<Principal> p = AuthenticateAs(authenticator, registry, c, kind, what,
                                               &retry_after);
  if (retry_after > Clock::Duration(0)) {
    ctx->AddTrailingMetadata(
        "retry-after-ms",
        std::to_string(std::chrono::ceil<std::chrono::milliseconds>(retry_after).count()));
  }
  return p;
}

}  // namespace fairserve
