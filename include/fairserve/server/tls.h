#ifndef FAIRSERVE_SERVER_TLS_H_
#define FAIRSERVE_SERVER_TLS_H_

// TLS and mutual TLS on the gRPC port (server.tls).

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "fairserve/config/config.h"

namespace grpc {
class ServerCredentials;
}

namespace fairserve {

// Reads the files `tls` names and checks they can serve: a PEM certificate
// chain, a private key that belongs to its first certificate, a PEM bundle of
// client CAs. On success, a line for the log (subject, expiry); otherwise
// FAILED_PRECONDITION naming the field, the file and what to do.
absl::StatusOr<std::string> CheckTlsFiles(const TlsConfig& tls);

// Credentials that re-read the files every tls.refresh_interval_s, so a
// rotated certificate applies to new connections without a restart. With
// client_ca_file, client certificates are verified against it (and required
// unless require_client_cert is false).
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsConfig& tls);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_TLS_H_
