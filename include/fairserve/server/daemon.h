#ifndef FAIRSERVE_SERVER_DAEMON_H_
#define FAIRSERVE_SERVER_DAEMON_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <optional>
#include <chrono>
#include <mutex>
#include <utility>
#include <string>
#include <thread>
#include <vector>
#include <functional>

#include "absl/status/statusor.h"
#include "fairserve/common/snapshot.h"
#include "fairserve/config/config.h"
#include "fairserve/metering/metrics.h"
#include "fairserve/metering/postgres_usage.h"
#include "fairserve/server/runtime.h"
#include "fairserve/server/status_history.h"

namespace grpc {
class Server;
}

namespace fairserve {

class Admission;
class AuthThrottle;
class TaskExecutor;
class Authenticator;
class RedisRateLimiter;
class LedgerWriter;
class Registry;
class ServerMetrics;
class AccessLog;
class RejectionHolder;
class ModelStats;
class StatusPage;
class AdminService;
class HttpServer;
class InferenceService;
class RestApi;
class ModelCache;
class Scheduler;
class BatchRunner;
class TenantRegistry;

// Command-line settings that override the config file.
struct DaemonFlags {
  std::string config_path;
  std::optional<std::string> model_repository;
  std::optional<int64_t> grpc_port;
  std::optional<int64_t> http_port;
  std::optional<std::string> data_dir;
  // When set, {"grpc_port":N,"http_port":M,"pid":P} is written here once the
  // daemon serves (how tests and scripts learn ports chosen with port 0).
  std::string ready_file;
  // --log-level given: it wins over server.log_level.
  bool log_level_forced = false;
};

// The whole server: config, models, scheduler, gRPC and HTTP endpoints.
class Daemon {
 public:
  // Loads config and models, binds the ports and starts serving. Fails with a
  // message for the operator on a bad config, an unreadable repository or a
  // port in use.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const DaemonFlags& flags);
  ~Daemon();

  // Graceful stop: readiness goes false, new requests get UNAVAILABLE, queued
  // and running requests get up to server.drain_timeout_s to finish, then
  // the endpoints close. Idempotent; call from one thread.
  void Shutdown();

  // Re-reads the config file and swaps tenants, keys, weights, limits,
  // allowed models and pricing in one atomic step. Requests in flight finish
  // under the snapshot they started with. A bad file is rejected whole and
  // the old config stays. Thread-safe; called on SIGHUP, on a change of the
  // file, and by the admin Reload RPC.
  absl::Status Reload(const std::string& trigger);

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }

 private:
  Daemon();
  // Builds every subsystem in dependency order, then starts the listeners.
  absl::Status Init(const DaemonFlags& flags);
  // Access log, metrics registry, usage ledger.
  absl::Status BuildMetering(const Config& config);
  // Tenants, admission (and its Redis backend), the failed-login throttle,
  // the authenticator.
  absl::Status BuildAccessControl(const std::shared_ptr<const Config>& config);
  // The model cache: scan, limits, preload.
  absl::Status BuildModels(const Config& config);
  // Batch runner, scheduler and its workers, the call executor.
  void BuildScheduling(const Config& config);
  // The gRPC services and the status page.
  void BuildServices(const Config& config);
  // gRPC, then HTTP: last, once everything they reach exists.
  absl::Status StartListeners(const Config& config);
  // Applies the settings that follow reloads: log level and access-log format.
  void ApplyLogging(const Config& config);
  // rate_limit_backend redis: connects (in the background) and makes
  // admission ask Redis. Does not fail when Redis is down.
  absl::Status StartRateLimitBackend(const Config& config);
  // Checks what a config needs from the running daemon (known models).
  absl::Status CheckAgainstRepository(const Config& config) const;
  void WatchConfigFile();
  // Runs `work` every `period` on a thread of its own named `name`, until
  // Shutdown (which wakes it at once). For the repository poll and the
  // status page's samples.
  void Every(const char* name, std::chrono::seconds period, std::function<void()> work);

  DaemonFlags flags_;
  std::vector<std::thread> periodic_;  // Every()'s threads
  std::mutex periodic_mu_;
  std::condition_variable periodic_cv_;
  bool periodic_stop_ = false;  // guarded by periodic_mu_
  std::unique_ptr<StatusHistory> status_history_;
  std::mutex reload_mu_;
  std::thread watcher_;
  int watch_stop_fd_ = -1;
  // The config (prices included), the tenant registry and the admission
  // table, replaced whole, in one atomic store, on reload.
  Runtime runtime_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<Admission> admission_;
  std::shared_ptr<RedisRateLimiter> rate_limiter_;  // rate_limit_backend redis only
  std::unique_ptr<AuthThrottle> auth_throttle_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<LedgerWriter> ledger_;
  // ledger.sink postgres only: ships the ledger's outbox, and reads the
  // fleet's usage for the admin RPCs.
  std::unique_ptr<UsageShipper> shipper_;
  std::unique_ptr<PostgresUsage> fleet_usage_;
  std::unique_ptr<ModelCache> models_;
  std::unique_ptr<BatchRunner> runner_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<AccessLog> access_log_;
  std::unique_ptr<RejectionHolder> rejection_holder_;
  std::unique_ptr<ModelStats> stats_;
  // Continuations of calls whose previous step ended on another component's
  // thread (Redis I/O, model loader).
  std::unique_ptr<TaskExecutor> executor_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<RestApi> rest_;  // reads service_'s InferCallDeps
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  // Declared before what serves it: members are destroyed in reverse order,
  // so nothing is freed while something that reaches it still runs.
  std::unique_ptr<StatusPage> status_page_;
  std::unique_ptr<HttpServer> http_;
  std::chrono::steady_clock::time_point started_;
  // fairserve_config_reloads_total{result="ok"|"error"}.
  Counter* reloads_ok_ = nullptr;
  Counter* reloads_error_ = nullptr;
  int grpc_port_ = 0;
  int http_port_ = -1;
  bool stopped_ = false;
};

// Applies command-line overrides to a loaded config.
std::shared_ptr<const Config> ApplyFlags(const Config& config, const DaemonFlags& flags);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_DAEMON_H_
