#include "fairserve/server/tls.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"

namespace fairserve {
namespace {

struct BioCloser {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Closer {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyCloser {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

absl::Status Problem(const char* field, const std::string& file, const std::string& what) {
  ERR_clear_error();
  return absl::FailedPreconditionError(
      absl::StrCat("server.tls.", field, ": ", file, ": ", what));
}

std::string Subject(X509* cert) {
  char buf[256] = {};
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf) - 1);
  return buf;
}

std::string NotAfter(X509* cert) {
  std::unique_ptr<BIO, BioCloser> out(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(out.get(), X509_get0_notAfter(cert));
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, n);
}

}  // namespace

absl::StatusOr<std::string> CheckTlsFiles(const TlsConfig& tls) {
  std::unique_ptr<BIO, BioCloser> cert_bio(BIO_new_file(tls.cert_file.c_str(), "r"));
  if (!cert_bio) return Problem("cert_file", tls.cert_file, "cannot be read");
  std::unique_ptr<X509, X509Closer> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return Problem("cert_file", tls.cert_file, "holds no PEM certificate (BEGIN CERTIFICATE)");
  }
  std::unique_ptr<BIO, BioCloser> key_bio(BIO_new_file(tls.key_file.c_str(), "r"));
  if (!key_bio) return Problem("key_file", tls.key_file, "cannot be read");
  std::unique_ptr<EVP_PKEY, KeyCloser> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return Problem("key_file", tls.key_file,
                   "holds no unencrypted PEM private key (encrypted keys are not supported)");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return Problem("key_file", tls.key_file,
                   absl::StrCat("does not belong to the certificate in ", tls.cert_file));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    return Problem("cert_file", tls.cert_file,
                   absl::StrCat("expired on ", NotAfter(cert.get()), "; renew it"));
  }
  std::string line = absl::StrCat("certificate ", Subject(cert.get()), ", valid until ",
                                  NotAfter(cert.get()));
  if (tls.mutual()) {
    std::unique_ptr<BIO, BioCloser> ca_bio(BIO_new_file(tls.client_ca_file.c_str(), "r"));
    if (!ca_bio) return Problem("client_ca_file", tls.client_ca_file, "cannot be read");
    std::unique_ptr<X509, X509Closer> ca(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr));
    if (!ca) {
      return Problem("client_ca_file", tls.client_ca_file, "holds no PEM certificate");
    }
    absl::StrAppend(&line, "; client certificates ",
                    tls.require_client_cert ? "required" : "verified when presented",
                    ", issued by ", Subject(ca.get()));
  }
  return line;
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsConfig& tls) {
  auto interval = static_cast<unsigned int>(tls.refresh_interval_s);
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file, tls.cert_file, tls.client_ca_file, interval);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (tls.mutual()) {
    options.watch_root_certs();
    options.set_cert_request_type(tls.require_client_cert
                                      ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                      : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace fairserve
