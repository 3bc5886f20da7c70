#ifndef FAIRSERVE_TESTS_TESTING_REDIS_SERVER_H_
#define FAIRSERVE_TESTS_TESTING_REDIS_SERVER_H_

// A real redis-server for tests: loopback only, no persistence, a free port,
// its own temp dir. Can be killed, paused and restarted on the same port.

#include <sys/types.h>

#include <string>

namespace fairserve {
namespace testing_util {

class RedisServer {
 public:
  // Starts redis-server (from PATH) on a free loopback port and waits until
  // it answers PING. Check started() afterwards.
  RedisServer();
  ~RedisServer();

  bool started() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // SIGKILL, and wait for the process to go.
  void Kill();
  // Starts it again on the same port (after Kill); empty, as after a crash.
  bool Restart();
  // SIGSTOP / SIGCONT: connections stay open but nothing is answered.
  void Pause();
  void Resume();
  // Runs one command on a fresh connection; the reply as text ("" on error).
  std::string Command(const std::string& command) const;

 private:
  bool Launch();
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace testing_util
}  // namespace fairserve

#endif  // FAIRSERVE_TESTS_TESTING_REDIS_SERVER_H_
