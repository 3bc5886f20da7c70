#include "fairserve/config/config.h"
#include "fairserve/config/partitions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "testing/test_dir.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;

constexpr char kHashA[] = "sha256:8676d15d94dabdd1283e6c407e2bb08a7b5c13b4e3667d4795c17172e080a3d4";
constexpr char kHashB[] = "sha256:2e2764ef486a4aa498e60ef5ed6b88ce7dd8bfc8b3309c5c15950a5c3d1a8c20";

absl::StatusOr<std::shared_ptr<const Config>> Parse(const std::string& text) {
  return ParseConfig(text, "test.yaml", "/etc/fairserve");
}

std::string Error(const std::string& text) {
  auto c = Parse(text);
  EXPECT_FALSE(c.ok()) << "config should have been rejected:\n" << text;
  return c.ok() ? "" : std::string(c.status().message());
}

std::string Tenant(const std::string& extra = "", const char* hash = kHashA,
                   const char* id = "acme") {
  return std::string("  - id: ") + id + "\n    api_keys: [\"" + hash + "\"]\n" + extra;
}

TEST(ConfigTest, ParsesFullConfig) {
  auto c = Parse(std::string(R"(
server: {grpc_port: 9001, http_port: 0, data_dir: data, drain_timeout_s: 5}
model_repository: models
scheduler: {policy: fifo, workers: 2}
devices: [{name: cpu, memory_budget: 2GiB}]
tenants:
)") + Tenant("    weight: 3\n    rate_limit: {requests_per_minute: 600, burst: 5}\n"
             "    max_inflight: 8\n    memory_limit: 512MiB\n    models: [mlp]\n") +
                   Tenant("", kHashB, "globex") + R"(
pricing:
  currency: EUR
  per_compute_second: 0.5
  tiers: [{above_compute_seconds: 100, per_compute_second: 0.25}]
  tenants: {globex: {per_1k_requests: 1.0}}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  const Config& config = **c;
  EXPECT_EQ(config.server.grpc_port, 9001);
  EXPECT_EQ(config.server.http_port, 0);
  EXPECT_EQ(config.server.data_dir, "/etc/fairserve/data");
  EXPECT_EQ(config.model_repository, "/etc/fairserve/models");
  EXPECT_EQ(config.scheduler.policy, SchedulingPolicy::kFifo);
  EXPECT_EQ(config.scheduler.workers, 2);
  ASSERT_EQ(config.devices.size(), 1u);
  EXPECT_EQ(config.devices[0].memory_budget, 2ull << 30);
  ASSERT_EQ(config.tenants.size(), 2u);
  const TenantConfig& acme = config.tenants[0];
  EXPECT_EQ(acme.weight, 3);
  EXPECT_DOUBLE_EQ(acme.rate_limit.requests_per_second, 10.0);
  EXPECT_EQ(acme.rate_limit.burst, 5);
  EXPECT_EQ(acme.max_inflight, 8);
  EXPECT_EQ(acme.memory_limit, 512ull << 20);
  EXPECT_TRUE(acme.AllowsModel("mlp"));
  EXPECT_FALSE(acme.AllowsModel("add_one"));
  EXPECT_TRUE(config.tenants[1].AllowsModel("anything"));  // default "*"
  EXPECT_EQ(config.pricing.currency, "EUR");
  EXPECT_EQ(config.pricing.defaults.per_compute_second, 0.5);
  EXPECT_EQ(config.pricing.defaults.per_1k_requests, 0.20);
  ASSERT_EQ(config.pricing.defaults.tiers.size(), 1u);
  EXPECT_EQ(config.pricing.defaults.tiers[0].per_compute_second, 0.25);
  EXPECT_EQ(config.pricing.For("globex").per_1k_requests, 1.0);
  EXPECT_EQ(config.pricing.For("globex").per_compute_second, 0.5);  // from the defaults
  EXPECT_EQ(config.pricing.For("acme").per_1k_requests, 0.20);
}

TEST(ConfigTest, PricingErrors) {
  EXPECT_THAT(Error("tenants:\n" + Tenant() + "pricing: {tenants: {initech: {per_compute_second: 1}}}\n"),
              HasSubstr("pricing.tenants.initech: prices for a tenant that is not configured"));
  EXPECT_THAT(Error("tenants:\n" + Tenant() +
                    "pricing: {tiers: [{above_compute_seconds: 10, per_compute_second: 1}, "
                    "{above_compute_seconds: 5, per_compute_second: 1}]}\n"),
              HasSubstr("ascending"));
  EXPECT_THAT(Error("tenants:\n" + Tenant() + "pricing: {per_1k_requests: -1}\n"),
              HasSubstr("pricing.per_1k_requests: must be between 0 and 1000000000, got -1"));
}

TEST(ConfigTest, DefaultsAreSane) {
  auto c = Parse("tenants:\n" + Tenant());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->server.grpc_port, 8001);
  EXPECT_EQ((*c)->scheduler.policy, SchedulingPolicy::kFair);
  EXPECT_EQ((*c)->server.log_level, LogLevel::kInfo);
  EXPECT_EQ((*c)->server.status_page, StatusPageMode::kLoopback);
  ASSERT_EQ((*c)->devices.size(), 1u);
  EXPECT_EQ((*c)->devices[0].name, "cpu");
  EXPECT_EQ((*c)->tenants[0].weight, 1.0);
}

TEST(ConfigTest, KubernetesQuantitiesAreCheckedAsTheManifestsTakeThem) {
  for (const char* cpu : {"4", "500m", "1.5", "2k"}) {
    for (const char* memory : {"16Gi", "512Mi", "1000000", "1.5G", "64Ki"}) {
      auto c = Parse("tenants:\n" + Tenant(std::string("    kubernetes: {cpu: \"") + cpu +
                                            "\", memory: \"" + memory + "\"}\n"));
      ASSERT_TRUE(c.ok()) << cpu << " " << memory << ": " << c.status();
      EXPECT_EQ((*c)->tenants[0].kubernetes.cpu, cpu);
      EXPECT_EQ((*c)->tenants[0].kubernetes.memory, memory);
    }
  }
  for (const char* bad : {"", "4 cores", "1.", ".5", "16GB", "16gi", "-1", "1e3", "0x10", "5mm"}) {
    std::string e = Error("tenants:\n" + Tenant(std::string("    kubernetes: {cpu: \"") + bad +
                                                "\"}\n"));
    EXPECT_THAT(e, HasSubstr("test.yaml:4:17: tenants[0].kubernetes.cpu: not a Kubernetes "
                             "quantity (e.g. 4 or 500m)")) << "'" << bad << "'";
    e = Error("tenants:\n" + Tenant(std::string("    kubernetes: {memory: \"") + bad + "\"}\n"));
    EXPECT_THAT(e, HasSubstr("tenants[0].kubernetes.memory: not a Kubernetes quantity (e.g. 16Gi)"))
        << "'" << bad << "'";
  }
}

TEST(ConfigTest, UnknownKeyNamesKeyAndLine) {
  std::string e = Error("tenants:\n" + Tenant("    wieght: 2\n"));
  EXPECT_THAT(e, HasSubstr("test.yaml:4:5: tenants[0].wieght: unknown key"));
  EXPECT_THAT(e, HasSubstr("weight"));  // lists what is allowed
}

TEST(ConfigTest, UnknownTopLevelKey) {
  EXPECT_THAT(Error("tenants:\n" + Tenant() + "modle_repository: x\n"),
              HasSubstr("test.yaml:4:1: modle_repository: unknown key"));
}

TEST(ConfigTest, WrongTypesAndRanges) {
  EXPECT_THAT(Error("tenants:\n" + Tenant("    weight: heavy\n")),
              HasSubstr("tenants[0].weight: expected a number, got 'heavy'"));
  EXPECT_THAT(Error("tenants:\n" + Tenant("    weight: -1\n")),
              HasSubstr("tenants[0].weight: must be between 0 and 1000000, got -1"));
  EXPECT_THAT(Error("tenants:\n" + Tenant("    max_inflight: -3\n")),
              HasSubstr("tenants[0].max_inflight: must be between 0 and 1000000000 (0 = unlimited), got -3"));
  EXPECT_THAT(Error("tenants:\n" + Tenant("    rate_limit: {requests_per_second: -1}\n")),
              HasSubstr("requests_per_second: must be between 0 and 1000000000 (0 = unlimited), got -1"));
  EXPECT_THAT(Error("server: {grpc_port: 70000}\ntenants:\n" + Tenant()),
              HasSubstr("server.grpc_port: must be between 0 and 65535 (0 picks a free port), got 70000"));
  EXPECT_THAT(Error("scheduler: {policy: lottery}\ntenants:\n" + Tenant()),
              HasSubstr("test.yaml:1:21: scheduler.policy: unknown value 'lottery'; use fair, fifo"));
  EXPECT_THAT(Error("tenants:\n" + Tenant("    memory_limit: lots\n")),
              HasSubstr("tenants[0].memory_limit: 'lots' is not a byte size"));
}

TEST(ConfigTest, RateLimitBackend) {
  auto c = Parse("rate_limit_backend: {type: redis, address: \"redis.svc:6380\", key_prefix: "
                 "\"prod:\", timeout_ms: 20, on_failure: deny, replicas: 3}\ntenants:\n" +
                 Tenant());
  ASSERT_TRUE(c.ok()) << c.status();
  const RateLimitBackendConfig& b = (*c)->rate_limit_backend;
  EXPECT_EQ(b.type, RateLimitBackendType::kRedis);
  EXPECT_EQ(b.address, "redis.svc:6380");
  EXPECT_EQ(b.key_prefix, "prod:");
  EXPECT_EQ(b.timeout_ms, 20);
  EXPECT_EQ(b.on_failure, FailurePolicy::kDeny);
  EXPECT_EQ(b.replicas, 3);
  EXPECT_EQ((*Parse("tenants:\n" + Tenant()))->rate_limit_backend.type, RateLimitBackendType::kLocal);
  EXPECT_TRUE(Parse("rate_limit_backend: {type: redis, address: \"unix:/run/redis.sock\"}\n"
                    "tenants:\n" + Tenant()).ok());

  std::string e = Error(
      "rate_limit_backend: {type: memcached, address: \"redis\", timeout_ms: 0, "
      "on_failure: maybe, replicas: 0}\ntenants:\n" + Tenant());
  EXPECT_THAT(e, HasSubstr("test.yaml:1:28: rate_limit_backend.type: unknown value "
                           "'memcached'; use local, redis"));
  EXPECT_THAT(e, HasSubstr("rate_limit_backend.address: 'redis' is not \"host:port\""));
  EXPECT_THAT(e, HasSubstr("rate_limit_backend.timeout_ms: must be between 1 and 60000"));
  EXPECT_THAT(e, HasSubstr("rate_limit_backend.on_failure: unknown value 'maybe'; use allow, deny"));
  EXPECT_THAT(e, HasSubstr("rate_limit_backend.replicas: must be between 1 and 10000"));
}

TEST(ConfigTest, GrpcResourceBounds) {
  auto c = Parse(
      "server: {grpc_memory_limit: 256MiB, max_concurrent_streams: 64, stream_max_in_flight: 8}"
      "\ntenants:\n" +
      Tenant());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->server.grpc_memory_limit, 256ull << 20);
  EXPECT_EQ((*c)->server.max_concurrent_streams, 64);
  EXPECT_EQ((*c)->server.stream_max_in_flight, 8);
  EXPECT_EQ(Config().server.stream_max_in_flight, 64);
  std::string e = Error(
      "server: {grpc_memory_limit: 1MiB, max_concurrent_streams: 0, stream_max_in_flight: 0}"
      "\ntenants:\n" +
      Tenant());
  EXPECT_THAT(e, HasSubstr("server.grpc_memory_limit: must be between 64MiB and 1TiB"));
  EXPECT_THAT(e, HasSubstr("server.max_concurrent_streams: must be between 1 and 1000000"));
  EXPECT_THAT(e, HasSubstr("server.stream_max_in_flight: must be between 1 and 100000"));
}

TEST(ConfigTest, TlsAndCertificateIdentities) {
  auto c = Parse("server: {tls: {cert_file: tls/server.crt, key_file: /abs/server.key, "
                 "client_ca_file: ca.crt, require_client_cert: false}}\ntenants:\n" +
                 Tenant("    client_cert_names: [acme-client, acme.example.com]\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  const TlsConfig& tls = (*c)->server.tls;
  EXPECT_EQ(tls.cert_file, "/etc/fairserve/tls/server.crt");  // relative to the config file
  EXPECT_EQ(tls.key_file, "/abs/server.key");
  EXPECT_TRUE(tls.mutual());
  EXPECT_FALSE(tls.require_client_cert);
  EXPECT_EQ((*c)->tenants[0].client_cert_names.size(), 2u);
  // A tenant known only by its certificate needs no key.
  EXPECT_TRUE(Parse("server: {tls: {cert_file: a, key_file: b, client_ca_file: c}}\ntenants:\n"
                    "  - id: certonly\n    client_cert_names: [c1]\n").ok());

  EXPECT_THAT(Error("server: {tls: {cert_file: a}}\ntenants:\n" + Tenant()),
              HasSubstr("server.tls: give both cert_file and key_file"));
  EXPECT_THAT(Error("tenants:\n" + Tenant("    client_cert_names: [x]\n")),
              HasSubstr("client certificates are only checked with server.tls.client_ca_file"));
  EXPECT_THAT(Error("server: {tls: {cert_file: a, key_file: b, client_ca_file: c}}\ntenants:\n" +
                    Tenant("    client_cert_names: [x]\n") +
                    Tenant("    client_cert_names: [x]\n", kHashB, "globex")),
              HasSubstr("certificate name 'x' belongs to another tenant too"));
  EXPECT_THAT(Error("tenants:\n  - id: nokey\n"),
              HasSubstr("api_keys"));
}

TEST(ConfigTest, RejectsBadKeyHashes) {
  EXPECT_THAT(Error("tenants:\n" + Tenant("", "acme-demo-key")),
              HasSubstr("tenants[0].api_keys[0]: must be \"sha256:"));
  EXPECT_THAT(Error("tenants:\n" + Tenant("", "sha256:ABCDEF")), HasSubstr("fairctl hash-key"));
}

TEST(ConfigTest, DuplicateIdsAndKeys) {
  std::string e = Error("tenants:\n" + Tenant() + Tenant("", kHashA, "acme"));
  EXPECT_THAT(e, HasSubstr("tenant id 'acme' is used twice"));
  EXPECT_THAT(e, HasSubstr("belongs to another tenant too"));
}

TEST(ConfigTest, SharesOver100Percent) {
  EXPECT_THAT(Error("tenants:\n" + Tenant("    memory_share_percent: 70\n") +
                    Tenant("    memory_share_percent: 40\n", kHashB, "globex")),
              HasSubstr("over 100%"));
}

TEST(ConfigTest, ReportsEveryProblemAtOnce) {
  std::string e = Error("tenants:\n" + Tenant("    weight: 0\n    max_queue: 0\n    colour: red\n"));
  EXPECT_THAT(e, HasSubstr("weight"));
  EXPECT_THAT(e, HasSubstr("max_queue"));
  EXPECT_THAT(e, HasSubstr("colour"));
}

TEST(ConfigTest, MissingTenantsAndSyntaxErrors) {
  EXPECT_THAT(Error("server: {grpc_port: 1}\n"), HasSubstr("tenants: is required"));
  EXPECT_THAT(Error("tenants: [\n"), HasSubstr("test.yaml:2"));
  EXPECT_THAT(Error(""), HasSubstr("expected a mapping"));
}

TEST(ConfigTest, LoadsFileAndResolvesRelativePaths) {
  std::filesystem::path dir = testing_util::MakeTestDir("config");
  std::string path = (dir / "fairserve.yaml").string();
  std::ofstream(path) << "model_repository: repo\ntenants:\n" << Tenant();
  auto c = LoadConfigFile(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->model_repository, (dir / "repo").lexically_normal());
  EXPECT_EQ(LoadConfigFile((dir / "does-not-exist.yaml").string()).status().code(),
            absl::StatusCode::kNotFound);
  testing_util::RemoveTestDir(dir);
}

TEST(ConfigTest, TenantModelsMustExistInTheRepository) {
  auto c = Parse("tenants:\n" + Tenant("    models: [mlp, mpl]\n"));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(CheckTenantModels(**c, {"mlp", "mpl"}).ok());
  absl::Status s = CheckTenantModels(**c, {"mlp", "add_one"});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("tenants[0] (acme).models: unknown model 'mpl'"));

}

// A second api_keys: (say, added to revoke a leaked key) used to be dropped
// silently, the first one winning. Duplicates are refused at any depth.
TEST(ConfigTest, DuplicateKeysAtAnyLevel) {
  EXPECT_THAT(Error("tenants:\n" + Tenant(std::string("    api_keys: [\"") + kHashB + "\"]\n")),
              HasSubstr("test.yaml:4:5: tenants[0].api_keys: key given twice (first at line 3)"));
  EXPECT_THAT(Error("server: {grpc_port: 1}\nserver: {grpc_port: 2}\ntenants:\n" + Tenant()),
              HasSubstr("test.yaml:2:1: server: key given twice"));
  EXPECT_THAT(Error("tenants:\n" + Tenant("    rate_limit: {burst: 1, burst: 2}\n")),
              HasSubstr("tenants[0].rate_limit.burst: key given twice"));
  EXPECT_THAT(Error("tenants:\n" + Tenant() + "pricing: {tenants: {acme: {per_1k_requests: 1, "
                                              "per_1k_requests: 2}}}\n"),
              HasSubstr("pricing.tenants.acme.per_1k_requests: key given twice"));
}

TEST(ConfigTest, NonFiniteAndAbsurdNumbersAreRefused) {
  for (const char* bad : {".inf", "-.inf", ".nan", "1e300"}) {
    SCOPED_TRACE(bad);
    std::string v(bad);
    std::string e = Error("tenants:\n" + Tenant("    rate_limit: {requests_per_second: " + v +
                                                ", burst: " + v + "}\n    weight: " + v +
                                                "\n    model_loads_per_second: " + v + "\n"));
    EXPECT_THAT(e, HasSubstr("requests_per_second: must be"));
    EXPECT_THAT(e, HasSubstr("burst: must be"));
    EXPECT_THAT(e, HasSubstr("weight: must be"));
    EXPECT_THAT(e, HasSubstr("model_loads_per_second: must be"));
    std::string s = Error("server: {drain_timeout_s: " + v + ", auth_failures_per_second: " + v +
                          "}\nscheduler: {max_queue_wait_s: " + v + "}\ntenants:\n" + Tenant() +
                          "pricing: {per_compute_second: " + v + "}\n");
    EXPECT_THAT(s, HasSubstr("server.drain_timeout_s: must be"));
    EXPECT_THAT(s, HasSubstr("server.auth_failures_per_second: must be"));
    EXPECT_THAT(s, HasSubstr("scheduler.max_queue_wait_s: must be"));
    EXPECT_THAT(s, HasSubstr("pricing.per_compute_second: must be"));
  }
  EXPECT_THAT(Error("tenants:\n" + Tenant("    weight: .nan\n")),
              HasSubstr("tenants[0].weight: must be a finite number, got '.nan'"));
  // 1e-9 s would expire every request in its queue.
  EXPECT_THAT(Error("scheduler: {max_queue_wait_s: 1e-9}\ntenants:\n" + Tenant()),
              HasSubstr("scheduler.max_queue_wait_s: must be at least 0.001"));
  EXPECT_THAT(Error("tenants:\n" + Tenant("    max_queue: 99999999999999\n")),
              HasSubstr("tenants[0].max_queue: must be between 1 and 1000000000"));
}

TEST(ConfigTest, EnumerationsAreExactNames) {
  // An empty level used to match by substring and turn logging off.
  EXPECT_THAT(Error("server: {log_level: \"\"}\ntenants:\n" + Tenant()),
              HasSubstr("server.log_level: unknown value ''; use trace, debug, info, warn, error"));
  EXPECT_THAT(Error("server: {log_level: bug}\ntenants:\n" + Tenant()),
              HasSubstr("server.log_level: unknown value 'bug'"));
  EXPECT_THAT(Error("server: {log_format: xml, status_page: public}\ntenants:\n" + Tenant()),
              HasSubstr("server.log_format: unknown value 'xml'; use plain, json, off"));
  EXPECT_THAT(Error("server: {status_page: public}\ntenants:\n" + Tenant()),
              HasSubstr("server.status_page: unknown value 'public'; use loopback, admin, off"));
  auto c = Parse("server: {log_level: warn, log_format: json, status_page: admin}\ntenants:\n" +
                 Tenant());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->server.log_level, LogLevel::kWarn);
  EXPECT_EQ((*c)->server.log_format, LogFormat::kJson);
  EXPECT_EQ((*c)->server.status_page, StatusPageMode::kAdmin);
  EXPECT_EQ(Name(LogLevel::kWarn), "warn");
}

TEST(ConfigTest, AdminKeyMayNotBeATenantKey) {
  std::string e = Error(std::string("server: {admin_api_keys: [\"") + kHashA + "\"]}\ntenants:\n" +
                        Tenant());
  EXPECT_THAT(e, HasSubstr("test.yaml:4:16: tenants[0].api_keys[0]: this key hash is also in "
                           "server.admin_api_keys"));
  EXPECT_THAT(Error(std::string("server: {admin_api_keys: [\"") + kHashB + "\", \"" + kHashB +
                    "\"]}\ntenants:\n" + Tenant()),
              HasSubstr("server.admin_api_keys[1]: this admin key hash is listed twice"));
}

TEST(ConfigTest, MemoryPartitionsMustFitTheBudget) {
  std::string e = Error("devices: [{name: cpu, memory_budget: 1GiB}]\ntenants:\n" +
                        Tenant("    memory_limit: 768MiB\n") +
                        Tenant("    memory_share_percent: 50\n", kHashB, "globex"));
  EXPECT_THAT(e, HasSubstr("tenants[*].memory_limit: tenants' memory partitions"));
  EXPECT_THAT(e, HasSubstr("add up to 1.2 GiB, over devices[0].memory_budget of 1.0 GiB"));
  EXPECT_TRUE(Parse("devices: [{name: cpu, memory_budget: 1GiB}]\ntenants:\n" +
                    Tenant("    memory_limit: 512MiB\n") +
                    Tenant("    memory_share_percent: 50\n", kHashB, "globex"))
                  .ok());
  // Without a budget there is nothing to exceed.
  EXPECT_TRUE(Parse("tenants:\n" + Tenant("    memory_limit: 1TiB\n")).ok());
}

// Every device gets every quota: the partitions must fit each device's
// budget, and the error names the device that is too small.
TEST(ConfigTest, MemoryPartitionsMustFitEveryDevice) {
  std::string e = Error("devices: [{name: cpu, memory_budget: 4GiB}, "
                        "{name: cuda:0, memory_budget: 512MiB}]\ntenants:\n" +
                        Tenant("    memory_limit: 768MiB\n"));
  EXPECT_THAT(e, HasSubstr("add up to 768.0 MiB, over devices[1].memory_budget of 512.0 MiB "
                           "(cuda:0)"));
  EXPECT_THAT(e, ::testing::Not(HasSubstr("devices[0]")));
}

TEST(ConfigTest, DeviceWorkers) {
  auto c = Parse("devices: [{name: cpu, workers: 3}, {name: cuda:0}]\ntenants:\n" + Tenant());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->devices[0].workers, 3);
  EXPECT_EQ((*c)->devices[1].workers, 0);
  EXPECT_THAT(Error("devices: [{name: cuda:0, workers: -1}]\ntenants:\n" + Tenant()),
              HasSubstr("devices[0].workers"));
}

TEST(ConfigTest, OneQuotaFormula) {
  TenantConfig t;
  t.memory_limit = 100;
  EXPECT_EQ(t.MemoryQuota(0), 100u);
  EXPECT_EQ(t.MemoryQuota(1000), 100u);
  t.memory_limit = 0;
  t.memory_share_percent = 25;
  EXPECT_EQ(t.MemoryQuota(1000), 250u);
  EXPECT_EQ(t.MemoryQuota(0), 0u);  // a share of an unlimited device: the shared pool
}

TEST(ConfigTest, MemoryPartitionsSplitTheBudget) {
  auto c = Parse("devices: [{name: cpu, memory_budget: 1GiB}]\ntenants:\n" +
                 Tenant("    memory_limit: 256MiB\n") +
                 Tenant("    memory_share_percent: 25\n", kHashB, "globex"));
  ASSERT_TRUE(c.ok()) << c.status();
  MemoryPartitions p(**c);
  EXPECT_EQ(p.budget(), 1ull << 30);
  EXPECT_EQ(p.Capacity("acme"), 256ull << 20);
  EXPECT_EQ(p.Capacity("globex"), 256ull << 20);
  EXPECT_EQ(p.Capacity(""), 512ull << 20);  // the shared pool: the rest
  EXPECT_EQ(p.reserved(), 512ull << 20);
  EXPECT_EQ(p.PartitionOf("acme"), "acme");
  EXPECT_EQ(p.PartitionOf("initech"), "");  // no quota: the shared pool
  EXPECT_EQ(MemoryPartitions(**Parse("tenants:\n" + Tenant())).Capacity(""), 0u);  // unlimited
}

// The full config below names every section the parser has. Every key the
// parser looks up must have a row in the reload table, so a new setting
// cannot be silently ignored by reloads.
TEST(ConfigTest, EverySettingIsInTheReloadTable) {
  std::set<std::string> fields;
  auto c = ParseConfig(std::string(R"(
server: {tls: {cert_file: a, key_file: b, client_ca_file: c}}
scheduler: {}
rate_limit_backend: {}
ledger: {durability: async, sink: {type: none}}
devices: [{name: cpu}]
tenants:
)") + Tenant("    rate_limit: {burst: 1}\n    kubernetes: {}\n") + R"(
pricing: {tiers: [{above_compute_seconds: 1, per_compute_second: 1}], tenants: {acme: {}}}
)", "test.yaml", "/", &fields);
  ASSERT_TRUE(c.ok()) << c.status();
  const std::set<std::string> sections = {"server",        "server.tls",         "scheduler",
                                          "rate_limit_backend", "devices", "ledger",
                                          "ledger.sink"};
  EXPECT_GT(fields.size(), 50u);
  for (const std::string& f : fields) {
    if (sections.count(f)) continue;
    EXPECT_NE(FindReloadEffect(f), nullptr) << f << " has no row in the reload table (config.cc)";
  }
  EXPECT_EQ(*FindReloadEffect("tenants[].rate_limit.burst"), ReloadEffect::kLive);
  EXPECT_EQ(*FindReloadEffect("scheduler.max_queue_wait_s"), ReloadEffect::kRestart);
  EXPECT_EQ(FindReloadEffect("scheduler.max_queue"), nullptr);
}

TEST(ConfigTest, ReloadDiffNamesEachChangedSetting) {
  auto a = Parse("tenants:\n" + Tenant());
  auto b = Parse("server: {replica_id: r2, log_level: debug}\n"
                 "scheduler: {max_queue_wait_s: 5, intra_op_threads: 1}\n"
                 "devices: [{name: cpu, memory_budget: 1GiB}]\ntenants:\n" +
                 Tenant("    weight: 2\n"));
  ASSERT_TRUE(a.ok() && b.ok());
  ReloadDiff diff = DiffConfigs(**a, **b);
  EXPECT_EQ(diff.restart, (std::vector<std::string>{"server.replica_id",
                                                     "scheduler.intra_op_threads",
                                                     "scheduler.max_queue_wait_s"}));
  EXPECT_EQ(diff.live, (std::vector<std::string>{"server.log_level", "devices[].memory_budget"}));
  ReloadDiff none = DiffConfigs(**a, **a);
  EXPECT_TRUE(none.live.empty() && none.restart.empty());
}

TEST(ConfigTest, ShippedDemoConfigIsValid) {
  auto c = LoadConfigFile(SOURCE_DIR "/config/demo.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->tenants.size(), 2u);
}

}  // namespace
}  // namespace fairserve

namespace fairserve {
namespace {

TEST(ConfigTest, LedgerSink) {
  auto c = Parse("ledger:\n  sink: {type: postgres, dsn: \"host=db dbname=billing\", "
                 "table_prefix: acme_, batch_rows: 100, flush_interval_ms: 250}\ntenants:\n" +
                 Tenant());
  ASSERT_TRUE(c.ok()) << c.status();
  const UsageSinkConfig& s = (*c)->ledger.sink;
  EXPECT_EQ(s.type, UsageSinkType::kPostgres);
  EXPECT_EQ(s.dsn, "host=db dbname=billing");
  EXPECT_EQ(s.table_prefix, "acme_");
  EXPECT_EQ(s.batch_rows, 100);
  EXPECT_EQ(s.flush_interval_ms, 250);
  EXPECT_EQ((*Parse("tenants:\n" + Tenant()))->ledger.sink.type, UsageSinkType::kNone);
  EXPECT_EQ((*Parse("tenants:\n" + Tenant()))->ledger.durability, LedgerDurability::kAsync);
  EXPECT_EQ((*Parse("ledger: {durability: reply_after_commit}\ntenants:\n" + Tenant()))
                ->ledger.durability,
            LedgerDurability::kReplyAfterCommit);
  EXPECT_THAT(Error("ledger: {durability: sync}\ntenants:\n" + Tenant()),
              HasSubstr("test.yaml:1:22: ledger.durability: unknown value 'sync'; use async, "
                        "reply_after_commit"));

  // The DSN from the environment (a Kubernetes Secret), never from the file.
  setenv("FAIRSERVE_TEST_DSN", "postgresql://u:secret@db/billing", 1);
  auto env = Parse("ledger: {sink: {type: postgres, dsn_env: FAIRSERVE_TEST_DSN}}\ntenants:\n" +
                   Tenant());
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ((*env)->ledger.sink.dsn, "postgresql://u:secret@db/billing");
  unsetenv("FAIRSERVE_TEST_DSN");
  EXPECT_THAT(Error("ledger: {sink: {type: postgres, dsn_env: FAIRSERVE_TEST_DSN}}\ntenants:\n" +
                    Tenant()),
              HasSubstr("test.yaml:1:42: ledger.sink.dsn_env: environment variable "
                        "FAIRSERVE_TEST_DSN is not set or empty"));
  EXPECT_THAT(Error("ledger: {sink: {type: postgres, dsn: a, dsn_env: B}}\ntenants:\n" + Tenant()),
              HasSubstr("ledger.sink: set exactly one of dsn"));
  EXPECT_THAT(Error("ledger: {sink: {type: postgres}}\ntenants:\n" + Tenant()),
              HasSubstr("ledger.sink: set exactly one of dsn"));
  std::string e = Error(
      "ledger: {sink: {type: mysql, dsn: a, table_prefix: \"x; drop\", batch_rows: 0, "
      "flush_interval_ms: 1}}\ntenants:\n" + Tenant());
  EXPECT_THAT(e, HasSubstr("ledger.sink.type: unknown value 'mysql'; use none, postgres"));
  EXPECT_THAT(e, HasSubstr("ledger.sink.table_prefix: 'x; drop' is not usable in table names"));
  EXPECT_THAT(e, HasSubstr("ledger.sink.batch_rows: must be between 1 and 1000000"));
  EXPECT_THAT(e, HasSubstr("ledger.sink.flush_interval_ms: must be between 10 and 600000"));
  EXPECT_THAT(Error("ledger: {sink: {tpye: postgres}}\ntenants:\n" + Tenant()),
              HasSubstr("ledger.sink.tpye: unknown key"));
}

}  // namespace
}  // namespace fairserve
