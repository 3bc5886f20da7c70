#ifndef FAIRSERVE_SERVER_TLS_H_
#define FAIRSERVE_SERVER_TLS_H_

// TLS and mutual TLS on the gRPC and HTTP ports (server.tls).

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fairserve/config/config.h"

namespace grpc {
class ServerCredentials;
}
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

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

// The HTTP port's TLS (HTTPS) from the same server.tls as gRPC, with the
// same rotation: the files are re-read at most every refresh_interval_s
// when a handshake comes, and a changed certificate, key or client CA
// applies to new connections; files that do not check out (CheckTlsFiles)
// leave the last good ones in place, with an error in the log. Install()
// sets up the server's SSL_CTX (cpp-httplib's); each handshake then takes
// the current context. Thread-safe: handshakes run on the HTTP threads.
class HttpsContext {
 public:
  // FAILED_PRECONDITION as CheckTlsFiles when the files do not serve.
  static absl::StatusOr<std::shared_ptr<HttpsContext>> Create(const TlsConfig& tls);
  ~HttpsContext();

  // Configures `ctx` (the listener's) to hand each handshake to this object.
  // `this` must outlive the listener.
  bool Install(SSL_CTX& ctx);

 private:
  explicit HttpsContext(const TlsConfig& tls) : tls_(tls) {}
  // Builds a context from the files; null with the reason in *error.
  SSL_CTX* Build(std::string* error) const;
  // The context for a handshake starting now, re-read when due.
  SSL_CTX* Current();
  static int OnClientHello(SSL* ssl, int* alert, void* arg);

  const TlsConfig tls_;
  std::mutex mu_;
  SSL_CTX* current_ = nullptr;  // guarded by mu_; owned (one reference)
  std::string stamp_;           // guarded by mu_: the files' sizes and times
  std::chrono::steady_clock::time_point checked_{};  // guarded by mu_
};

// The subject CN and DNS/URI subject alternative names of the client
// certificate a TLS connection verified; empty without one.
std::vector<std::string> PeerCertificateNames(const SSL* ssl);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_TLS_H_
