#include "fairserve/server/tls.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

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

namespace {

// What changes when a file is replaced: size and modification time of each.
std::string FilesStamp(const TlsConfig& tls) {
  std::string out;
  for (const std::string* f : {&tls.cert_file, &tls.key_file, &tls.client_ca_file}) {
    struct stat st {};
    if (f->empty() || stat(f->c_str(), &st) != 0) {
      absl::StrAppend(&out, "-;");
      continue;
    }
    absl::StrAppend(&out, st.st_size, ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ";");
  }
  return out;
}

int VerifyMode(const TlsConfig& tls) {
  if (!tls.mutual()) return SSL_VERIFY_NONE;
  return SSL_VERIFY_PEER | (tls.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
}

}  // namespace

absl::StatusOr<std::shared_ptr<HttpsContext>> HttpsContext::Create(const TlsConfig& tls) {
  absl::StatusOr<std::string> ok = CheckTlsFiles(tls);
  if (!ok.ok()) return ok.status();
  std::shared_ptr<HttpsContext> self(new HttpsContext(tls));
  std::string error;
  self->current_ = self->Build(&error);
  if (self->current_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("server.tls (HTTP port): ", error));
  }
  self->stamp_ = FilesStamp(tls);
  self->checked_ = std::chrono::steady_clock::now();
  return self;
}

HttpsContext::~HttpsContext() { SSL_CTX_free(current_); }

SSL_CTX* HttpsContext::Build(std::string* error) const {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  auto fail = [&](const std::string& what) {
    char buf[256] = {};
    ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
    ERR_clear_error();
    *error = absl::StrCat(what, ": ", buf);
    SSL_CTX_free(ctx);
    return nullptr;
  };
  if (ctx == nullptr) return fail("cannot create a TLS context");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx, tls_.cert_file.c_str()) != 1) {
    return fail(absl::StrCat("server.tls.cert_file: ", tls_.cert_file));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, tls_.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return fail(absl::StrCat("server.tls.key_file: ", tls_.key_file));
  }
  if (tls_.mutual()) {
    if (SSL_CTX_load_verify_locations(ctx, tls_.client_ca_file.c_str(), nullptr) != 1) {
      return fail(absl::StrCat("server.tls.client_ca_file: ", tls_.client_ca_file));
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls_.client_ca_file.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
  }
  SSL_CTX_set_verify(ctx, VerifyMode(tls_), nullptr);
  return ctx;
}

SSL_CTX* HttpsContext::Current() {
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (now - checked_ >= std::chrono::seconds(tls_.refresh_interval_s)) {
    checked_ = now;
    std::string stamp = FilesStamp(tls_);
    if (stamp != stamp_) {
      stamp_ = stamp;
      absl::StatusOr<std::string> checked = CheckTlsFiles(tls_);
      std::string error = checked.ok() ? "" : std::string(checked.status().message());
      SSL_CTX* next = checked.ok() ? Build(&error) : nullptr;
      if (next == nullptr) {
        spdlog::error("HTTPS: the TLS files changed but do not serve; keeping the previous "
                      "ones: {}", error);
      } else {
        SSL_CTX_free(current_);
        current_ = next;
        spdlog::info("HTTPS: TLS files re-read: {}", *checked);
      }
    }
  }
  SSL_CTX_up_ref(current_);
  return current_;
}

int HttpsContext::OnClientHello(SSL* ssl, int* /*alert*/, void* arg) {
  auto* self = static_cast<HttpsContext*>(arg);
  SSL_CTX* ctx = self->Current();
  // The connection takes the current certificate and client CAs; the
  // verify mode is per connection and set again from the same config.
  SSL_set_SSL_CTX(ssl, ctx);
  SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), nullptr);
  SSL_set_client_CA_list(ssl, SSL_dup_CA_list(SSL_CTX_get_client_CA_list(ctx)));
  SSL_CTX_free(ctx);  // SSL_set_SSL_CTX holds its own reference
  return SSL_CLIENT_HELLO_SUCCESS;
}

bool HttpsContext::Install(SSL_CTX& ctx) {
  // The listener's own context holds the files as Create() checked them;
  // each handshake switches to whatever is current then.
  bool ok = SSL_CTX_use_certificate_chain_file(&ctx, tls_.cert_file.c_str()) == 1 &&
            SSL_CTX_use_PrivateKey_file(&ctx, tls_.key_file.c_str(), SSL_FILETYPE_PEM) == 1;
  if (!ok) return false;
  SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(&ctx, VerifyMode(tls_), nullptr);
  SSL_CTX_set_client_hello_cb(&ctx, &HttpsContext::OnClientHello, this);
  return true;
}

std::vector<std::string> PeerCertificateNames(const SSL* ssl) {
  std::vector<std::string> names;
  if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return names;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return names;
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) > 0) {
    names.emplace_back(cn);
  }
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
    if (n->type == GEN_DNS || n->type == GEN_URI) {
      const ASN1_IA5STRING* v = n->type == GEN_DNS ? n->d.dNSName : n->d.uniformResourceIdentifier;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(v)),
                         static_cast<size_t>(ASN1_STRING_length(v)));
    }
  }
  GENERAL_NAMES_free(sans);
  return names;
}

}  // namespace fairserve
