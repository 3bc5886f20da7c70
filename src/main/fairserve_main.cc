// fairserve: the multi-tenant inference server daemon.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <cstring>
#include <thread>

#include "absl/strings/numbers.h"
#include "fairserve/config/config.h"
#include "fairserve/models/model_repository.h"
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

int g_signal_pipe[2] = {-1, -1};
std::atomic<bool> g_terminating{false};

// Async-signal-safe: a pipe write, or _exit on the second stop signal.
void OnSignal(int sig) {
  if (sig != SIGHUP && g_terminating.exchange(true)) {
    constexpr char kMsg[] = "fairserve: second stop signal: exiting now\n";
    ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    (void)ignored;
    _exit(1);
  }
  unsigned char c = static_cast<unsigned char>(sig);
  ssize_t ignored = write(g_signal_pipe[1], &c, 1);
  (void)ignored;
}

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
  // Signals go through handlers, not blocked masks: libraries start threads
  // before main (OpenBLAS's pool), and a process signal may land on any of
  // them. A handler runs wherever it lands; it only writes to a pipe that
  // this thread reads (or, for a second SIGTERM/SIGINT, exits at once).
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) {
    std::cerr << "fairserve: cannot create the signal pipe\n";
    return 1;
  }
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto daemon = fairserve::Daemon::Start(flags);
  if (!daemon.ok()) {
    spdlog::critical("cannot start: {}", std::string(daemon.status().message()));
    return 1;
  }
  while (true) {
    unsigned char sig = 0;
    if (read(g_signal_pipe[0], &sig, 1) != 1) {
      if (errno == EINTR) continue;
      break;
    }
    if (sig == SIGHUP) {
      (*daemon)->Reload("SIGHUP").IgnoreError();  // logged and counted either way
      continue;
    }
    spdlog::info("{} received: draining (send it again to exit at once)", strsignal(sig));
    break;
  }
  (*daemon)->Shutdown();
  daemon->reset();
  return 0;
}
