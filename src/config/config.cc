#include "fairserve/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <filesystem>
#include <regex>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fairserve/common/status_macros.h"
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

void ReadServer(const YAML::Node& node, ServerConfig* out, ConfigErrors* errors) {
  MapReader r(node, "server", errors);
  r.Get("listen_address", &out->listen_address);
  if (r.Get("grpc_port", &out->grpc_port) && (out->grpc_port < 0 || out->grpc_port > 65535)) {
    errors->Add(node["grpc_port"].Mark(), "server.grpc_port", "must be between 0 and 65535");
  }
  if (r.Get("http_port", &out->http_port) && (out->http_port < -1 || out->http_port > 65535)) {
    errors->Add(node["http_port"].Mark(), "server.http_port",
                "must be between 0 and 65535 (or -1 to disable HTTP)");
  }
  r.Get("data_dir", &out->data_dir);
  r.Get("replica_id", &out->replica_id);
  if (YAML::Node tls = r.Child("tls"); tls.IsDefined()) ReadTls(tls, &out->tls, errors);
  if (r.Get("status_page", &out->status_page) && out->status_page != "loopback" &&
      out->status_page != "admin" && out->status_page != "off") {
    errors->Add(node["status_page"].Mark(), "server.status_page",
                absl::StrCat("unknown mode '", out->status_page, "'; use loopback, admin or off"));
  }
  if (r.Get("log_level", &out->log_level) &&
      std::string("trace debug info warn error").find(out->log_level) == std::string::npos) {
    errors->Add(node["log_level"].Mark(), "server.log_level",
                absl::StrCat("unknown level '", out->log_level, "'; use trace, debug, info, warn or error"));
  }
  if (r.Get("log_format", &out->log_format) && out->log_format != "plain" &&
      out->log_format != "json" && out->log_format != "off") {
    errors->Add(node["log_format"].Mark(), "server.log_format",
                absl::StrCat("unknown format '", out->log_format, "'; use plain, json or off"));
  }
  if (r.Get("admin_api_keys", &out->admin_api_key_hashes)) {
    for (size_t k = 0; k < out->admin_api_key_hashes.size(); ++k) {
      if (!IsValidKeyHash(out->admin_api_key_hashes[k])) {
        errors->Add(node["admin_api_keys"][k].Mark(), absl::StrCat("server.admin_api_keys[", k, "]"),
                    "must be \"sha256:<64 lowercase hex digits>\"; make one with "
                    "'fairctl hash-key KEY'");
      }
    }
  }
  if (r.GetBytes("max_message_bytes", &out->max_message_bytes) &&
      (out->max_message_bytes < 1024 || out->max_message_bytes > (1ull << 31) - 1)) {
    errors->Add(node["max_message_bytes"].Mark(), "server.max_message_bytes",
                "must be between 1KiB and 2GiB");
  }
  if (r.Get("auth_failures_per_second", &out->auth_failures_per_second) &&
      out->auth_failures_per_second < 0) {
    errors->Add(node["auth_failures_per_second"].Mark(), "server.auth_failures_per_second",
                "must be >= 0 (0 turns the throttle off)");
  }
  if (r.Get("auth_failure_burst", &out->auth_failure_burst) && out->auth_failure_burst < 1) {
    errors->Add(node["auth_failure_burst"].Mark(), "server.auth_failure_burst", "must be >= 1");
  }
  if (r.GetBytes("grpc_memory_limit", &out->grpc_memory_limit) &&
      out->grpc_memory_limit < (64ull << 20)) {
    errors->Add(node["grpc_memory_limit"].Mark(), "server.grpc_memory_limit", "must be >= 64MiB");
  }
  if (r.Get("max_concurrent_streams", &out->max_concurrent_streams) &&
      (out->max_concurrent_streams < 1 || out->max_concurrent_streams > 1000000)) {
    errors->Add(node["max_concurrent_streams"].Mark(), "server.max_concurrent_streams",
                "must be between 1 and 1000000");
  }
  if (r.Get("drain_timeout_s", &out->drain_timeout_s) && out->drain_timeout_s < 0) {
    errors->Add(node["drain_timeout_s"].Mark(), "server.drain_timeout_s", "must be >= 0");
  }
  if (r.Get("shutdown_grace_s", &out->shutdown_grace_s) && out->shutdown_grace_s < 0) {
    errors->Add(node["shutdown_grace_s"].Mark(), "server.shutdown_grace_s", "must be >= 0");
  }
  r.Finish();
}

void ReadScheduler(const YAML::Node& node, SchedulerConfig* out, ConfigErrors* errors) {
  MapReader r(node, "scheduler", errors);
  if (r.Get("policy", &out->policy) && out->policy != "fair" && out->policy != "fifo") {
    errors->Add(node["policy"].Mark(), "scheduler.policy",
                absl::StrCat("unknown policy '", out->policy, "'; use fair or fifo"));
  }
  if (r.Get("workers", &out->workers) && (out->workers < 0 || out->workers > 256)) {
    errors->Add(node["workers"].Mark(), "scheduler.workers", "must be between 0 and 256");
  }
  if (r.Get("intra_op_threads", &out->intra_op_threads) &&
      (out->intra_op_threads < 0 || out->intra_op_threads > 256)) {
    errors->Add(node["intra_op_threads"].Mark(), "scheduler.intra_op_threads",
                "must be between 0 and 256");
  }
  if (r.Get("max_queue_wait_s", &out->max_queue_wait_s) && out->max_queue_wait_s <= 0) {
    errors->Add(node["max_queue_wait_s"].Mark(), "scheduler.max_queue_wait_s", "must be > 0");
  }
  r.Finish();
}

void ReadRateLimitBackend(const YAML::Node& node, RateLimitBackendConfig* out,
                          ConfigErrors* errors) {
  MapReader r(node, "rate_limit_backend", errors);
  if (r.Get("type", &out->type) && out->type != "local" && out->type != "redis") {
    errors->Add(node["type"].Mark(), "rate_limit_backend.type",
                absl::StrCat("unknown backend '", out->type, "'; use local or redis"));
  }
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
  if (r.Get("timeout_ms", &out->timeout_ms) &&
      (out->timeout_ms < 1 || out->timeout_ms > 60000)) {
    errors->Add(node["timeout_ms"].Mark(), "rate_limit_backend.timeout_ms",
                "must be between 1 and 60000");
  }
  if (r.Get("on_failure", &out->on_failure) && out->on_failure != "allow" &&
      out->on_failure != "deny") {
    errors->Add(node["on_failure"].Mark(), "rate_limit_backend.on_failure",
                absl::StrCat("unknown policy '", out->on_failure, "'; use allow or deny"));
  }
  if (r.Get("replicas", &out->replicas) && (out->replicas < 1 || out->replicas > 10000)) {
    errors->Add(node["replicas"].Mark(), "rate_limit_backend.replicas",
                "must be between 1 and 10000");
  }
  r.Finish();
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
      if (d.name != "cpu" && !(absl::StartsWith(d.name, "cuda:") && d.name.size() > 5 &&
                               std::all_of(d.name.begin() + 5, d.name.end(), ::isdigit))) {
        errors->Add(node[i]["name"].Mark(), r.FieldPath("name"),
                    absl::StrCat("unknown device '", d.name, "'; use cpu or cuda:N"));
      } else if (!names.insert(d.name).second) {
        errors->Add(node[i]["name"].Mark(), r.FieldPath("name"),
                    absl::StrCat("device '", d.name, "' is listed twice"));
      }
    }
    r.GetBytes("memory_budget", &d.memory_budget);
    r.Finish();
    out->push_back(d);
  }
}

void ReadRateLimit(const YAML::Node& node, const std::string& path, RateLimitConfig* out,
                   ConfigErrors* errors) {
  MapReader r(node, path, errors);
  double per_minute = -1;
  bool has_rps = r.Get("requests_per_second", &out->requests_per_second);
  if (r.Get("requests_per_minute", &per_minute)) {
    if (has_rps) {
      errors->Add(node["requests_per_minute"].Mark(), r.FieldPath("requests_per_minute"),
                  "give requests_per_second or requests_per_minute, not both");
    }
    out->requests_per_second = per_minute / 60.0;
  }
  if (out->requests_per_second < 0) {
    errors->Add(node.Mark(), r.FieldPath("requests_per_second"), "must be >= 0");
  }
  if (r.Get("burst", &out->burst) && out->burst < 0) {
    errors->Add(node["burst"].Mark(), r.FieldPath("burst"), "must be >= 0");
  }
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
  if (r.Get("weight", &t->weight) && !(t->weight > 0 && t->weight <= 1e6)) {
    errors->Add(node["weight"].Mark(), r.FieldPath("weight"), "must be > 0 and <= 1000000");
  }
  YAML::Node rate = r.Child("rate_limit");
  if (rate.IsDefined()) ReadRateLimit(rate, r.FieldPath("rate_limit"), &t->rate_limit, errors);
  if (r.Get("max_inflight", &t->max_inflight) && t->max_inflight < 0) {
    errors->Add(node["max_inflight"].Mark(), r.FieldPath("max_inflight"),
                "must be >= 0 (0 = unlimited)");
  }
  if (r.Get("max_queue", &t->max_queue) && t->max_queue < 1) {
    errors->Add(node["max_queue"].Mark(), r.FieldPath("max_queue"), "must be >= 1");
  }
  r.GetBytes("memory_limit", &t->memory_limit);
  if (r.Get("memory_share_percent", &t->memory_share_percent) &&
      !(t->memory_share_percent >= 0 && t->memory_share_percent <= 100)) {
    errors->Add(node["memory_share_percent"].Mark(), r.FieldPath("memory_share_percent"),
                "must be between 0 and 100");
  }
  if (r.Has("memory_limit") && r.Has("memory_share_percent")) {
    errors->Add(node["memory_share_percent"].Mark(), r.FieldPath("memory_share_percent"),
                "give memory_limit or memory_share_percent, not both");
  }
  if (r.Get("max_batch_size", &t->max_batch_size) && t->max_batch_size < 0) {
    errors->Add(node["max_batch_size"].Mark(), r.FieldPath("max_batch_size"),
                "must be >= 0 (0 = the model's limit)");
  }
  if (r.Get("model_loads_per_second", &t->model_loads_per_second) &&
      t->model_loads_per_second < 0) {
    errors->Add(node["model_loads_per_second"].Mark(), r.FieldPath("model_loads_per_second"),
                "must be >= 0 (0 = unlimited)");
  }
  if (!r.Get("models", &t->models)) t->models = {"*"};
  if (YAML::Node k = r.Child("kubernetes"); k.IsDefined()) {
    MapReader kr(k, r.FieldPath("kubernetes"), errors);
    KubernetesQuota& q = t->kubernetes;
    kr.Get("gpus", &q.gpus);
    kr.Get("cpu", &q.cpu);
    kr.Get("memory", &q.memory);
    kr.Get("pods", &q.pods);
    kr.Get("max_gpus_per_container", &q.max_gpus_per_container);
    kr.Get("default_gpus_per_container", &q.default_gpus_per_container);
    auto quantity = [](const std::string& v) {
      static const std::regex re("^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$");
      return std::regex_match(v, re);
    };
    if (!quantity(q.cpu)) {
      errors->Add(k.Mark(), kr.FieldPath("cpu"), "not a Kubernetes quantity (e.g. 4 or 500m)");
    }
    if (!quantity(q.memory)) {
      errors->Add(k.Mark(), kr.FieldPath("memory"), "not a Kubernetes quantity (e.g. 16Gi)");
    }
    if (q.gpus < 0 || q.pods < 0 || q.max_gpus_per_container < 0 ||
        q.default_gpus_per_container < 0 || q.default_gpus_per_container > q.max_gpus_per_container) {
      errors->Add(k.Mark(), kr.FieldPath("gpus"),
                  "counts must be >= 0 and default_gpus_per_container <= max_gpus_per_container");
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
  if (r->Get("per_compute_second", &out->per_compute_second) && out->per_compute_second < 0) {
    errors->Add(node["per_compute_second"].Mark(), r->FieldPath("per_compute_second"),
                "must be >= 0");
  }
  if (r->Get("per_1k_requests", &out->per_1k_requests) && out->per_1k_requests < 0) {
    errors->Add(node["per_1k_requests"].Mark(), r->FieldPath("per_1k_requests"), "must be >= 0");
  }
  YAML::Node tiers = r->Child("tiers");
  if (tiers.IsDefined()) {
    if (!tiers.IsSequence()) {
      errors->Add(tiers.Mark(), r->FieldPath("tiers"),
                  "expected a list of {above_compute_seconds, per_compute_second}");
    } else {
      for (size_t i = 0; i < tiers.size(); ++i) {
        MapReader t(tiers[i], absl::StrCat(r->FieldPath("tiers"), "[", i, "]"), errors);
        PriceTier tier;
        t.Get("above_compute_seconds", &tier.above_compute_seconds, true);
        t.Get("per_compute_second", &tier.per_compute_second, true);
        if (tier.above_compute_seconds <= 0 || tier.per_compute_second < 0 ||
            (!out->tiers.empty() &&
             tier.above_compute_seconds <= out->tiers.back().above_compute_seconds)) {
          errors->Add(tiers[i].Mark(), t.FieldPath("above_compute_seconds"),
                      "thresholds must be > 0 and ascending, prices >= 0");
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
}

}  // namespace

const Prices& PricingConfig::For(const std::string& tenant_id) const {
  auto it = tenants.find(tenant_id);
  return it == tenants.end() ? defaults : it->second;
}

bool TenantConfig::AllowsModel(const std::string& model_name) const {
  for (const std::string& m : models) {
    if (m == "*" || m == model_name) return true;
  }
  return false;
}

std::set<std::string> ListRepositoryModels(const std::string& repository) {
  std::set<std::string> names;
  std::error_code ec;
  for (const fs::directory_entry& dir : fs::directory_iterator(repository, ec)) {
    if (dir.is_directory(ec) && fs::exists(dir.path() / "config.yaml", ec)) {
      names.insert(dir.path().filename().string());
    }
  }
  return names;
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

absl::Status CheckConfigModels(const Config& config) {
  std::error_code ec;
  if (!fs::is_directory(config.model_repository, ec)) return absl::OkStatus();
  return CheckTenantModels(config, ListRepositoryModels(config.model_repository));
}

bool IsValidKeyHash(const std::string& s) {
  constexpr absl::string_view kPrefix = "sha256:";
  if (s.size() != kPrefix.size() + 64 || !absl::StartsWith(s, kPrefix)) return false;
  return std::all_of(s.begin() + kPrefix.size(), s.end(), [](char c) {
    return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
  });
}

absl::StatusOr<std::shared_ptr<const Config>> ParseConfig(const std::string& text,
                                                          const std::string& name,
                                                          const std::string& base_dir) {
  YAML::Node root;
  RETURN_IF_ERROR(LoadYamlString(text, name, &root));
  ConfigErrors errors(name);
  auto config = std::make_shared<Config>();
  config->source = name;
  MapReader r(root, "", &errors);
  if (YAML::Node n = r.Child("server"); n.IsDefined()) ReadServer(n, &config->server, &errors);
  r.Get("model_repository", &config->model_repository);
  if (YAML::Node n = r.Child("scheduler"); n.IsDefined()) {
    ReadScheduler(n, &config->scheduler, &errors);
  }
  if (YAML::Node n = r.Child("rate_limit_backend"); n.IsDefined()) {
    ReadRateLimitBackend(n, &config->rate_limit_backend, &errors);
  }
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
