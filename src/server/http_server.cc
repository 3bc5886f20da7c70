#include "fairserve/server/http_server.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "fairserve/server/tls.h"

namespace fairserve {

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& address, int port,
                                                              Handlers handlers) {
  std::unique_ptr<HttpServer> self(new HttpServer());
  if (handlers.tls) {
    self->tls_ = handlers.tls;
    auto ssl = std::make_unique<httplib::SSLServer>(
        [tls = self->tls_.get()](SSL_CTX& ctx) { return tls->Install(ctx); });
    if (!ssl->is_valid()) {
      return absl::FailedPreconditionError(
          "server.tls: the HTTP port cannot use the certificate and key (see the log)");
    }
    self->server_ = std::move(ssl);
  } else {
    self->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& s = *self->server_;
  auto probe = [](std::function<bool()> check, const char* ok_text, const char* bad_text) {
    return [check, ok_text, bad_text](const httplib::Request&, httplib::Response& res) {
      bool ok = check();
      res.status = ok ? 200 : 503;
      res.set_content(ok ? ok_text : bad_text, "text/plain");
    };
  };
  s.Get("/healthz", probe(handlers.live, "ok\n", "not live\n"));
  s.Get("/readyz", probe(handlers.ready, "ready\n", "not ready\n"));
  if (handlers.metrics) {
    s.Get("/metrics", [metrics = handlers.metrics](const httplib::Request&, httplib::Response& res) {
      // Moved in, not copied (httplib 0.11's set_content copies): a page
      // at 10,000 tenants is 22 MB.
      res.body = metrics();
      res.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    });
  }
  if (handlers.status) {
    s.Get("/status", [status = handlers.status](const httplib::Request& req, httplib::Response& res) {
      auto [code, body] = status(req.remote_addr, req.get_header_value("Authorization"));
      res.status = code;
      res.set_content(body, code == 200 ? "text/html; charset=utf-8" : "text/plain");
    });
  }
  if (handlers.install) handlers.install(s);
  s.set_payload_max_length(handlers.max_body_bytes);
  // cpp-httplib writes a response's headers and body separately; with
  // Nagle's algorithm on, the body then waits for the client's delayed ACK
  // (40 ms on Linux): measured 85 ms p50 for a REST add_one (bench/rest_bench).
  s.set_tcp_nodelay(true);
  s.new_task_queue = [threads = handlers.threads] { return new httplib::ThreadPool(threads); };
  int bound = port == 0 ? s.bind_to_any_port(address) : (s.bind_to_port(address, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for HTTP on ", address, ":", port,
        " (port in use or not permitted); choose another with --http-port or server.http_port"));
  }
  self->port_ = bound;
  self->thread_ = std::thread([server = self->server_.get()] { server->listen_after_bind(); });
  return self;
}

void HttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace fairserve
