#ifndef FAIRSERVE_SERVER_HTTP_SERVER_H_
#define FAIRSERVE_SERVER_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace fairserve {

class HttpsContext;

// The HTTP port: /healthz, /readyz and /metrics for probes and Prometheus,
// the status page and the REST API; HTTPS when `tls` is given. A thin
// layer; what it serves comes from the callbacks.
class HttpServer {
 public:
  struct Handlers {
    std::function<bool()> live;
    std::function<bool()> ready;
    // Prometheus text exposition; null = no /metrics.
    std::function<std::string()> metrics;
    // /status: given the client's address and Authorization header, returns
    // an HTTP status and an HTML body; null = no /status.
    std::function<std::pair<int, std::string>(const std::string& remote_addr,
                                              const std::string& authorization)>
        status;
    // Adds more routes (the /v2 REST API); null = none.
    std::function<void(httplib::Server&)> install;
    // Largest request body accepted (bytes); larger ones get 413.
    size_t max_body_bytes = 64u << 20;
    // Threads serving requests: bounds concurrent REST calls, which wait on
    // them for their answer.
    int threads = 16;
    // server.tls: serve HTTPS only, with this context (certificate
    // rotation, client certificates); null = plain HTTP.
    std::shared_ptr<HttpsContext> tls;
  };

  // Binds `address:port` (0 picks a free port) and serves on its own thread.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& address, int port,
                                                           Handlers handlers);
  ~HttpServer();

  int port() const { return port_; }
  void Stop();

 private:
  HttpServer() = default;
  std::shared_ptr<HttpsContext> tls_;  // outlives server_
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_HTTP_SERVER_H_
