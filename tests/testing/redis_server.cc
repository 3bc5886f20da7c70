#include "testing/redis_server.h"

#include "testing/process_util.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

namespace fairserve {
namespace testing_util {
namespace {

}  // namespace

RedisServer::RedisServer() {
  dir_ = (std::filesystem::temp_directory_path() /
          ("fairserve-redis-" + std::to_string(getpid()) + "-" + std::to_string(rand())))
             .string();
  std::filesystem::create_directories(dir_);
  for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) {
    port_ = FreePort();
    if (!Launch()) Kill();
  }
}

RedisServer::~RedisServer() {
  Resume();
  Kill();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

bool RedisServer::Launch() {
  std::string port = std::to_string(port_);
  std::string log = dir_ + "/redis.log";
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    std::vector<const char*> argv = {"redis-server", "--port", port.c_str(), "--bind",
                                     "127.0.0.1", "--save", "", "--appendonly", "no",
                                     "--dir", dir_.c_str(), "--logfile", log.c_str(),
                                     "--daemonize", "no", nullptr};
    execvp("redis-server", const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    if (Command("PING") == "PONG") return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool RedisServer::Restart() {
  Kill();
  if (!Launch()) {
    Kill();
    return false;
  }
  return true;
}

void RedisServer::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RedisServer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

std::string RedisServer::Command(const std::string& command) const {
  timeval tv{1, 0};
  redisContext* ctx = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (ctx == nullptr || ctx->err) {
    if (ctx) redisFree(ctx);
    return "";
  }
  redisSetTimeout(ctx, tv);
  // Split on spaces: enough for the commands tests send.
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < command.size()) {
    size_t end = command.find(' ', start);
    if (end == std::string::npos) end = command.size();
    if (end > start) parts.push_back(command.substr(start, end - start));
    start = end + 1;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const std::string& p : parts) {
    argv.push_back(p.data());
    lens.push_back(p.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
  std::string out;
  if (reply != nullptr) {
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
      out.assign(reply->str, reply->len);
    } else if (reply->type == REDIS_REPLY_INTEGER) {
      out = std::to_string(reply->integer);
    }
    freeReplyObject(reply);
  }
  redisFree(ctx);
  return out;
}

}  // namespace testing_util
}  // namespace fairserve
