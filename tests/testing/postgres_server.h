#ifndef FAIRSERVE_TESTS_TESTING_POSTGRES_SERVER_H_
#define FAIRSERVE_TESTS_TESTING_POSTGRES_SERVER_H_

// A real PostgreSQL server for tests (Debian's postgresql package): a fresh
// cluster in a temp dir (initdb), listening on a free loopback port only.
// As root it runs as the "postgres" user (PostgreSQL refuses root). Can be
// stopped and started again on the same port with its data kept.

#include <sys/types.h>

#include <string>

namespace fairserve {
namespace testing_util {

class PostgresServer {
 public:
  // initdb, then starts the server and waits until it accepts connections.
  // Check started() afterwards; error() says why not.
  PostgresServer();
  ~PostgresServer();

  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }
  int port() const { return port_; }
  // A libpq connection string for the "postgres" database.
  std::string dsn() const;

  // Fast shutdown (SIGINT), and wait for the process to go.
  void Stop();
  // Starts it again on the same port and data directory.
  bool Start();
  // Runs one SQL statement with psql; its output (tuples only, unaligned),
  // or "" on error.
  std::string Query(const std::string& sql) const;

 private:
  std::string bin_;  // /usr/lib/postgresql/<N>/bin
  std::string dir_;
  std::string error_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace testing_util
}  // namespace fairserve

#endif  // FAIRSERVE_TESTS_TESTING_POSTGRES_SERVER_H_
