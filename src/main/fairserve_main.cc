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

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "fairserve/config/config.h"
#include "fairserve/models/model_repository.h"
#include "fairserve/server/daemon.h"
#include "fairserve/version.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace {

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

// The command line, parsed with CLI11 (Debian's libcli11-dev): `--flag
// value` and `--flag=value` both work; a bad value is one clear line naming
// the flag (exit 2). Returns the exit code when the process should exit now
// (help, version, usage error), or -1 to go on.
int ParseFlags(int argc, char** argv, fairserve::DaemonFlags* flags, std::string* check_config) {
  CLI::App app("Multi-tenant inference server (KServe v2 / Open Inference Protocol over gRPC "
               "and HTTP/REST).",
               "fairserve");
  app.footer(
      "signals: SIGHUP reloads the config (so does saving the file); SIGTERM/SIGINT drain\n"
      "and exit 0 (a second one exits at once).");
  app.set_version_flag("--version", std::string("fairserve ") + fairserve::kFairserveVersion);
  app.add_option("--config", flags->config_path, "tenants and server config (YAML)")
      ->type_name("FILE");
  app.add_option("--model-repository", flags->model_repository,
                 "model repository (overrides model_repository)")
      ->type_name("DIR");
  app.add_option("--grpc-port", flags->grpc_port,
                 "gRPC port; 0 picks a free one (overrides server.grpc_port)")
      ->type_name("N")
      ->check(CLI::Range(int64_t{0}, int64_t{65535}));
  app.add_option("--http-port", flags->http_port,
                 "HTTP port (REST, /metrics, probes); 0 picks a free one, -1 disables "
                 "(overrides server.http_port)")
      ->type_name("N")
      ->check(CLI::Range(int64_t{-1}, int64_t{65535}));
  app.add_option("--data-dir", flags->data_dir, "usage ledger directory (overrides server.data_dir)")
      ->type_name("DIR");
  app.add_option("--ready-file", flags->ready_file,
                 "write {\"grpc_port\":..,\"http_port\":..,\"pid\":..} here once serving")
      ->type_name("FILE");
  app.add_option("--check-config", *check_config,
                 "validate FILE, print every problem, exit 0 if valid")
      ->type_name("FILE");
  std::string level;
  app.add_option("--log-level", level, "log level (overrides server.log_level)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help, the version, or the error
    return code == 0 ? 0 : 2;
  }
  if (check_config->empty() && flags->config_path.empty()) {
    std::cerr << "fairserve: --config is required\nRun with --help for more information.\n";
    return 2;
  }
  if (!level.empty()) {
    spdlog::set_level(spdlog::level::from_str(level));
    flags->log_level_forced = true;
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil with its mutex deadlock detector on: every lock of
  // an absl::Mutex (gRPC takes several per call) updated a lock graph, 2-4%
  // of the daemon's time on tiny calls (bench/profile.py). Lock order is
  // checked by the TSan build instead (scripts/test.sh).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Logs (and access-log lines) go to stderr, as daemons' logs do.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("fairserve"));
  fairserve::DaemonFlags flags;
  std::string check_config;
  if (int code = ParseFlags(argc, argv, &flags, &check_config); code >= 0) return code;
  if (!check_config.empty()) {
    auto config = fairserve::LoadAndCheckConfig(check_config);
    if (!config.ok()) {
      std::cerr << config.status().message() << "\n";
      return 1;
    }
    std::cout << check_config << ": OK (" << (*config)->tenants.size() << " tenants)\n";
    return 0;
  }

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
