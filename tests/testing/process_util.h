#ifndef FAIRSERVE_TESTS_TESTING_PROCESS_UTIL_H_
#define FAIRSERVE_TESTS_TESTING_PROCESS_UTIL_H_

// Small helpers for tests that start servers and run commands.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace fairserve {
namespace testing_util {

// A loopback TCP port that was free a moment ago (0 when none was found).
inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// How many times `needle` occurs in `text` (overlaps counted): lines of a
// log or of captured output.
inline int CountOccurrences(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

struct CommandRun {
  int code;         // exit status, -1 when killed
  std::string out;  // stdout and stderr together
};

// Runs `command` through the shell.
inline CommandRun RunCommand(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace testing_util
}  // namespace fairserve

#endif  // FAIRSERVE_TESTS_TESTING_PROCESS_UTIL_H_
