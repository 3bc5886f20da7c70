#include "fairserve/config/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <filesystem>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/common/units.h"
#include "fairserve/config/partitions.h"
#include "fairserve/config/yaml_reader.h"

namespace fairserve {
namespace {

namespace fs = std::filesystem;

std::string ResolvePath(const std::string& base_dir, const std::string& p) {
  if (p.empty() || fs::path(p).is_absolute() || base_dir.empty()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

void ReadTls(const YAML::Node& node, TlsConfig* out, ConfigErrors* errors) {
  MapReader r(node, "server.tls", errors);
  bool cert = r.Get("cert_file", &out->cert_file);
  bool key = r.Get("key_file", &out->key_file);
  if (cert != key) {
    errors->Add(node.Mark(), "server.tls",
                "give both cert_file and key_file (or neither, for plaintext gRPC)");
  }
  r.Get("client_ca_file", &out->client_ca_file);
  if (!out->client_ca_file.empty() && !cert) {
    errors->Add(node["client_ca_file"].Mark(), "server.tls.client_ca_file",
                "mutual TLS needs the server's own cert_file and key_file too");
  }
  r.Get("require_client_cert", &out->require_client_cert);
  if (r.Get("refresh_interval_s", &out->refresh_interval_s) &&
      (out->refresh_interval_s < 1 || out->refresh_interval_s > 86400)) {
    errors->Add(node["refresh_interval_s"].Mark(), "server.tls.refresh_interval_s",
                "must be between 1 and 86400");
  }
  r.Finish();
}

constexpr std::pair<absl::string_view, LogLevel> kLogLevels[] = {
    {"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo},
    {"warn", LogLevel::kWarn},   {"error", LogLevel::kError}};
constexpr std::pair<absl::string_view, LogFormat> kLogFormats[] = {
    {"plain", LogFormat::kPlain}, {"json", LogFormat::kJson}, {"off", LogFormat::kOff}};
constexpr std::pair<absl::string_view, StatusPageMode> kStatusPageModes[] = {
    {"loopback", StatusPageMode::kLoopback},
    {"admin", StatusPageMode::kAdmin},
    {"off", StatusPageMode::kOff}};
constexpr std::pair<absl::string_view, SchedulingPolicy> kPolicies[] = {
    {"fair", SchedulingPolicy::kFair}, {"fifo", SchedulingPolicy::kFifo}};
constexpr std::pair<absl::string_view, RateLimitBackendType> kBackendTypes[] = {
    {"local", RateLimitBackendType::kLocal}, {"redis", RateLimitBackendType::kRedis}};
constexpr std::pair<absl::string_view, FailurePolicy> kFailurePolicies[] = {
    {"allow", FailurePolicy::kAllow}, {"deny", FailurePolicy::kDeny}};
constexpr std::pair<absl::string_view, LedgerDurability> kDurabilities[] = {
    {"async", LedgerDurability::kAsync},
    {"reply_after_commit", LedgerDurability::kReplyAfterCommit}};
constexpr std::pair<absl::string_view, UsageSinkType> kSinkTypes[] = {
    {"none", UsageSinkType::kNone}, {"postgres", UsageSinkType::kPostgres}};

template <typename E, size_t N>
absl::string_view NameIn(const std::pair<absl::string_view, E> (&names)[N], E value) {
  for (const auto& [name, v] : names) {
    if (v == value) return name;
  }
  return "?";
}

// Upper bounds for settings that have no natural one: far above any real
// deployment, low enough that no arithmetic on them overflows.
constexpr double kMaxRate = 1e9;        // per second
constexpr double kMaxSeconds = 86400;   // durations
constexpr int64_t kMaxCount = 1'000'000'000;
constexpr double kMaxPrice = 1e9;           // currency units per second or per 1k requests
constexpr double kMaxComputeSeconds = 1e15;

void ReadServer(const YAML::Node& node, ServerConfig* out, ConfigErrors* errors) {
  MapReader r(node, "server", errors);
  r.Get("listen_address", &out->listen_address);
  r.GetInRange("grpc_port", &out->grpc_port, 0, 65535, "(0 picks a free port)");
  r.GetInRange("http_port", &out->http_port, -1, 65535, "(0 picks a free port, -1 disables HTTP)");
  r.Get("data_dir", &out->data_dir);
  r.Get("replica_id", &out->replica_id);
  if (YAML::Node tls = r.Child("tls"); tls.IsDefined()) ReadTls(tls, &out->tls, errors);
  r.GetEnum("status_page", &out->status_page, kStatusPageModes);
  r.GetInRange("status_sample_interval_s", &out->status_sample_interval_s, 1, 3600);
  r.GetEnum("log_level", &out->log_level, kLogLevels);
  r.GetEnum("log_format", &out->log_format, kLogFormats);
  r.GetInRange("access_log_queue_lines", &out->access_log_queue_lines, 16, 1000000);
  if (r.Get("admin_api_keys", &out->admin_api_key_hashes)) {
    std::set<std::string> seen;
    for (size_t k = 0; k < out->admin_api_key_hashes.size(); ++k) {
      if (!IsValidKeyHash(out->admin_api_key_hashes[k])) {
        errors->Add(node["admin_api_keys"][k].Mark(), absl::StrCat("server.admin_api_keys[", k, "]"),
                    "must be \"sha256:<64 lowercase hex digits>\"; make one with "
                    "'fairctl hash-key KEY'");
      } else if (!seen.insert(out->admin_api_key_hashes[k]).second) {
        errors->Add(node["admin_api_keys"][k].Mark(), absl::StrCat("server.admin_api_keys[", k, "]"),
                    "this admin key hash is listed twice; remove one");
      }
    }
  }
  if (r.GetBytes("max_message_bytes", &out->max_message_bytes) &&
      (out->max_message_bytes < 1024 || out->max_message_bytes > (1ull << 31) - 1)) {
    errors->Add(node["max_message_bytes"].Mark(), "server.max_message_bytes",
                "must be between 1KiB and 2GiB");
  }
  r.GetInRange("auth_failures_per_second", &out->auth_failures_per_second, 0, 1e6,
               "(0 turns the throttle off)");
  r.GetInRange("auth_failure_burst", &out->auth_failure_burst, 1, 1e6);
  if (r.GetBytes("grpc_memory_limit", &out->grpc_memory_limit) &&
      (out->grpc_memory_limit < (64ull << 20) || out->grpc_memory_limit > (1ull << 40))) {
    errors->Add(node["grpc_memory_limit"].Mark(), "server.grpc_memory_limit",
                "must be between 64MiB and 1TiB");
  }
  r.GetInRange("max_concurrent_streams", &out->max_concurrent_streams, 1, 1000000);
  r.GetInRange("stream_max_in_flight", &out->stream_max_in_flight, 1, 100000);
  r.GetInRange("rejection_hold_per_tenant", &out->rejection_hold_per_tenant, 0, 100000,
               "(0 = refusals are answered at once)");
  r.GetInRange("rejection_hold_max_ms", &out->rejection_hold_max_ms, 1, 60000);
  r.GetInRange("drain_timeout_s", &out->drain_timeout_s, 0, 3600);
  r.GetInRange("shutdown_grace_s", &out->shutdown_grace_s, 0, 60);
  r.Finish();
}

void ReadScheduler(const YAML::Node& node, SchedulerConfig* out, ConfigErrors* errors) {
  MapReader r(node, "scheduler", errors);
  r.GetEnum("policy", &out->policy, kPolicies);
  r.GetInRange("workers", &out->workers, 0, 256, "(0 = one per device)");
  r.GetInRange("intra_op_threads", &out->intra_op_threads, 0, 256, "(0 = cores / workers)");
  r.GetInRange("run_on_caller_below_us", &out->run_on_caller_below_us, 0, 10000,
               "(0 = always hand a batch to a worker)");
  if (r.GetInRange("max_queue_wait_s", &out->max_queue_wait_s, 0, kMaxSeconds) &&
      out->max_queue_wait_s < 0.001) {
    errors->Add(node["max_queue_wait_s"].Mark(), "scheduler.max_queue_wait_s",
                "must be at least 0.001 (1 ms), or every request expires in its queue");
  }
  r.Finish();
}

void ReadRateLimitBackend(const YAML::Node& node, RateLimitBackendConfig* out,
                          ConfigErrors* errors) {
  MapReader r(node, "rate_limit_backend", errors);
  r.GetEnum("type", &out->type, kBackendTypes);
  if (r.Get("address", &out->address)) {
    bool unix_socket = absl::StartsWith(out->address, "unix:") && out->address.size() > 5;
    size_t colon = out->address.rfind(':');
    int port = 0;
    bool tcp = colon != std::string::npos && colon > 0 &&
               absl::SimpleAtoi(out->address.substr(colon + 1), &port) && port > 0 &&
               port <= 65535;
    if (!unix_socket && !tcp) {
      errors->Add(node["address"].Mark(), "rate_limit_backend.address",
                  absl::StrCat("'", out->address,
                               "' is not \"host:port\" or \"unix:/path/to/socket\""));
    }
  }
  r.Get("key_prefix", &out->key_prefix);
  r.GetInRange("timeout_ms", &out->timeout_ms, 1, 60000);
  r.GetEnum("on_failure", &out->on_failure, kFailurePolicies);
  r.GetInRange("replicas", &out->replicas, 1, 10000);
  r.Finish();
}

}  // namespace

bool IsValidTablePrefix(const std::string& s) {
  if (s.empty() || s.size() > 40) return false;
  if (!(std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
           c == '_';
  });
}

namespace {

void ReadLedger(const YAML::Node& node, LedgerConfig* out, ConfigErrors* errors) {
  MapReader r(node, "ledger", errors);
  r.GetEnum("durability", &out->durability, kDurabilities);
  YAML::Node sink = r.Child("sink");
  r.Finish();
  if (!sink.IsDefined()) return;
  MapReader s(sink, "ledger.sink", errors);
  UsageSinkConfig& c = out->sink;
  s.GetEnum("type", &c.type, kSinkTypes, /*required=*/true);
  bool has_dsn = s.Get("dsn", &c.dsn);
  bool has_env = s.Get("dsn_env", &c.dsn_env);
  if (s.Get("table_prefix", &c.table_prefix) && !IsValidTablePrefix(c.table_prefix)) {
    errors->Add(sink["table_prefix"].Mark(), "ledger.sink.table_prefix",
                absl::StrCat("'", c.table_prefix, "' is not usable in table names; use 1 to 40 "
                                                  "lowercase letters, digits and '_', not "
                                                  "starting with a digit"));
  }
  s.GetInRange("batch_rows", &c.batch_rows, 1, 1000000);
  s.GetInRange("flush_interval_ms", &c.flush_interval_ms, 10, 600000);
  s.Finish();
  if (c.type != UsageSinkType::kPostgres) return;
  if (has_dsn == has_env) {
    errors->Add(sink.Mark(), "ledger.sink",
                "set exactly one of dsn (a libpq connection string) and dsn_env (the "
                "environment variable that holds it, e.g. from a Kubernetes Secret)");
  } else if (has_env) {
    const char* value = std::getenv(c.dsn_env.c_str());
    if (value == nullptr || *value == '\0') {
      errors->Add(sink["dsn_env"].Mark(), "ledger.sink.dsn_env",
                  absl::StrCat("environment variable ", c.dsn_env,
                               " is not set or empty; set it to the database's connection "
                               "string"));
    } else {
      c.dsn = value;
    }
  } else if (c.dsn.empty()) {
    errors->Add(sink["dsn"].Mark(), "ledger.sink.dsn", "is empty");
  }
}

void ReadDevices(const YAML::Node& node, std::vector<DeviceConfig>* out, ConfigErrors* errors) {
  if (!node.IsSequence()) {
    errors->Add(node.Mark(), "devices", "expected a list of devices");
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < node.size(); ++i) {
    std::string path = absl::StrCat("devices[", i, "]");
    MapReader r(node[i], path, errors);
    DeviceConfig d;
    if (r.Get("name", &d.name, /*required=*/true)) {
      if (absl::StatusOr<int> index = ParseDeviceName(d.name); !index.ok()) {
        errors->Add(node[i]["name"].Mark(), r.FieldPath("name"),
                    std::string(index.status().message()));
      } else if (!names.insert(d.name).second) {
        errors->Add(node[i]["name"].Mark(), r.FieldPath("name"),
                    absl::StrCat("device '", d.name, "' is listed twice"));
      }
    }
    r.GetBytes("memory_budget", &d.memory_budget);
    r.GetInRange("workers", &d.workers, 0, 256,
                 "(0 = scheduler.workers, else one per core on cpu and 2 per GPU)");
    r.Finish();
    out->push_back(d);
  }
}

void ReadRateLimit(const YAML::Node& node, const std::string& path, RateLimitConfig* out,
                   ConfigErrors* errors) {
  MapReader r(node, path, errors);
  double per_minute = -1;
  bool has_rps =
      r.GetInRange("requests_per_second", &out->requests_per_second, 0, kMaxRate, "(0 = unlimited)");
  if (r.GetInRange("requests_per_minute", &per_minute, 0, kMaxRate * 60, "(0 = unlimited)")) {
    if (has_rps) {
      errors->Add(node["requests_per_minute"].Mark(), r.FieldPath("requests_per_minute"),
                  "give requests_per_second or requests_per_minute, not both");
    }
    out->requests_per_second = per_minute / 60.0;
  }
  r.GetInRange("burst", &out->burst, 0, kMaxRate, "(0 = max(1, requests_per_second))");
  r.Finish();
}

void ReadTenant(const YAML::Node& node, const std::string& path, TenantConfig* t,
                ConfigErrors* errors) {
  MapReader r(node, path, errors);
  if (r.Get("id", &t->id, /*required=*/true)) {
    bool ok = !t->id.empty() && t->id.size() <= 63 &&
              std::all_of(t->id.begin(), t->id.end(), [](char c) {
                return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '_';
              });
    if (!ok) {
      errors->Add(node["id"].Mark(), r.FieldPath("id"),
                  "must be 1-63 characters of a-z, 0-9, '-' or '_'");
    }
  }
  r.Get("client_cert_names", &t->client_cert_names);
  if (r.Get("api_keys", &t->api_key_hashes, /*required=*/t->client_cert_names.empty())) {
    for (size_t k = 0; k < t->api_key_hashes.size(); ++k) {
      if (!IsValidKeyHash(t->api_key_hashes[k])) {
        errors->Add(node["api_keys"][k].Mark(), absl::StrCat(r.FieldPath("api_keys"), "[", k, "]"),
                    "must be \"sha256:<64 lowercase hex digits>\"; make one with "
                    "'fairctl hash-key KEY' (plain keys are never stored)");
      }
    }
    if (t->api_key_hashes.empty() && t->client_cert_names.empty()) {
      errors->Add(node["api_keys"].Mark(), r.FieldPath("api_keys"),
                  "needs at least one key hash (or client_cert_names)");
    }
  }
  if (r.GetInRange("weight", &t->weight, 0, 1e6) && t->weight < 1e-6) {
    errors->Add(node["weight"].Mark(), r.FieldPath("weight"), "must be at least 0.000001");
  }
  YAML::Node rate = r.Child("rate_limit");
  if (rate.IsDefined()) ReadRateLimit(rate, r.FieldPath("rate_limit"), &t->rate_limit, errors);
  r.GetInRange("max_inflight", &t->max_inflight, 0, kMaxCount, "(0 = unlimited)");
  r.GetInRange("max_queue", &t->max_queue, 1, kMaxCount);
  if (r.GetBytes("max_pending_bytes", &t->max_pending_bytes) &&
      (t->max_pending_bytes < (1ull << 20) || t->max_pending_bytes > (1ull << 40))) {
    errors->Add(node["max_pending_bytes"].Mark(), r.FieldPath("max_pending_bytes"),
                "must be between 1MiB and 1TiB");
  }
  r.GetBytes("memory_limit", &t->memory_limit);
  r.GetInRange("memory_share_percent", &t->memory_share_percent, 0, 100);
  if (r.Has("memory_limit") && r.Has("memory_share_percent")) {
    errors->Add(node["memory_share_percent"].Mark(), r.FieldPath("memory_share_percent"),
                "give memory_limit or memory_share_percent, not both");
  }
  r.GetInRange("max_batch_size", &t->max_batch_size, 0, kMaxCount, "(0 = the model's limit)");
  r.GetInRange("model_loads_per_second", &t->model_loads_per_second, 0, kMaxRate,
               "(0 = unlimited)");
  if (!r.Get("models", &t->models)) t->models = {"*"};
  if (YAML::Node k = r.Child("kubernetes"); k.IsDefined()) {
    MapReader kr(k, r.FieldPath("kubernetes"), errors);
    KubernetesQuota& q = t->kubernetes;
    kr.GetInRange("gpus", &q.gpus, 0, 1'000'000);
    kr.Get("cpu", &q.cpu);
    kr.Get("memory", &q.memory);
    kr.GetInRange("pods", &q.pods, 0, 1'000'000);
    kr.GetInRange("max_gpus_per_container", &q.max_gpus_per_container, 0, 1'000'000);
    kr.GetInRange("default_gpus_per_container", &q.default_gpus_per_container, 0, 1'000'000);
    // A Kubernetes quantity as the manifests take it: digits, optionally a
    // fraction, optionally one suffix (500m, 4, 1.5, 16Gi).
    auto quantity = [](const std::string& v) {
      absl::string_view rest(v);
      auto digits = [&rest] {
        size_t n = 0;
        while (n < rest.size() && absl::ascii_isdigit(static_cast<unsigned char>(rest[n]))) ++n;
        rest.remove_prefix(n);
        return n > 0;
      };
      if (!digits()) return false;
      if (absl::ConsumePrefix(&rest, ".") && !digits()) return false;
      if (rest.empty()) return true;
      for (absl::string_view suffix : {"m", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi"}) {
        if (rest == suffix) return true;
      }
      return false;
    };
    if (!quantity(q.cpu)) {
      errors->Add(k.Mark(), kr.FieldPath("cpu"), "not a Kubernetes quantity (e.g. 4 or 500m)");
    }
    if (!quantity(q.memory)) {
      errors->Add(k.Mark(), kr.FieldPath("memory"), "not a Kubernetes quantity (e.g. 16Gi)");
    }
    if (q.default_gpus_per_container > q.max_gpus_per_container) {
      errors->Add(k.Mark(), kr.FieldPath("default_gpus_per_container"),
                  "must be <= max_gpus_per_container");
    }
    kr.Finish();
  }
  r.Finish();
}

void ReadPrices(const YAML::Node& node, const std::string& path, Prices* out,
                ConfigErrors* errors, MapReader* parent_reader = nullptr) {
  // The default prices live directly under pricing:, tenant overrides in
  // their own mapping; both read the same three keys.
  std::unique_ptr<MapReader> own;
  MapReader* r = parent_reader;
  if (!r) {
    own = std::make_unique<MapReader>(node, path, errors);
    r = own.get();
  }
  r->GetInRange("per_compute_second", &out->per_compute_second, 0, kMaxPrice);
  r->GetInRange("per_1k_requests", &out->per_1k_requests, 0, kMaxPrice);
  YAML::Node tiers = r->Child("tiers");
  if (tiers.IsDefined()) {
    if (!tiers.IsSequence()) {
      errors->Add(tiers.Mark(), r->FieldPath("tiers"),
                  "expected a list of {above_compute_seconds, per_compute_second}");
    } else {
      for (size_t i = 0; i < tiers.size(); ++i) {
        MapReader t(tiers[i], absl::StrCat(r->FieldPath("tiers"), "[", i, "]"), errors);
        PriceTier tier;
        bool above = t.GetInRange("above_compute_seconds", &tier.above_compute_seconds, 0,
                                  kMaxComputeSeconds, "", true);
        t.GetInRange("per_compute_second", &tier.per_compute_second, 0, kMaxPrice, "", true);
        if (above && (tier.above_compute_seconds <= 0 ||
                      (!out->tiers.empty() &&
                       tier.above_compute_seconds <= out->tiers.back().above_compute_seconds))) {
          errors->Add(tiers[i].Mark(), t.FieldPath("above_compute_seconds"),
                      "thresholds must be > 0 and ascending");
        }
        t.Finish();
        out->tiers.push_back(tier);
      }
    }
  }
  if (own) own->Finish();
}

void ReadPricing(const YAML::Node& node, PricingConfig* out, ConfigErrors* errors) {
  MapReader r(node, "pricing", errors);
  r.Get("currency", &out->currency);
  ReadPrices(node, "pricing", &out->defaults, errors, &r);
  YAML::Node tenants = r.Child("tenants");
  if (tenants.IsDefined()) {
    if (!tenants.IsMap()) {
      errors->Add(tenants.Mark(), "pricing.tenants",
                  "expected a mapping of tenant id to {per_compute_second, per_1k_requests, "
                  "tiers}");
    } else {
      for (const auto& kv : tenants) {
        std::string id = kv.first.Scalar();
        Prices prices = out->defaults;
        prices.tiers.clear();
        ReadPrices(kv.second, absl::StrCat("pricing.tenants.", id), &prices, errors);
        out->tenants[id] = prices;
      }
    }
  }
  r.Finish();
}

void CheckTenantsTogether(const YAML::Node& node, const Config& config, ConfigErrors* errors) {
  std::set<std::string> ids;
  std::set<std::string> hashes;
  const std::set<std::string> admin_hashes(config.server.admin_api_key_hashes.begin(),
                                           config.server.admin_api_key_hashes.end());
  std::set<std::string> cert_names;
  double share_total = 0;
  for (size_t i = 0; i < config.tenants.size(); ++i) {
    const TenantConfig& t = config.tenants[i];
    std::string path = absl::StrCat("tenants[", i, "]");
    if (!t.id.empty() && !ids.insert(t.id).second) {
      errors->Add(node[i]["id"].Mark(), path + ".id",
                  absl::StrCat("tenant id '", t.id, "' is used twice"));
    }
    for (size_t k = 0; k < t.api_key_hashes.size(); ++k) {
      if (admin_hashes.count(t.api_key_hashes[k]) > 0) {
        errors->Add(node[i]["api_keys"][k].Mark(), absl::StrCat(path, ".api_keys[", k, "]"),
                    "this key hash is also in server.admin_api_keys; a key is either a "
                    "tenant's or an admin's, so give one of them a new key");
      }
      if (!hashes.insert(t.api_key_hashes[k]).second) {
        errors->Add(node[i]["api_keys"][k].Mark(), absl::StrCat(path, ".api_keys[", k, "]"),
                    "this key hash belongs to another tenant too; every key must map to "
                    "exactly one tenant");
      }
    }
    for (size_t k = 0; k < t.client_cert_names.size(); ++k) {
      if (!cert_names.insert(t.client_cert_names[k]).second) {
        errors->Add(node[i]["client_cert_names"][k].Mark(),
                    absl::StrCat(path, ".client_cert_names[", k, "]"),
                    absl::StrCat("certificate name '", t.client_cert_names[k],
                                 "' belongs to another tenant too"));
      }
    }
    if (!t.client_cert_names.empty() && !config.server.tls.mutual()) {
      errors->Add(node[i]["client_cert_names"].Mark(), path + ".client_cert_names",
                  "client certificates are only checked with server.tls.client_ca_file set");
    }
    share_total += t.memory_share_percent;
  }
  if (share_total > 100.0 + 1e-9) {
    errors->Add(node.Mark(), "tenants[*].memory_share_percent",
                absl::StrCat("shares add up to ", share_total, "%, over 100%"));
  }
  // Every tenant with a quota has a partition of that size on every device.
  for (size_t d = 0; d < config.devices.size(); ++d) {
    const uint64_t budget = config.devices[d].memory_budget;
    const uint64_t quota_total = MemoryPartitions(config, d).reserved();
    if (budget > 0 && quota_total > budget) {
      errors->Add(node.Mark(), "tenants[*].memory_limit",
                  absl::StrCat("tenants' memory partitions (memory_limit, memory_share_percent) "
                               "add up to ", FormatBytes(quota_total), ", over devices[", d,
                               "].memory_budget of ", FormatBytes(budget), " (",
                               config.devices[d].name, "); lower some limits or raise the "
                               "budget"));
    }
  }
}

}  // namespace

absl::StatusOr<int> ParseDeviceName(const std::string& name) {
  if (name == "cpu") return -1;
  int index = -1;
  if (absl::StartsWith(name, "cuda:") && name.size() > 5 &&
      std::all_of(name.begin() + 5, name.end(), ::isdigit) &&
      absl::SimpleAtoi(name.substr(5), &index)) {
    return index;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", name, "'; use cpu or cuda:N"));
}

const Prices& PricingConfig::For(const std::string& tenant_id) const {
  auto it = tenants.find(tenant_id);
  return it == tenants.end() ? defaults : it->second;
}

absl::string_view Name(LogLevel v) { return NameIn(kLogLevels, v); }
absl::string_view Name(LogFormat v) { return NameIn(kLogFormats, v); }
absl::string_view Name(StatusPageMode v) { return NameIn(kStatusPageModes, v); }
absl::string_view Name(SchedulingPolicy v) { return NameIn(kPolicies, v); }
absl::string_view Name(RateLimitBackendType v) { return NameIn(kBackendTypes, v); }
absl::string_view Name(FailurePolicy v) { return NameIn(kFailurePolicies, v); }
absl::string_view Name(UsageSinkType v) { return NameIn(kSinkTypes, v); }
absl::string_view Name(LedgerDurability v) { return NameIn(kDurabilities, v); }

uint64_t TenantConfig::MemoryQuota(uint64_t budget) const {
  if (memory_share_percent > 0) {
    return budget == 0 ? 0 : static_cast<uint64_t>(budget * (memory_share_percent / 100.0));
  }
  return memory_limit;
}

bool TenantConfig::AllowsModel(const std::string& model_name) const {
  for (const std::string& m : models) {
    if (m == "*" || m == model_name) return true;
  }
  return false;
}

absl::Status CheckTenantModels(const Config& config, const std::set<std::string>& known) {
  std::vector<std::string> problems;
  for (size_t i = 0; i < config.tenants.size(); ++i) {
    for (const std::string& m : config.tenants[i].models) {
      if (m != "*" && known.count(m) == 0) {
        problems.push_back(absl::StrCat(config.source, ": tenants[", i, "] (",
                                        config.tenants[i].id, ").models: unknown model '", m,
                                        "' (not in ", config.model_repository, ")"));
      }
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "\n"));
}

bool IsValidKeyHash(const std::string& s) {
  constexpr absl::string_view kPrefix = "sha256:";
  if (s.size() != kPrefix.size() + 64 || !absl::StartsWith(s, kPrefix)) return false;
  return std::all_of(s.begin() + kPrefix.size(), s.end(), [](char c) {
    return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
  });
}

namespace {

// One row per setting of the file: its path, what a reload does with a
// change of it, and how to tell whether it changed. Rows for a mapping or a
// list ("tenants", "pricing") cover everything below them; they have no
// comparison and are always applied whole by a reload.
struct Setting {
  const char* field;
  ReloadEffect effect;
  bool (*same)(const Config& a, const Config& b);
};

#define FAIRSERVE_SAME(member) [](const Config& a, const Config& b) { return a.member == b.member; }
#define FAIRSERVE_LIVE(path, member) {path, ReloadEffect::kLive, FAIRSERVE_SAME(member)}
#define FAIRSERVE_RESTART(path, member) {path, ReloadEffect::kRestart, FAIRSERVE_SAME(member)}

std::vector<uint64_t> DeviceBudgets(const Config& c) {
  std::vector<uint64_t> out;
  for (const DeviceConfig& d : c.devices) out.push_back(d.memory_budget);
  return out;
}
std::vector<std::string> DeviceNames(const Config& c) {
  std::vector<std::string> out;
  for (const DeviceConfig& d : c.devices) out.push_back(d.name);
  return out;
}
std::vector<int64_t> DeviceWorkers(const Config& c) {
  std::vector<int64_t> out;
  for (const DeviceConfig& d : c.devices) out.push_back(d.workers);
  return out;
}

const Setting kSettings[] = {
    // Listeners, files and threads are set up once at start.
    FAIRSERVE_RESTART("server.listen_address", server.listen_address),
    FAIRSERVE_RESTART("server.grpc_port", server.grpc_port),
    FAIRSERVE_RESTART("server.http_port", server.http_port),
    FAIRSERVE_RESTART("server.data_dir", server.data_dir),
    FAIRSERVE_RESTART("server.replica_id", server.replica_id),
    // The files behind these paths are re-read by gRPC (rotation is live);
    // the paths and modes are not.
    FAIRSERVE_RESTART("server.tls.cert_file", server.tls.cert_file),
    FAIRSERVE_RESTART("server.tls.key_file", server.tls.key_file),
    FAIRSERVE_RESTART("server.tls.client_ca_file", server.tls.client_ca_file),
    FAIRSERVE_RESTART("server.tls.require_client_cert", server.tls.require_client_cert),
    FAIRSERVE_RESTART("server.tls.refresh_interval_s", server.tls.refresh_interval_s),
    FAIRSERVE_LIVE("server.status_page", server.status_page),
    FAIRSERVE_RESTART("server.status_sample_interval_s", server.status_sample_interval_s),
    FAIRSERVE_LIVE("server.log_level", server.log_level),
    FAIRSERVE_LIVE("server.log_format", server.log_format),
    FAIRSERVE_RESTART("server.access_log_queue_lines", server.access_log_queue_lines),
    FAIRSERVE_LIVE("server.admin_api_keys", server.admin_api_key_hashes),
    FAIRSERVE_RESTART("server.max_message_bytes", server.max_message_bytes),
    FAIRSERVE_LIVE("server.auth_failures_per_second", server.auth_failures_per_second),
    FAIRSERVE_LIVE("server.auth_failure_burst", server.auth_failure_burst),
    FAIRSERVE_RESTART("server.grpc_memory_limit", server.grpc_memory_limit),
    FAIRSERVE_RESTART("server.max_concurrent_streams", server.max_concurrent_streams),
    FAIRSERVE_RESTART("server.stream_max_in_flight", server.stream_max_in_flight),
    FAIRSERVE_RESTART("server.rejection_hold_per_tenant", server.rejection_hold_per_tenant),
    FAIRSERVE_RESTART("server.rejection_hold_max_ms", server.rejection_hold_max_ms),
    // Read when a drain starts.
    FAIRSERVE_LIVE("server.drain_timeout_s", server.drain_timeout_s),
    FAIRSERVE_LIVE("server.shutdown_grace_s", server.shutdown_grace_s),
    FAIRSERVE_RESTART("model_repository", model_repository),
    FAIRSERVE_RESTART("model_repository_poll_s", model_repository_poll_s),
    FAIRSERVE_RESTART("scheduler.policy", scheduler.policy),
    FAIRSERVE_RESTART("scheduler.workers", scheduler.workers),
    FAIRSERVE_RESTART("scheduler.intra_op_threads", scheduler.intra_op_threads),
    FAIRSERVE_RESTART("scheduler.run_on_caller_below_us", scheduler.run_on_caller_below_us),
    FAIRSERVE_RESTART("scheduler.max_queue_wait_s", scheduler.max_queue_wait_s),
    FAIRSERVE_RESTART("rate_limit_backend.type", rate_limit_backend.type),
    FAIRSERVE_RESTART("rate_limit_backend.address", rate_limit_backend.address),
    FAIRSERVE_RESTART("rate_limit_backend.key_prefix", rate_limit_backend.key_prefix),
    FAIRSERVE_RESTART("rate_limit_backend.timeout_ms", rate_limit_backend.timeout_ms),
    FAIRSERVE_RESTART("rate_limit_backend.on_failure", rate_limit_backend.on_failure),
    FAIRSERVE_RESTART("rate_limit_backend.replicas", rate_limit_backend.replicas),
    // The ledger, the shipper and its connection are set up once at start.
    FAIRSERVE_RESTART("ledger.durability", ledger.durability),
    FAIRSERVE_RESTART("ledger.sink.type", ledger.sink.type),
    FAIRSERVE_RESTART("ledger.sink.dsn", ledger.sink.dsn),
    FAIRSERVE_RESTART("ledger.sink.dsn_env", ledger.sink.dsn_env),
    FAIRSERVE_RESTART("ledger.sink.table_prefix", ledger.sink.table_prefix),
    FAIRSERVE_RESTART("ledger.sink.batch_rows", ledger.sink.batch_rows),
    FAIRSERVE_RESTART("ledger.sink.flush_interval_ms", ledger.sink.flush_interval_ms),
    {"devices[].name", ReloadEffect::kRestart,
     [](const Config& a, const Config& b) { return DeviceNames(a) == DeviceNames(b); }},
    {"devices[].workers", ReloadEffect::kRestart,
     [](const Config& a, const Config& b) { return DeviceWorkers(a) == DeviceWorkers(b); }},
    // The model cache re-reads budgets and partitions on reload.
    {"devices[].memory_budget", ReloadEffect::kLive,
     [](const Config& a, const Config& b) { return DeviceBudgets(a) == DeviceBudgets(b); }},
    {"tenants", ReloadEffect::kLive, nullptr},
    {"pricing", ReloadEffect::kLive, nullptr},
};

#undef FAIRSERVE_RESTART
#undef FAIRSERVE_LIVE
#undef FAIRSERVE_SAME

}  // namespace

ReloadDiff DiffConfigs(const Config& current, const Config& next) {
  ReloadDiff diff;
  for (const Setting& s : kSettings) {
    if (s.same == nullptr || s.same(current, next)) continue;
    (s.effect == ReloadEffect::kLive ? diff.live : diff.restart).push_back(s.field);
  }
  return diff;
}

const ReloadEffect* FindReloadEffect(const std::string& field) {
  for (const Setting& s : kSettings) {
    absl::string_view f = s.field;
    if (field == f || (absl::StartsWith(field, f) &&
                       (field[f.size()] == '.' || field[f.size()] == '['))) {
      return &s.effect;
    }
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<const Config>> ParseConfig(const std::string& text,
                                                          const std::string& name,
                                                          const std::string& base_dir,
                                                          std::set<std::string>* fields_read) {
  YAML::Node root;
  RETURN_IF_ERROR(LoadYamlString(text, name, &root));
  ConfigErrors errors(name);
  auto config = std::make_shared<Config>();
  config->source = name;
  MapReader r(root, "", &errors);
  if (YAML::Node n = r.Child("server"); n.IsDefined()) ReadServer(n, &config->server, &errors);
  r.Get("model_repository", &config->model_repository);
  r.GetInRange("model_repository_poll_s", &config->model_repository_poll_s, 0, 86400);
  if (YAML::Node n = r.Child("scheduler"); n.IsDefined()) {
    ReadScheduler(n, &config->scheduler, &errors);
  }
  if (YAML::Node n = r.Child("rate_limit_backend"); n.IsDefined()) {
    ReadRateLimitBackend(n, &config->rate_limit_backend, &errors);
  }
  if (YAML::Node n = r.Child("ledger"); n.IsDefined()) ReadLedger(n, &config->ledger, &errors);
  if (YAML::Node n = r.Child("devices"); n.IsDefined()) {
    ReadDevices(n, &config->devices, &errors);
  }
  if (config->devices.empty()) config->devices.push_back(DeviceConfig{});
  YAML::Node tenants = r.Child("tenants", /*required=*/true);
  if (tenants.IsDefined()) {
    if (!tenants.IsSequence()) {
      errors.Add(tenants.Mark(), "tenants", "expected a list of tenants");
    } else {
      for (size_t i = 0; i < tenants.size(); ++i) {
        TenantConfig t;
        ReadTenant(tenants[i], absl::StrCat("tenants[", i, "]"), &t, &errors);
        config->tenants.push_back(std::move(t));
      }
      CheckTenantsTogether(tenants, *config, &errors);
    }
  }
  if (YAML::Node n = r.Child("pricing"); n.IsDefined()) ReadPricing(n, &config->pricing, &errors);
  for (const auto& [id, prices] : config->pricing.tenants) {
    bool known = std::any_of(config->tenants.begin(), config->tenants.end(),
                             [&id = id](const TenantConfig& t) { return t.id == id; });
    if (!known) {
      errors.Add(root["pricing"]["tenants"][id].Mark(), absl::StrCat("pricing.tenants.", id),
                 "prices for a tenant that is not configured");
    }
  }
  r.Finish();
  if (fields_read) *fields_read = errors.fields();
  RETURN_IF_ERROR(errors.ToStatus());
  config->model_repository = ResolvePath(base_dir, config->model_repository);
  config->server.data_dir = ResolvePath(base_dir, config->server.data_dir);
  for (std::string* f : {&config->server.tls.cert_file, &config->server.tls.key_file,
                         &config->server.tls.client_ca_file}) {
    *f = ResolvePath(base_dir, *f);
  }
  return std::shared_ptr<const Config>(std::move(config));
}

absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open config file: ", std::strerror(errno)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string base = fs::path(path).parent_path().string();
  if (base.empty()) base = ".";
  return ParseConfig(buffer.str(), path, base);
}

}  // namespace fairserve
