// fairserve: the multi-tenant inference server daemon.

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <cstring>
#include <thread>

#include "absl/strings/numbers.h"
#include "fairserve/config/config.h"
#include "fairserve/server/daemon.h"
#include "fairserve/version.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace {

constexpr const char* kUsage = R"(usage: fairserve --config FILE [options]

Multi-tenant inference server (KServe v2 / Open Inference Protocol over gRPC).

options:
  --config FILE            tenants and server config (YAML), required
  --model-repository DIR   model repository (overrides model_repository)
  --grpc-port N            gRPC port; 0 picks a free one (overrides server.grpc_port)
  --http-port N            HTTP port for /metrics, /healthz, /readyz; 0 picks a free one,
                           -1 disables (overrides server.http_port)
  --data-dir DIR           usage ledger directory (overrides server.data_dir)
  --ready-file FILE        write {"grpc_port":..,"http_port":..,"pid":..} here once serving
  --check-config FILE      validate FILE, print every problem, exit 0 if valid
  --log-level LEVEL        trace, debug, info (default), warn, error
  --version                print the version
  -h, --help               this help

signals: SIGHUP reloads the config (so does saving the file); SIGTERM/SIGINT drain
and exit 0 (a second one exits at once).
)";

int Usage(const std::string& error) {
  std::cerr << "fairserve: " << error << "\n\n" << kUsage;
  return 2;
}

bool ParsePort(const std::string& text, int64_t* out) {
  return absl::SimpleAtoi(text, out) && *out >= -1 && *out <= 65535;
}

}  // namespace

int main(int argc, char** argv) {
  // Logs (and access-log lines) go to stderr, as daemons' logs do.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("fairserve"));
  fairserve::DaemonFlags flags;
  std::string check_config;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--version") {
      std::cout << "fairserve " << fairserve::kFairserveVersion << "\n";
      return 0;
    } else if (arg == "--config") {
      if (!value(&flags.config_path)) return Usage("--config needs a file");
    } else if (arg == "--check-config") {
      if (!value(&check_config)) return Usage("--check-config needs a file");
    } else if (arg == "--model-repository") {
      if (!value(&v)) return Usage("--model-repository needs a directory");
      flags.model_repository = v;
    } else if (arg == "--data-dir") {
      if (!value(&v)) return Usage("--data-dir needs a directory");
      flags.data_dir = v;
    } else if (arg == "--grpc-port" || arg == "--http-port") {
      int64_t port = 0;
      if (!value(&v) || !ParsePort(v, &port)) return Usage(arg + " needs a port number");
      (arg == "--grpc-port" ? flags.grpc_port : flags.http_port) = port;
    } else if (arg == "--ready-file") {
      if (!value(&flags.ready_file)) return Usage("--ready-file needs a path");
    } else if (arg == "--log-level") {
      if (!value(&v)) return Usage("--log-level needs a level");
      spdlog::set_level(spdlog::level::from_str(v));
      flags.log_level_forced = true;
    } else {
      return Usage("unknown argument '" + arg + "'");
    }
  }
  if (!check_config.empty()) {
    auto config = fairserve::LoadConfigFile(check_config);
    absl::Status status = config.status();
    if (status.ok()) status = fairserve::CheckConfigModels(**config);
    if (!status.ok()) {
      std::cerr << status.message() << "\n";
      return 1;
    }
    std::cout << check_config << ": OK (" << (*config)->tenants.size() << " tenants)\n";
    return 0;
  }
  if (flags.config_path.empty()) return Usage("--config is required");

  // Signals are taken synchronously by this thread; every other thread
  // inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto daemon = fairserve::Daemon::Start(flags);
  if (!daemon.ok()) {
    spdlog::critical("cannot start: {}", std::string(daemon.status().message()));
    return 1;
  }
  while (true) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      (*daemon)->Reload("SIGHUP").IgnoreError();  // logged and counted either way
      continue;
    }
    spdlog::info("{} received: draining (send it again to exit at once)", strsignal(sig));
    break;
  }
  // A second signal ends the process at once, whatever the drain is doing.
  std::thread([signals]() mutable {
    int sig = 0;
    do {
      sigwait(&signals, &sig);
    } while (sig == SIGHUP);
    spdlog::warn("second {}: exiting now", strsignal(sig));
    std::_Exit(1);
  }).detach();
  (*daemon)->Shutdown();
  daemon->reset();
  return 0;
}
