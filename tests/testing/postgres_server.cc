#include "testing/postgres_server.h"

#include "testing/process_util.h"

#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

namespace fairserve {
namespace testing_util {
namespace {

// The newest installed server's bin directory, or "".
std::string FindBin() {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    if (std::filesystem::exists(e.path() / "bin" / "postgres")) found.push_back(e.path() / "bin");
  }
  std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  return found.empty() ? "" : found.back();
}

// In a forked child: become the postgres user when root.
void DropRoot() {
  if (getuid() != 0) return;
  passwd* pw = getpwnam("postgres");
  if (pw == nullptr) _exit(126);
  if (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) _exit(126);
}

// Runs argv as the server's user; its exit status.
int RunAs(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    DropRoot();
    if (freopen(log.c_str(), "a", stdout) == nullptr || freopen(log.c_str(), "a", stderr) == nullptr) {
      _exit(125);
    }
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

PostgresServer::PostgresServer() {
  bin_ = FindBin();
  if (bin_.empty()) {
    error_ = "no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)";
    return;
  }
  std::random_device rd;
  dir_ = (std::filesystem::temp_directory_path() /
          ("fairserve-pg-" + std::to_string(getpid()) + "-" + std::to_string(rd())))
             .string();
  std::filesystem::create_directories(dir_);
  if (getuid() == 0) {
    passwd* pw = getpwnam("postgres");
    if (pw == nullptr || chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      error_ = "cannot hand " + dir_ + " to the postgres user";
      return;
    }
  }
  int rc = RunAs({bin_ + "/initdb", "-D", dir_ + "/data", "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8", "--locale=C"},
                 dir_ + "/initdb.log");
  if (rc != 0) {
    error_ = "initdb failed (exit " + std::to_string(rc) + "), see " + dir_ + "/initdb.log";
    return;
  }
  for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) {
    port_ = FreePort();
    Start();
  }
}

PostgresServer::~PostgresServer() {
  if (pid_ > 0) {
    kill(pid_, SIGQUIT);  // immediate shutdown: nothing to keep
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string PostgresServer::dsn() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres";
}

bool PostgresServer::Start() {
  if (pid_ > 0) return true;
  std::string port = std::to_string(port_);
  std::string log = dir_ + "/postgres.log";
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    DropRoot();
    if (freopen(log.c_str(), "a", stdout) == nullptr || freopen(log.c_str(), "a", stderr) == nullptr) {
      _exit(125);
    }
    std::string bin = bin_ + "/postgres";
    execl(bin.c_str(), bin.c_str(), "-D", (dir_ + "/data").c_str(), "-p", port.c_str(), "-k",
          dir_.c_str(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
          "max_connections=50", static_cast<char*>(nullptr));
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      error_ = "postgres exited at start, see " + log;
      return false;
    }
    if (PQping((dsn() + " connect_timeout=2").c_str()) == PQPING_OK) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  error_ = "postgres did not accept connections within 30 s, see " + log;
  Stop();
  return false;
}

void PostgresServer::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGINT);  // fast shutdown: clients are disconnected
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string PostgresServer::Query(const std::string& sql) const {
  PGconn* conn = PQconnectdb((dsn() + " connect_timeout=5").c_str());
  std::string out;
  if (PQstatus(conn) == CONNECTION_OK) {
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      for (int row = 0; row < PQntuples(r); ++row) {
        for (int col = 0; col < PQnfields(r); ++col) {
          if (col > 0) out += "|";
          out += PQgetvalue(r, row, col);
        }
        out += "\n";
      }
      if (!out.empty()) out.pop_back();
    }
    PQclear(r);
  }
  PQfinish(conn);
  return out;
}

}  // namespace testing_util
}  // namespace fairserve
