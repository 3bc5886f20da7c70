#ifndef FAIRSERVE_SERVER_GRPC_AUTH_H_
#define FAIRSERVE_SERVER_GRPC_AUTH_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fairserve/tenancy/authenticator.h"

namespace fairserve {

// The credentials of a gRPC call, as the Authenticator takes them: the
// authorization / x-api-key metadata, the verified client certificate's
// names (read only when asked), the peer's host. Valid while the call's
// context is; use on the call's thread.
class GrpcCredentials {
 public:
  explicit GrpcCredentials(const grpc::ServerContextBase* ctx);
  const Credentials& get() const { return credentials_; }

 private:
  std::string peer_;
  Credentials credentials_;
};

// What a gRPC call must be.
enum class CallerKind { kAny, kTenant, kAdmin };

// The Authenticator's entry point for `kind`, for every front end (gRPC
// here, REST in rest_api.cc): the same credentials give the same answer on
// both ports. `*retry_after` is set when a throttled peer should wait.
absl::StatusOr<Principal> AuthenticateAs(const Authenticator& authenticator,
                                         const Authenticator::Registry& registry,
                                         const Credentials& credentials, CallerKind kind,
                                         absl::string_view what, Clock::Duration* retry_after);

// Reads a gRPC call's credentials (authorization / x-api-key metadata, the
// verified client certificate, the peer) and hands them to the one
// Authenticator, against `registry` (the call's runtime snapshot's). A
// throttled peer's refusal carries a 'retry-after-ms'
// trailer. `what` names the operation in PERMISSION_DENIED messages for
// kAdmin. Runs on the calling (gRPC) thread; takes no lock of its own.
absl::StatusOr<Principal> AuthenticateGrpcCall(const Authenticator& authenticator,
                                               const Authenticator::Registry& registry,
                                               grpc::ServerContextBase* ctx, CallerKind kind,
                                               absl::string_view what = "");

// One metadata value of the call, empty when absent.
absl::string_view GrpcMetadata(const grpc::ServerContextBase* ctx, absl::string_view key);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_GRPC_AUTH_H_
