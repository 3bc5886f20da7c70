#include "nlohmann/json.hpp"
#include "fairserve/server/daemon.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cerrno>
#include <ctime>
#include <cstring>

#include <filesystem>
#include <map>
#include <set>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fairserve/admission/admission.h"
#include "fairserve/admission/redis_rate_limiter.h"
#include "fairserve/common/task_executor.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/metering/ledger.h"
#include "fairserve/metering/metrics.h"
#include "fairserve/metering/model_stats.h"
#include "fairserve/metering/server_metrics.h"
#include "fairserve/models/executor.h"
#include "fairserve/models/model_cache.h"
#include "fairserve/scheduling/batch_runner.h"
#include "fairserve/scheduling/scheduler.h"
#include "fairserve/server/access_log.h"
#include "fairserve/server/rejection_holder.h"
#include "fairserve/server/admin_service.h"
#include "fairserve/server/status_page.h"
#include "fairserve/metering/invoice.h"
#include "fairserve/tenancy/authenticator.h"
#include "absl/strings/match.h"
#include "fairserve/server/collectors.h"
#include "fairserve/server/tls.h"
#include "fairserve/server/http_server.h"
#include "fairserve/server/inference_service.h"
#include "fairserve/server/rest_api.h"
#include "fairserve/tenancy/tenant_registry.h"
#include "fairserve/version.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

absl::Status WriteReadyFile(const std::string& path, int grpc_port, int http_port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << nlohmann::ordered_json{{"grpc_port", grpc_port},
                                  {"http_port", http_port},
                                  {"pid", getpid()}}.dump()
        << "\n";
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ready file ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot write ready file ", path));
  return absl::OkStatus();
}

int Cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

// Parsing a large config (yaml-cpp's node tree, 10,000 tenants' worth) and
// building the tables leaves megabytes freed but still mapped in glibc's
// heap; hand them back so the resident size is what the server holds.
// Measured (bench/overhead.py --scale, 2-core VM): with 10,000 tenants the
// idle daemon's RSS went from 327 to 263 MiB (2 tenants: 171 MiB).
// With tcmalloc (linked in, docs/operations.md, or preloaded) its own call
// does this; glibc's malloc_trim would only trim glibc's unused heap.
void ReturnFreedMemory() {
  using Release = void (*)();
  static const auto tcmalloc_release =
      reinterpret_cast<Release>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"));
  if (tcmalloc_release != nullptr) {
    tcmalloc_release();
    return;
  }
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

// A device's workers: devices[].workers, else scheduler.workers, else one
// per core for the cpu and 2 per GPU. On CPU, one single-threaded worker
// per core ran mlp_large at 1.28x the samples/s of one worker with every
// core as intra-op threads, because a parallel region waits for its
// slowest thread and gRPC's threads keep taking one of the cores
// (bench/overhead.sh, docs/scheduling.md). On a GPU, two workers (two
// streams) let one batch's copies overlap another's kernels.
int Workers(const Config& config, const DeviceConfig& device) {
  if (device.workers > 0) return static_cast<int>(device.workers);
  if (config.scheduler.workers > 0) return static_cast<int>(config.scheduler.workers);
  return device.name == "cpu" ? Cores() : 2;
}

// libtorch intra-op threads per worker: scheduler.intra_op_threads, or the
// cores shared out among the cpu device's workers (GPU workers spend their
// time launching kernels, not in parallel regions).
int IntraOpThreads(const Config& config) {
  if (config.scheduler.intra_op_threads > 0) return static_cast<int>(config.scheduler.intra_op_threads);
  for (const DeviceConfig& d : config.devices) {
    if (d.name == "cpu") return std::max(1, Cores() / Workers(config, d));
  }
  return 1;
}

AuthThrottle::Options ThrottleOptions(const Config& config) {
  AuthThrottle::Options o;
  o.failures_per_second = config.server.auth_failures_per_second;
  o.burst = config.server.auth_failure_burst;
  return o;
}

}  // namespace

std::shared_ptr<const Config> ApplyFlags(const Config& config, const DaemonFlags& flags) {
  auto out = std::make_shared<Config>(config);
  if (flags.model_repository) out->model_repository = *flags.model_repository;
  if (flags.grpc_port) out->server.grpc_port = *flags.grpc_port;
  if (flags.http_port) out->server.http_port = *flags.http_port;
  if (flags.data_dir) out->server.data_dir = *flags.data_dir;
  return out;
}

Daemon::Daemon() = default;

Daemon::~Daemon() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const DaemonFlags& flags) {
  std::unique_ptr<Daemon> daemon(new Daemon());
  RETURN_IF_ERROR(daemon->Init(flags));
  return daemon;
}

absl::Status Daemon::Init(const DaemonFlags& flags) {
  started_ = std::chrono::steady_clock::now();
  flags_ = flags;
  spdlog::info("fairserve {} starting (config {})", kFairserveVersion, flags.config_path);
  ASSIGN_OR_RETURN(std::shared_ptr<const Config> loaded, LoadConfigFile(flags.config_path));
  std::shared_ptr<const Config> config = ApplyFlags(*loaded, flags);
  // Every subsystem exists before the first listener starts, so no call or
  // reload can reach something that is not built yet.
  RETURN_IF_ERROR(BuildMetering(*config));
  RETURN_IF_ERROR(BuildAccessControl(config));
  RETURN_IF_ERROR(BuildModels(*config));
  BuildScheduling(*config);
  BuildServices(*config);
  RETURN_IF_ERROR(CheckAgainstRepository(*config));
  RETURN_IF_ERROR(StartListeners(*config));
  WatchConfigFile();
  if (config->model_repository_poll_s > 0) {
    Every("fs-repo-poll", std::chrono::seconds(config->model_repository_poll_s), [this] {
      if (absl::Status s = models_->Rescan(); !s.ok()) {
        spdlog::error("model repository rescan (polling): {}", std::string(s.message()));
      }
    });
  }
  // The status page's last-hour charts take a point from the metrics.
  Every("fs-status-hist", std::chrono::seconds(config->server.status_sample_interval_s), [this] {
    status_history_->Record(
        std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(),
        registry_->Collect());
  });

  ready_.store(true);
  grpc_server_->GetHealthCheckService()->SetServingStatus(true);
  double cold_start =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  spdlog::info("serving: gRPC on {}:{}, HTTP on {}:{} (started in {:.3f} s)",
               config->server.listen_address, grpc_port_, config->server.listen_address,
               http_port_, cold_start);
  ReturnFreedMemory();
  if (!flags.ready_file.empty()) {
    RETURN_IF_ERROR(WriteReadyFile(flags.ready_file, grpc_port_, http_port_));
  }
  return absl::OkStatus();
}

absl::Status Daemon::BuildMetering(const Config& config) {
  access_log_ = std::make_unique<AccessLog>(config.server.access_log_queue_lines);
  ApplyLogging(config);
  registry_ = std::make_unique<Registry>();
  registry_->AddCollectable([this] { return CollectAccessLogMetrics(*access_log_); });
  RejectionHolder::Options hold;
  hold.per_tenant = static_cast<size_t>(config.server.rejection_hold_per_tenant);
  hold.max_hold = std::chrono::milliseconds(config.server.rejection_hold_max_ms);
  rejection_holder_ = std::make_unique<RejectionHolder>(hold, SteadyClock::Get());
  registry_->AddCollectable([this] { return CollectRejectionHoldMetrics(*rejection_holder_); });
  metrics_ = std::make_unique<ServerMetrics>(*registry_);
  registry_->AddGauge("fairserve_build_info", "Always 1; labels name the build")
      .Add({{"version", kFairserveVersion}})
      .Set(1);
  registry_->AddGauge("process_start_time_seconds", "Start time of the process, Unix seconds")
      .Add({})
      .Set(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
               .count());
  Family<Counter>& reloads = registry_->AddCounter("fairserve_config_reloads_total",
                                                   "Config reloads by result (ok, error)");
  reloads_ok_ = &reloads.Add({{"result", "ok"}});
  reloads_error_ = &reloads.Add({{"result", "error"}});

  std::error_code ec;
  std::filesystem::create_directories(config.server.data_dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create data_dir '", config.server.data_dir, "': ", ec.message()));
  }
  LedgerWriter::Options ledger;
  ledger.path = LedgerPath(config.server.data_dir);
  ledger.replica = config.server.replica_id;
  if (ledger.replica.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    ledger.replica = host;
  }
  ledger.registry = registry_.get();
  const UsageSinkConfig& sink = config.ledger.sink;
  ledger.outbox = sink.type == UsageSinkType::kPostgres;
  ledger.durability = config.ledger.durability == LedgerDurability::kReplyAfterCommit
                          ? Durability::kReplyAfterCommit
                          : Durability::kAsync;
  ASSIGN_OR_RETURN(ledger_, LedgerWriter::Open(ledger));
  spdlog::info("usage ledger: {} (replica '{}', ledger id {}, durability {}: {})", ledger.path,
               ledger.replica, ledger_->ledger_id(), std::string(Name(config.ledger.durability)),
               ledger.durability == Durability::kAsync
                   ? "group commits every 100 ms, replies do not wait"
                   : "replies wait for the group commit of their batch");
  if (sink.type == UsageSinkType::kPostgres) {
    UsageShipper::Options options;
    options.db.dsn = sink.dsn;
    options.db.table_prefix = sink.table_prefix;
    options.batch_rows = sink.batch_rows;
    options.flush_interval = std::chrono::milliseconds(sink.flush_interval_ms);
    options.registry = registry_.get();
    shipper_ = std::make_unique<UsageShipper>(*ledger_, options);
    // Admin reads get a shorter bound than shipping: a caller is waiting.
    PostgresOptions reads = options.db;
    reads.statement_timeout = std::chrono::seconds(5);
    fleet_usage_ = std::make_unique<PostgresUsage>(reads);
    spdlog::info("usage sink: PostgreSQL (tables {}*), shipping every {} ms; the database "
                 "is not needed to start or serve",
                 sink.table_prefix, sink.flush_interval_ms);
  }
  return absl::OkStatus();
}

absl::Status Daemon::BuildAccessControl(const std::shared_ptr<const Config>& config) {
  admission_ = std::make_unique<Admission>(SteadyClock::Get());
  RETURN_IF_ERROR(StartRateLimitBackend(*config));
  runtime_.Set(std::make_shared<RuntimeSnapshot>(RuntimeSnapshot{
      std::make_shared<TenantRegistry>(config), admission_->BuildTable(*config, nullptr)}));
  auth_throttle_ = std::make_unique<AuthThrottle>(SteadyClock::Get(), ThrottleOptions(*config));
  authenticator_ = std::make_unique<Authenticator>(*auth_throttle_,
                                                   [this] { metrics_->Unauthenticated(); });
  registry_->AddCollectable([this] { return CollectAuthThrottleMetrics(*auth_throttle_); });
  registry_->AddCollectable(
      [this] { return CollectAdmissionMetrics(*runtime_.Get()->admission); });
  // Tenant settings as gauges, read from the live snapshot at each scrape
  // (so they follow reloads): alert and cost rules join on them.
  registry_->AddCollectable([this] { return CollectTenantSettings(*runtime_.Get()->tenants); });
  metrics_->SetRejectionSource([this] {
    std::vector<std::pair<std::string, double>> out;
    runtime_.Get()->admission->ForEach([&](const std::string& id, TenantAdmission& t) {
      out.emplace_back(id, static_cast<double>(t.rejected_total()));
    });
    return out;
  });
  for (const TenantConfig& t : config->tenants) {
    spdlog::info("tenant '{}': weight {}, {} key(s), models [{}]", t.id, t.weight,
                 t.api_key_hashes.size(), absl::StrJoin(t.models, ", "));
  }
  return absl::OkStatus();
}

absl::Status Daemon::BuildModels(const Config& config) {
  ConfigureTorchRuntime({IntraOpThreads(config)});
  RETURN_IF_ERROR(PrepareDevices(config.devices));
  models_ = std::make_unique<ModelCache>(MakeTorchModelLoader(), SteadyClock::Get());
  RETURN_IF_ERROR(models_->Scan(config.model_repository));
  models_->SetLimits(config);
  for (const ModelState& m : models_->Index()) {
    spdlog::info("model '{}' version '{}': {}{}", m.name, m.version, m.state,
                 m.reason.empty() ? "" : " (" + m.reason + ")");
  }
  RETURN_IF_ERROR(models_->Preload());
  registry_->AddCollectable([this] { return CollectModelMetrics(*models_); });
  return absl::OkStatus();
}

void Daemon::BuildScheduling(const Config& config) {
  stats_ = std::make_unique<ModelStats>();
  runner_ = std::make_unique<BatchRunner>(
      SteadyClock::Get(), std::vector<BatchObserver*>{metrics_.get(), ledger_.get(), stats_.get()},
      ledger_.get());
  std::map<std::string, std::unique_ptr<Scheduler>> per_device;
  for (const DeviceConfig& device : config.devices) {
    SchedulerOptions options;
    options.policy = std::string(Name(config.scheduler.policy));
    options.workers = Workers(config, device);
    options.max_queue_wait = std::chrono::microseconds(
        static_cast<int64_t>(config.scheduler.max_queue_wait_s * 1e6));
    options.thread_init = [] { PrepareTorchWorkerThread(); };
    options.thread_name = "fs-" + device.name;  // fs-cpu-0, fs-cuda:0-1
    // Only on the cpu, and only with one intra-op thread: a caller thread
    // running a parallel region would start an OpenMP team of its own, and
    // a GPU batch waits for its stream.
    if (device.name == "cpu" && IntraOpThreads(config) == 1) {
      options.run_on_caller_below =
          std::chrono::microseconds(config.scheduler.run_on_caller_below_us);
    }
    per_device[device.name] = MakeScheduler(options, SteadyClock::Get(), *runner_);
    if (device.name == "cpu") {
      spdlog::info("scheduler on cpu: policy {}, {} worker(s), {} intra-op thread(s) each",
                   options.policy, options.workers, IntraOpThreads(config));
    } else {
      spdlog::info("scheduler on {}: policy {}, {} worker(s), one CUDA stream each", device.name,
                   options.policy, options.workers);
    }
  }
  scheduler_ = MakeDeviceScheduler(std::move(per_device));
  registry_->AddCollectable([this] { return CollectSchedulerMetrics(*scheduler_); });
  executor_ = std::make_unique<TaskExecutor>(2, "fs-calls");
}

void Daemon::BuildServices(const Config& config) {
  InferenceServiceDeps deps;
  deps.call.runtime = &runtime_;
  deps.call.authenticator = authenticator_.get();
  deps.call.admission = admission_.get();
  deps.call.models = models_.get();
  deps.call.scheduler = scheduler_.get();
  deps.call.metrics = metrics_.get();
  deps.call.access_log = access_log_.get();
  deps.call.rejection_holder = rejection_holder_.get();
  deps.call.clock = &SteadyClock::Get();
  deps.call.executor = executor_.get();
  deps.call.ready = &ready_;
  deps.call.max_response_bytes = config.server.max_message_bytes;
  deps.stats = stats_.get();
  deps.stream_max_in_flight = static_cast<int>(config.server.stream_max_in_flight);
  service_ = std::make_unique<InferenceService>(deps);
  rest_ = std::make_unique<RestApi>(service_->call_deps(), stats_.get(), kFairserveVersion);
  AdminServiceDeps admin_deps;
  admin_deps.runtime = &runtime_;
  admin_deps.usage = fleet_usage_ ? static_cast<UsageSource*>(fleet_usage_.get()) : ledger_.get();
  admin_deps.clock = &SteadyClock::Get();
  admin_deps.authenticator = authenticator_.get();
  admin_deps.reload = [this] { return Reload("admin RPC"); };
  admin_service_ = std::make_unique<AdminService>(admin_deps);
  StatusPageDeps page;
  page.runtime = &runtime_;
  page.authenticator = authenticator_.get();
  page.models = models_.get();
  page.metrics = metrics_.get();
  page.ledger = ledger_.get();
  status_history_ = std::make_unique<StatusHistory>(
      static_cast<size_t>(3600 / config.server.status_sample_interval_s));
  page.history = status_history_.get();
  page.started = started_;
  status_page_ = std::make_unique<StatusPage>(page);
}

absl::Status Daemon::StartListeners(const Config& config) {
  if (shipper_) shipper_->Start();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string address = absl::StrCat(config.server.listen_address, ":", config.server.grpc_port);
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (config.server.tls.enabled()) {
    ASSIGN_OR_RETURN(std::string described, CheckTlsFiles(config.server.tls));
    spdlog::info("gRPC TLS: {} (files re-read every {} s)", described,
                 config.server.tls.refresh_interval_s);
    credentials = MakeServerCredentials(config.server.tls);
  } else {
    spdlog::info("gRPC without TLS (server.tls not set): terminate TLS in front of it, or "
                 "API keys travel in the clear");
  }
  builder.AddListeningPort(address, credentials, &grpc_port_);
  // Without this, gRPC sets SO_REUSEPORT and a second daemon on the same port
  // would silently share it instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.server.max_message_bytes));
  // Bounds on what a flood of calls can make gRPC hold before our admission
  // sees them: memory for calls and buffers, and calls open per connection.
  grpc::ResourceQuota quota("fairserve-grpc");
  quota.Resize(config.server.grpc_memory_limit);
  builder.SetResourceQuota(quota);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(config.server.max_concurrent_streams));
  builder.SetMaxSendMessageSize(static_cast<int>(config.server.max_message_bytes));
  builder.RegisterService(service_.get());
  builder.RegisterService(admin_service_.get());
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_ || grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for gRPC on ", address,
        " (port in use or not permitted); choose another with --grpc-port or server.grpc_port"));
  }
  if (config.server.http_port < 0) return absl::OkStatus();
  HttpServer::Handlers handlers;
  handlers.live = [] { return true; };
  handlers.ready = [this] { return ready_.load(); };
  handlers.metrics = [this] { return SerializeText(registry_->Collect()); };
  handlers.status = [this](const std::string& addr, const std::string& auth) {
    return status_page_->Respond(addr, auth);
  };
  handlers.install = [this](httplib::Server& s) { rest_->Install(s); };
  handlers.max_body_bytes = config.server.max_message_bytes;
  if (config.server.tls.enabled()) {
    // The same certificate, client CAs and rotation as gRPC: a key must
    // never cross one port in clear text while the other is encrypted.
    ASSIGN_OR_RETURN(handlers.tls, HttpsContext::Create(config.server.tls));
    spdlog::info("HTTP port serves HTTPS only (server.tls), with the gRPC port's certificate{}",
                 config.server.tls.mutual() ? " and client certificate checks" : "");
  }
  ASSIGN_OR_RETURN(http_, HttpServer::Start(config.server.listen_address,
                                            static_cast<int>(config.server.http_port),
                                            std::move(handlers)));
  http_port_ = http_->port();
  return absl::OkStatus();
}

absl::Status Daemon::StartRateLimitBackend(const Config& config) {
  const RateLimitBackendConfig& b = config.rate_limit_backend;
  if (b.type != RateLimitBackendType::kRedis) {
    spdlog::info("rate limits: local to this replica (rate_limit_backend.type local)");
    return absl::OkStatus();
  }
  Histogram& latency = registry_->AddHistogram(
      "fairserve_rate_limit_backend_check_seconds",
      "Round trip of one shared rate-limit check (queued to answered)",
      ExponentialBounds(0.00001, 2, 16)).Add({});
  RedisRateLimiter::Options options;
  options.address = b.address;
  options.timeout = std::chrono::milliseconds(b.timeout_ms);
  options.failure_note =
      b.on_failure == FailurePolicy::kAllow
          ? absl::StrCat("until it is back each tenant gets 1/", b.replicas,
                         " of its rate from a local bucket (on_failure: allow)")
          : "until it is back rate-limited requests get UNAVAILABLE (on_failure: deny)";
  options.observe_latency = [&latency](double s) { latency.Observe(s); };
  ASSIGN_OR_RETURN(rate_limiter_, RedisRateLimiter::Create(options));
  Admission::SharedPolicy policy;
  policy.allow_on_failure = b.on_failure == FailurePolicy::kAllow;
  policy.replicas = b.replicas;
  policy.key_prefix = b.key_prefix;
  admission_->SetSharedLimiter(rate_limiter_, policy);
  registry_->AddCollectable([this] { return CollectRateLimiterMetrics(*rate_limiter_); });
  if (rate_limiter_->WaitUntilUp(std::chrono::milliseconds(std::max<int64_t>(b.timeout_ms, 500)))) {
    spdlog::info("rate limits: shared through {} (key prefix '{}', timeout {} ms, on_failure {})",
                 rate_limiter_->Describe(), b.key_prefix, b.timeout_ms, std::string(Name(b.on_failure)));
  } else {
    spdlog::warn("rate limits: {} is not reachable yet; starting anyway, {}",
                 rate_limiter_->Describe(), options.failure_note);
  }
  return absl::OkStatus();
}

void Daemon::ApplyLogging(const Config& config) {
  if (!flags_.log_level_forced) {
    spdlog::set_level(spdlog::level::from_str(std::string(Name(config.server.log_level))));
  }
  access_log_->SetFormat(config.server.log_format == LogFormat::kJson  ? AccessLog::Format::kJson
                         : config.server.log_format == LogFormat::kOff ? AccessLog::Format::kOff
                                                                       : AccessLog::Format::kPlain);
}

absl::Status Daemon::CheckAgainstRepository(const Config& config) const {
  std::set<std::string> known;
  for (const ModelState& m : models_->Index()) known.insert(m.name);
  return CheckTenantModels(config, known);
}

absl::Status Daemon::Reload(const std::string& trigger) {
  std::lock_guard<std::mutex> lock(reload_mu_);
  auto fail = [&](const absl::Status& s) {
    reloads_error_->Increment();
    spdlog::error("config reload ({}) rejected, the old config stays: {}", trigger,
                  std::string(s.message()));
    return s;
  };
  // The model repository is rescanned first, whatever becomes of the
  // config: new model directories and versions appear, removed ones drain.
  if (absl::Status scanned = models_->Rescan(); !scanned.ok()) {
    spdlog::error("model repository rescan ({}): {}", trigger, std::string(scanned.message()));
  }
  absl::StatusOr<std::shared_ptr<const Config>> loaded = LoadConfigFile(flags_.config_path);
  if (!loaded.ok()) return fail(loaded.status());
  std::shared_ptr<const Config> next = ApplyFlags(**loaded, flags_);
  absl::Status known = CheckAgainstRepository(*next);
  if (!known.ok()) return fail(known);
  std::shared_ptr<const RuntimeSnapshot> current = runtime_.Get();
  if (next->server.tls.enabled()) {
    // The files themselves are re-read by gRPC; here a bad rotation is
    // reported at once instead of silently failing handshakes.
    absl::StatusOr<std::string> tls = CheckTlsFiles(next->server.tls);
    if (!tls.ok()) return fail(tls.status());
    spdlog::info("gRPC TLS: {}", *tls);
  }
  const ReloadDiff diff = DiffConfigs(current->config(), *next);
  // Everything checked: from here the reload is applied. Config, keys,
  // prices and admission table are published in one store, so no call ever
  // sees a key of one config with the limits of another
  // (docs/architecture.md, "Runtime state").
  runtime_.Set(std::make_shared<RuntimeSnapshot>(
      RuntimeSnapshot{std::make_shared<TenantRegistry>(next),
                      admission_->BuildTable(*next, current->admission.get())}));
  auth_throttle_->Reconfigure(ThrottleOptions(*next));
  models_->SetLimits(*next);
  ApplyLogging(*next);
  reloads_ok_->Increment();
  ReturnFreedMemory();  // the old snapshot and the parse tree are gone
  spdlog::info("config reloaded ({}): {} tenant(s){}{}", trigger, next->tenants.size(),
               diff.live.empty() ? "" : "; applied ", absl::StrJoin(diff.live, ", "));
  if (!diff.restart.empty()) {
    spdlog::warn("config reload: {} changed but only take effect after a restart",
                 absl::StrJoin(diff.restart, ", "));
  }
  return absl::OkStatus();
}

void Daemon::WatchConfigFile() {
  // inotify on the file's directory: editors and ConfigMap updates replace
  // the file (rename, symlink swap) rather than writing it in place.
  int fd = inotify_init1(IN_CLOEXEC);
  if (fd < 0) {
    spdlog::warn("cannot watch {} for changes (inotify: {}); reload with SIGHUP",
                 flags_.config_path, std::strerror(errno));
    return;
  }
  std::filesystem::path path = std::filesystem::absolute(flags_.config_path);
  std::string dir = path.parent_path().string();
  if (inotify_add_watch(fd, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
    spdlog::warn("cannot watch {} for changes; reload with SIGHUP", dir);
    close(fd);
    return;
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    close(fd);
    return;
  }
  watch_stop_fd_ = pipe_fds[1];
  std::string name = path.filename().string();
  watcher_ = std::thread([this, fd, stop = pipe_fds[0], name] {
    alignas(inotify_event) char buf[4096];
    while (true) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {stop, POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
      if (fds[1].revents) break;
      if (!(fds[0].revents & POLLIN)) continue;
      ssize_t n = read(fd, buf, sizeof(buf));
      bool ours = false;
      for (ssize_t off = 0; off < n;) {
        auto* ev = reinterpret_cast<inotify_event*>(buf + off);
        // Kubernetes ConfigMaps swap a "..data" symlink; count that too.
        if (ev->len > 0 && (name == ev->name || std::string(ev->name) == "..data")) ours = true;
        off += sizeof(inotify_event) + ev->len;
      }
      if (!ours) continue;
      // Let a burst of writes settle before reading the file.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      while (poll(fds, 1, 0) > 0 && read(fd, buf, sizeof(buf)) > 0) {
      }
      Reload("file changed").IgnoreError();
    }
    close(fd);
    close(stop);
  });
}

void Daemon::Every(const char* name, std::chrono::seconds period, std::function<void()> work) {
  periodic_.emplace_back([this, name, period, work = std::move(work)] {
    pthread_setname_np(pthread_self(), name);
    std::unique_lock<std::mutex> lock(periodic_mu_);
    while (!periodic_cv_.wait_for(lock, period, [this] { return periodic_stop_; })) {
      lock.unlock();
      work();
      lock.lock();
    }
  });
}

void Daemon::Shutdown() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(periodic_mu_);
    periodic_stop_ = true;
  }
  periodic_cv_.notify_all();
  for (std::thread& t : periodic_) t.join();
  periodic_.clear();
  if (watch_stop_fd_ >= 0) {
    if (write(watch_stop_fd_, "x", 1) < 0) {
    }
    if (watcher_.joinable()) watcher_.join();
    close(watch_stop_fd_);
    watch_stop_fd_ = -1;
  }
  ready_.store(false);
  std::shared_ptr<const RuntimeSnapshot> runtime = runtime_.Get();
  std::shared_ptr<const Config> config = runtime ? runtime->tenants->config_ptr() : nullptr;
  double drain = config ? config->server.drain_timeout_s : 0;
  if (grpc_server_) {
    spdlog::info("shutting down: draining queued and running requests (up to {} s)", drain);
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  }
  // A short grace period in which calls still arrive and are answered
  // UNAVAILABLE ("not ready, retry on another replica") while load balancers
  // notice the failing readiness; closing the port at once would make gRPC
  // cancel calls that are already on the wire.
  std::this_thread::sleep_for(std::chrono::milliseconds(
      static_cast<int64_t>(1000 * std::min(drain, config ? config->server.shutdown_grace_s : 0))));
  // gRPC first: it stops taking calls and waits (up to the drain time) for
  // the calls it already has, which the still-running scheduler completes.
  // Stopping the scheduler first would cut off calls that gRPC had received
  // but not yet handed to us.
  auto drain_for = std::chrono::milliseconds(static_cast<int64_t>(drain * 1000));
  // Held refusals are answered now, not at their retry point.
  if (rejection_holder_) rejection_holder_->Stop();
  if (grpc_server_) {
    grpc_server_->Shutdown(std::chrono::system_clock::now() + drain_for);
    grpc_server_->Wait();
  }
  // Every call has been answered: nothing more is posted to the executor.
  if (executor_) executor_->Shutdown();
  if (scheduler_) scheduler_->Shutdown(std::chrono::milliseconds(0));
  // HTTP stops before anything its handlers read (/metrics collects from the
  // rate limiter) goes away.
  if (http_) http_->Stop();
  // No call is left to ask it; checks still queued are answered "failed".
  rate_limiter_.reset();
  if (ledger_) {
    ledger_->Close();
    spdlog::info("usage ledger flushed");
  }
  if (shipper_) {
    // The last window is committed locally; ship it if the database is
    // there, within a bounded wait (else it ships after the next start).
    shipper_->Stop(std::chrono::seconds(5));
    spdlog::info("usage sink stopped");
  }
  spdlog::info("stopped");
}

}  // namespace fairserve
