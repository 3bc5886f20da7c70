// TLS and mutual TLS on the real daemon's gRPC port, with certificates made
// by openssl for each run (make_certs.sh): plaintext clients are refused,
// client certificates are required and verified, a certificate can stand
// for a tenant, bad files are reported by field, and a rotated server
// certificate applies to new connections after SIGHUP without a restart.

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <httplib.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "inference/grpc_service.grpc.pb.h"
#include "integration/daemon_process.h"

namespace fairserve {
namespace {

using namespace testing_util;
using ::testing::HasSubstr;

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // The HTTPS client writes through OpenSSL, which does not ask for
    // MSG_NOSIGNAL: a server that refuses the handshake must fail the call,
    // not kill this process.
    signal(SIGPIPE, SIG_IGN);
    certs_ = new std::string("/tmp/fairserve-certs-" + std::to_string(getpid()));
    std::string cmd = std::string(SOURCE_DIR) + "/tests/integration/make_certs.sh " + *certs_;
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*certs_);
    delete certs_;
  }
  static std::string Cert(const std::string& name) { return *certs_ + "/" + name; }

  // The test config with server.tls (`tls_yaml`, inside the server map) and
  // tenant acme also known by its client certificate.
  static std::string Config(const std::string& tls_yaml, bool cert_identity = false) {
    std::string config = TestConfigYaml();
    std::string server_end = "drain_timeout_s: 10}";
    config.replace(config.find(server_end), server_end.size(),
                   "drain_timeout_s: 10, tls: {" + tls_yaml + "}}");
    if (cert_identity) {
      std::string acme = "  - id: acme\n";
      config.replace(config.find(acme), acme.size(),
                     acme + "    client_cert_names: [acme-client]\n");
    }
    return config;
  }
  static std::string ServerTls(const std::string& server = "server") {
    return "cert_file: " + Cert(server + ".crt") + ", key_file: " + Cert(server + ".key");
  }

  // A channel that trusts `ca` and presents `client` (a make_certs.sh name)
  // when not empty.
  static std::shared_ptr<grpc::Channel> Channel(const DaemonProcess& d, const std::string& ca,
                                                const std::string& client = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Read(Cert(ca + ".crt"));
    if (!client.empty()) {
      o.pem_private_key = Read(Cert(client + ".key"));
      o.pem_cert_chain = Read(Cert(client + ".crt"));
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(d.grpc_address(), grpc::SslCredentials(o), args);
  }
  static grpc::Status Infer(const std::shared_ptr<grpc::Channel>& channel, const std::string& key,
                            const std::string& model = "add_one") {
    auto stub = inference::GRPCInferenceService::NewStub(channel);
    grpc::ClientContext ctx;
    if (!key.empty()) ctx.AddMetadata("x-api-key", key);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    inference::ModelInferResponse resp;
    const int64_t width = model == "mlp_large" ? 1024 : 16;
    return stub->ModelInfer(
        &ctx, FloatRequest(model, std::vector<float>(width), {1, width}), &resp);
  }

  // An HTTPS client of the daemon's HTTP port that trusts `ca` and
  // presents `client` when not empty.
  static std::unique_ptr<httplib::SSLClient> Https(const DaemonProcess& d, const std::string& ca,
                                                   const std::string& client = "") {
    auto c = client.empty() ? std::make_unique<httplib::SSLClient>("localhost", d.http_port())
                            : std::make_unique<httplib::SSLClient>(
                                  "localhost", d.http_port(), Cert(client + ".crt"),
                                  Cert(client + ".key"));
    c->set_ca_cert_path(Cert(ca + ".crt").c_str());
    c->enable_server_certificate_verification(true);
    c->set_connection_timeout(5);
    c->set_read_timeout(10);
    return c;
  }
  // GET `path` with `key` (none when empty); -1 when no answer came.
  static int HttpsGet(httplib::SSLClient& c, const std::string& path, const std::string& key) {
    httplib::Headers h;
    if (!key.empty()) h.emplace("x-api-key", key);
    httplib::Result r = c.Get(path.c_str(), h);
    return r ? r->status : -1;
  }

  static std::string* certs_;
};

std::string* TlsTest::certs_ = nullptr;

TEST_F(TlsTest, ServerTlsServesEncryptedAndRefusesPlaintext) {
  DaemonProcess d(Config(ServerTls()));
  ASSERT_TRUE(d.serving()) << d.Log();
  EXPECT_TRUE(Infer(Channel(d, "ca"), kAcmeKey).ok());
  // A client that does not trust the server's CA cannot connect.
  EXPECT_EQ(Infer(Channel(d, "ca2"), kAcmeKey).error_code(), grpc::StatusCode::UNAVAILABLE);
  // Plaintext never reaches the service.
  EXPECT_FALSE(Client(d).Infer(kAcmeKey).ok());
  EXPECT_THAT(d.Log(), HasSubstr("gRPC TLS: certificate /CN=localhost, valid until"));
}

// server.tls covers the HTTP port too: the REST API, probes and metrics are
// HTTPS only, so an API key never crosses the network in clear text.
TEST_F(TlsTest, HttpPortServesHttpsOnly) {
  DaemonProcess d(Config(ServerTls()));
  ASSERT_TRUE(d.serving()) << d.Log();
  auto https = Https(d, "ca");
  EXPECT_EQ(HttpsGet(*https, "/v2/models/add_one/ready", kAcmeKey), 200);
  EXPECT_EQ(HttpsGet(*https, "/v2/models/add_one/ready", "wrong"), 401);
  EXPECT_EQ(HttpsGet(*https, "/readyz", ""), 200);
  std::string body = R"({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 16],
                         "data": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]}]})";
  httplib::Result infer = https->Post("/v2/models/add_one/infer",
                                      httplib::Headers{{"x-api-key", kAcmeKey}}, body,
                                      "application/json");
  ASSERT_TRUE(infer) << httplib::to_string(infer.error());
  EXPECT_EQ(infer->status, 200) << infer->body;
  EXPECT_THAT(infer->body, HasSubstr("\"data\":[1.0,2.0,3.0"));
  // A client that does not trust the server's CA does not get through.
  EXPECT_EQ(HttpsGet(*Https(d, "ca2"), "/readyz", ""), -1);
  // Plain HTTP on the same port gets no answer.
  httplib::Client plain("127.0.0.1", d.http_port());
  plain.set_connection_timeout(5);
  plain.set_read_timeout(5);
  httplib::Result r = plain.Get("/v2/models/add_one/ready",
                                httplib::Headers{{"x-api-key", kAcmeKey}});
  EXPECT_TRUE(!r || r->status == 400) << (r ? r->body : "");
  EXPECT_THAT(d.Log(), HasSubstr("HTTP port serves HTTPS only"));
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

TEST_F(TlsTest, HttpsWithClientCertificates) {
  DaemonProcess d(Config(ServerTls() + ", client_ca_file: " + Cert("ca.crt"), true));
  ASSERT_TRUE(d.serving()) << d.Log();
  EXPECT_EQ(HttpsGet(*Https(d, "ca"), "/readyz", ""), -1) << "no client certificate";
  EXPECT_EQ(HttpsGet(*Https(d, "ca", "client-rogue"), "/readyz", ""), -1) << "untrusted issuer";
  // acme's certificate stands for acme without a key (mlp_large: acme only).
  auto acme = Https(d, "ca", "client-acme");
  EXPECT_EQ(HttpsGet(*acme, "/v2/models/mlp_large/ready", ""), 200);
  EXPECT_EQ(HttpsGet(*acme, "/v2/models/mlp_large/ready", kGlobexKey), 403);  // the key decides
  EXPECT_EQ(HttpsGet(*Https(d, "ca", "client-stranger"), "/v2/models/add_one/ready", ""), 401);
  EXPECT_EQ(HttpsGet(*Https(d, "ca", "client-stranger"), "/v2/models/add_one/ready", kGlobexKey),
            200);
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

TEST_F(TlsTest, MutualTlsRequiresATrustedClientCertificate) {
  DaemonProcess d(Config(ServerTls() + ", client_ca_file: " + Cert("ca.crt"), true));
  ASSERT_TRUE(d.serving()) << d.Log();
  EXPECT_FALSE(Infer(Channel(d, "ca"), kAcmeKey).ok()) << "no client certificate";
  EXPECT_FALSE(Infer(Channel(d, "ca", "client-rogue"), kAcmeKey).ok()) << "untrusted issuer";
  EXPECT_TRUE(Infer(Channel(d, "ca", "client-stranger"), kGlobexKey).ok());
  // The certificate stands for acme when no key is sent (mlp_large: acme only).
  EXPECT_TRUE(Infer(Channel(d, "ca", "client-acme"), "", "add_one").ok());
  grpc::Status s = Infer(Channel(d, "ca", "client-acme"), "", "mlp_large");
  EXPECT_TRUE(s.ok()) << s.error_message();
  // A key, when sent, decides: globex's key on acme's certificate is globex.
  grpc::Status as_globex = Infer(Channel(d, "ca", "client-acme"), kGlobexKey, "mlp_large");
  EXPECT_EQ(as_globex.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // A verified certificate that names no tenant is not enough.
  grpc::Status stranger = Infer(Channel(d, "ca", "client-stranger"), "");
  EXPECT_EQ(stranger.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(stranger.error_message(), HasSubstr("client_cert_names"));
}

// A tenant known by its certificate used to be counted as a failed login on
// every RepositoryIndex (the admin check ran first and saw no key), so after
// the throttle's burst (20) even its inference was refused.
TEST_F(TlsTest, CertificateTenantIsNeverCountedAsAFailedLogin) {
  DaemonProcess d(Config(ServerTls() + ", client_ca_file: " + Cert("ca.crt"), true));
  ASSERT_TRUE(d.serving()) << d.Log();
  auto channel = Channel(d, "ca", "client-acme");
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  for (int i = 0; i < 40; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    inference::RepositoryIndexRequest req;
    inference::RepositoryIndexResponse resp;
    grpc::Status s = stub->RepositoryIndex(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << "call " << i << ": " << s.error_message();
    EXPECT_GT(resp.models_size(), 0);
  }
  EXPECT_TRUE(Infer(channel, "", "add_one").ok());
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

TEST_F(TlsTest, BadFilesAreReportedByField) {
  DaemonProcess mismatched(Config("cert_file: " + Cert("server.crt") + ", key_file: " +
                                  Cert("server2.key")));
  EXPECT_FALSE(mismatched.serving());
  EXPECT_EQ(mismatched.WaitExit(30), 1);
  EXPECT_THAT(mismatched.Log(), HasSubstr("server.tls.key_file: " + Cert("server2.key") +
                                          ": does not belong to the certificate in"));
  DaemonProcess missing(Config("cert_file: /nonexistent.crt, key_file: " + Cert("server.key")));
  EXPECT_FALSE(missing.serving());
  EXPECT_THAT(missing.Log(), HasSubstr("server.tls.cert_file: /nonexistent.crt: cannot be read"));
}

TEST_F(TlsTest, RotatedCertificateAppliesAfterSighupWithoutRestart) {
  // The daemon reads its certificate from files it owns, which we replace.
  std::string dir = *certs_ + "/live";
  std::filesystem::create_directories(dir);
  for (const char* ext : {".crt", ".key"}) {
    std::filesystem::copy_file(Cert(std::string("server") + ext), dir + "/tls" + ext,
                               std::filesystem::copy_options::overwrite_existing);
  }
  DaemonProcess d(Config("cert_file: " + dir + "/tls.crt, key_file: " + dir + "/tls.key"));
  ASSERT_TRUE(d.serving()) << d.Log();
  EXPECT_TRUE(Infer(Channel(d, "ca"), kAcmeKey).ok());
  EXPECT_FALSE(Infer(Channel(d, "ca2"), kAcmeKey).ok());
  EXPECT_EQ(HttpsGet(*Https(d, "ca"), "/readyz", ""), 200);

  // Rotate to a certificate from the second CA, the way cert managers do:
  // write aside, rename over.
  for (const char* ext : {".key", ".crt"}) {
    std::filesystem::copy_file(Cert(std::string("server2") + ext), dir + "/new" + ext);
    std::filesystem::rename(dir + "/new" + ext, dir + "/tls" + ext);
  }
  kill(d.pid(), SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return Infer(Channel(d, "ca2"), kAcmeKey).ok(); }, 15)) << d.Log();
  EXPECT_FALSE(Infer(Channel(d, "ca"), kAcmeKey).ok()) << "still serving the old certificate";
  // The HTTPS port rotates with it.
  EXPECT_TRUE(WaitFor([&] { return HttpsGet(*Https(d, "ca2"), "/readyz", "") == 200; }, 15))
      << d.Log();
  EXPECT_EQ(HttpsGet(*Https(d, "ca"), "/readyz", ""), -1) << "HTTPS kept the old certificate";
  EXPECT_THAT(d.Log(), HasSubstr("config reloaded (SIGHUP)"));
  EXPECT_EQ(d.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace fairserve
