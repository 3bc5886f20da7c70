#ifndef FAIRSERVE_CONFIG_CONFIG_H_
#define FAIRSERVE_CONFIG_CONFIG_H_

// The daemon's configuration: one YAML file (see docs/configuration.md).
// A Config is immutable once loaded; the daemon shares it as
// std::shared_ptr<const Config> and swaps the pointer on reload.

#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fairserve {

// The settings that are one of a fixed set of names. Each Name() gives the
// spelling used in the config file.
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };
enum class LogFormat { kPlain, kJson, kOff };
enum class StatusPageMode { kLoopback, kAdmin, kOff };
enum class SchedulingPolicy { kFair, kFifo };
enum class RateLimitBackendType { kLocal, kRedis };
enum class FailurePolicy { kAllow, kDeny };
enum class UsageSinkType { kNone, kPostgres };
enum class LedgerDurability { kAsync, kReplyAfterCommit };
absl::string_view Name(LogLevel v);
absl::string_view Name(LogFormat v);
absl::string_view Name(StatusPageMode v);
absl::string_view Name(SchedulingPolicy v);
absl::string_view Name(RateLimitBackendType v);
absl::string_view Name(FailurePolicy v);
absl::string_view Name(UsageSinkType v);
absl::string_view Name(LedgerDurability v);

// TLS on the gRPC port. Off unless cert_file and key_file are given.
struct TlsConfig {
  std::string cert_file;       // PEM certificate chain of the server
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // PEM roots that client certificates must chain to (mTLS)
  // With client_ca_file: refuse clients without a valid certificate (true),
  // or verify one only when presented (false).
  bool require_client_cert = true;
  // How often the files are re-read; a changed certificate or key applies to
  // new connections within this time (SIGHUP also validates them at once).
  int64_t refresh_interval_s = 1;

  bool enabled() const { return !cert_file.empty(); }
  bool mutual() const { return !client_ca_file.empty(); }
};

struct ServerConfig {
  std::string listen_address = "0.0.0.0";
  int64_t grpc_port = 8001;  // 0 picks a free port.
  int64_t http_port = 8000;  // 0 picks a free port; -1 disables HTTP.
  std::string data_dir = "data";
  // Key hashes ("sha256:...") that may call the admin service.
  std::vector<std::string> admin_api_key_hashes;
  // Who may open /status: loopback (default), admin (an admin key as
  // Authorization: Bearer), or off.
  StatusPageMode status_page = StatusPageMode::kLoopback;
  // How often the status page's charts take a point (they show the last hour).
  int64_t status_sample_interval_s = 10;
  // trace, debug, info, warn, error (reloadable).
  LogLevel log_level = LogLevel::kInfo;
  // Access log lines: plain, json, or off (reloadable).
  LogFormat log_format = LogFormat::kPlain;
  // Access-log lines queued for the access-log thread; beyond it the oldest
  // are dropped and counted (fairserve_access_log_dropped_total).
  int64_t access_log_queue_lines = 8192;
  // Tags this replica's usage-ledger rows; empty = the host name.
  std::string replica_id;
  TlsConfig tls;
  // Failed authentications a peer address may make per second (and in a
  // burst) before all its calls are refused for a while; 0 = no throttle.
  double auth_failures_per_second = 5;
  double auth_failure_burst = 20;
  // Memory gRPC may use for calls and buffers before it pushes back on
  // clients (flow control), and calls one connection may have open.
  uint64_t grpc_memory_limit = 1ull << 30;
  int64_t max_concurrent_streams = 1024;
  // Requests one ModelStreamInfer stream may have read and not yet answered;
  // at the bound the server stops reading that stream (flow control).
  int64_t stream_max_in_flight = 64;
  // Rate-limited refusals on gRPC are answered at their retry point instead
  // of at once (RejectionHolder), up to this many held per tenant; 0 = off.
  int64_t rejection_hold_per_tenant = 0;
  // The longest a refusal is held.
  int64_t rejection_hold_max_ms = 1000;
  // Largest gRPC message accepted, in bytes.
  uint64_t max_message_bytes = 64ull << 20;
  // Seconds that queued and running requests get to finish on SIGTERM.
  double drain_timeout_s = 30.0;
  // On SIGTERM, seconds during which new calls are still answered (with
  // UNAVAILABLE) before the port closes; part of the drain time.
  double shutdown_grace_s = 0.5;
};

struct SchedulerConfig {
  // fair (weighted fair queuing on measured cost) or fifo (one global queue).
  SchedulingPolicy policy = SchedulingPolicy::kFair;
  // Worker threads that run batches; 0 = one per core for the cpu device
  // and one per GPU.
  int64_t workers = 0;
  // libtorch intra-op threads per worker; 0 = cores / workers (1 by default
  // on CPU).
  int64_t intra_op_threads = 0;
  // Longest a request may wait in a queue before it is answered DEADLINE_EXCEEDED.
  double max_queue_wait_s = 30.0;
  // A cpu batch that is ready at once, with nothing queued and a worker's
  // slot free, runs on the thread its call arrived on (the call's own gRPC
  // callback or REST handler thread) when its measured cost is below this,
  // saving the hand-off to a worker. 0 = always hand off. Only with one
  // intra-op thread per worker (docs/scheduling.md).
  int64_t run_on_caller_below_us = 100;
};

// Where tenants' rate limits live. "local": each replica keeps its own token
// buckets (a tenant gets its rate on every replica). "redis": one GCRA bucket
// per tenant in Redis, shared by every replica, so the rate holds fleet-wide.
struct RateLimitBackendConfig {
  RateLimitBackendType type = RateLimitBackendType::kLocal;
  // Redis: "host:port" or "unix:/path/to/socket".
  std::string address = "127.0.0.1:6379";
  // Prefix of the Redis keys (one per tenant: <prefix>rl:<tenant_id>).
  std::string key_prefix = "fairserve:";
  // A check Redis has not answered in this time counts as a failure.
  int64_t timeout_ms = 50;
  // While Redis is down or slow: allow (a local bucket at 1/replicas of the
  // rate) or deny (UNAVAILABLE).
  FailurePolicy on_failure = FailurePolicy::kAllow;
  // Replicas sharing the limits; sizes the local fallback buckets.
  int64_t replicas = 1;
};

// Where committed usage is shipped besides the local SQLite ledger (which
// stays the durable write-ahead record): "postgres" ships every committed
// window to one PostgreSQL database shared by the fleet, exactly once
// (docs/billing.md, "Fleet billing").
struct UsageSinkConfig {
  UsageSinkType type = UsageSinkType::kNone;
  // libpq connection string or URI. Set either `dsn` or `dsn_env`, the name
  // of an environment variable holding it (filled from a Kubernetes Secret),
  // so that a password never sits in the ConfigMap. After parsing, `dsn`
  // holds the value either way; it is never logged.
  std::string dsn;
  std::string dsn_env;
  // Names of the tables: <table_prefix>usage, <table_prefix>ledgers, ...
  std::string table_prefix = "fairserve_";
  // Rows one shipping transaction carries at most (whole windows; a window
  // larger than this goes alone).
  int64_t batch_rows = 5000;
  // How often the shipper looks for committed windows.
  int64_t flush_interval_ms = 1000;
};

struct LedgerConfig {
  // async: a reply leaves once the ledger has its batch in memory (a kill -9
  // loses at most the last 100 ms of answered usage). reply_after_commit: a
  // reply waits for the group commit that holds its batch, so no answered
  // request is ever unbilled (docs/billing.md has the latency cost).
  LedgerDurability durability = LedgerDurability::kAsync;
  UsageSinkConfig sink;
};

// The one reader of device names ("cpu", "cuda:N"): -1 for the cpu, N for
// cuda:N; INVALID_ARGUMENT "unknown device 'x'; use cpu or cuda:N" else.
// Used by the server config, model configs and the executor alike.
absl::StatusOr<int> ParseDeviceName(const std::string& name);

struct DeviceConfig {
  std::string name = "cpu";  // "cpu" or "cuda:N"
  uint64_t memory_budget = 0;  // bytes; 0 = unlimited
  // Worker threads running this device's batches; 0 = scheduler.workers
  // when set, else one per core on cpu and 2 per GPU (two streams, so one
  // batch's copies overlap another's compute).
  int64_t workers = 0;
};

struct RateLimitConfig {
  double requests_per_second = 0;  // 0 = unlimited
  double burst = 0;                // 0 = max(1, requests_per_second)
};

// What `fairctl k8s render` puts in a tenant's ResourceQuota and LimitRange.
struct KubernetesQuota {
  int64_t gpus = 1;
  std::string cpu = "4";
  std::string memory = "16Gi";
  int64_t pods = 10;
  int64_t max_gpus_per_container = 1;
  int64_t default_gpus_per_container = 1;
};

struct TenantConfig {
  std::string id;
  // Each "sha256:<64 lowercase hex>": the hash of one API key.
  std::vector<std::string> api_key_hashes;
  // Client-certificate names (subject CN or a SAN) that authenticate as this
  // tenant when the call carries no API key (needs server.tls.client_ca_file).
  std::vector<std::string> client_cert_names;
  double weight = 1.0;
  RateLimitConfig rate_limit;
  int64_t max_inflight = 0;   // 0 = unlimited
  // Requests admitted and not yet running (waiting for a rate-limit answer,
  // a model load, decoding, or in a queue), per tenant.
  int64_t max_queue = 1024;
  // Payload bytes the tenant's admitted, unanswered requests may hold; with
  // max_queue it bounds the memory one tenant can park in the server.
  uint64_t max_pending_bytes = 512ull << 20;
  uint64_t memory_limit = 0;  // bytes; 0 = no own quota
  double memory_share_percent = 0;
  int64_t max_batch_size = 0;  // 0 = the model's limit
  // Cache misses (model loads) this tenant may cause per second; 0 = no limit.
  double model_loads_per_second = 10;
  // Model names this tenant may use; "*" allows every shared model.
  std::vector<std::string> models;
  KubernetesQuota kubernetes;

  bool AllowsModel(const std::string& model_name) const;
  // The tenant's own memory partition on a device with `budget` bytes:
  // memory_limit, or memory_share_percent of the budget; 0 = none (the
  // tenant uses the shared pool). The one quota formula, used by the model
  // cache, the status page and the config check.
  uint64_t MemoryQuota(uint64_t budget) const;
};

// A volume tier: compute beyond `above_compute_seconds` (within one invoice)
// is charged at `per_compute_second` instead.
struct PriceTier {
  double above_compute_seconds = 0;
  double per_compute_second = 0;
};

struct Prices {
  double per_compute_second = 0.0001;
  double per_1k_requests = 0.20;
  std::vector<PriceTier> tiers;  // ascending thresholds
};

struct PricingConfig {
  std::string currency = "USD";
  Prices defaults;
  // Per-tenant prices (each replaces the defaults whole for that tenant).
  std::map<std::string, Prices> tenants;

  const Prices& For(const std::string& tenant_id) const;
};

struct Config {
  std::string source;  // the file it came from, for messages
  ServerConfig server;
  std::string model_repository = "models";
  // Rescan the model repository every this many seconds (0: only on a
  // reload or RepositoryModelLoad).
  int64_t model_repository_poll_s = 0;
  SchedulerConfig scheduler;
  RateLimitBackendConfig rate_limit_backend;
  LedgerConfig ledger;
  std::vector<DeviceConfig> devices;
  std::vector<TenantConfig> tenants;
  PricingConfig pricing;
};

// Parses and validates a config. Relative paths (model_repository, data_dir)
// are resolved against the directory of `path`. On failure the status lists
// every problem found, each as "file:line:col: field: message".
absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path);
// Same for text; `name` stands for the file in messages, `base_dir` resolves
// relative paths. `fields_read`, when given, receives every setting path the
// parser looked up (see ConfigErrors::fields()).
absl::StatusOr<std::shared_ptr<const Config>> ParseConfig(
    const std::string& text, const std::string& name, const std::string& base_dir,
    std::set<std::string>* fields_read = nullptr);

// Every tenant's `models` must name a model of the repository (or be "*").
// INVALID_ARGUMENT listing each unknown name with the tenant it belongs to.
absl::Status CheckTenantModels(const Config& config, const std::set<std::string>& known);

// True when `s` may start PostgreSQL table names (ledger.sink.table_prefix):
// 1 to 40 lowercase letters, digits and '_', not starting with a digit.
bool IsValidTablePrefix(const std::string& s);

// True when `s` has the form "sha256:" followed by 64 lowercase hex digits.
bool IsValidKeyHash(const std::string& s);

// How a reload treats a change of one setting.
enum class ReloadEffect {
  kLive,     // applied by the reload
  kRestart,  // kept at its old value until the daemon restarts (logged)
};

struct ReloadDiff {
  std::vector<std::string> live;     // changed settings the reload applies
  std::vector<std::string> restart;  // changed settings that wait for a restart
};

// Compares two configs setting by setting, from one table that names every
// setting of the file (a test checks that every key the parser reads is in
// it). Settings are named as in the file, e.g. "scheduler.max_queue_wait_s".
ReloadDiff DiffConfigs(const Config& current, const Config& next);

// The table's entry for a field path as ConfigErrors::fields() writes it
// ("tenants[].weight"); nullptr when the table has none. An entry for a
// mapping or list ("tenants", "pricing") covers everything below it.
const ReloadEffect* FindReloadEffect(const std::string& field);

}  // namespace fairserve

#endif  // FAIRSERVE_CONFIG_CONFIG_H_
