#include "fairserve/server/rest_api.h"

#include <httplib.h>

#include <future>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "fairserve/server/grpc_auth.h"
#include "fairserve/server/model_views.h"
#include "fairserve/server/rest_codec.h"
#include "fairserve/server/tls.h"

namespace fairserve {
namespace {

using nlohmann::json;

void Send(const HttpReply& reply, httplib::Response& res) {
  res.status = reply.status;
  for (const auto& [k, v] : reply.headers) res.set_header(k, v);
  res.set_content(reply.body, reply.content_type.c_str());
}

// The peer in the form gRPC names it, so a client's failed logins count
// against one throttle bucket whichever port it uses.
std::string PeerOf(const httplib::Request& req) {
  return absl::StrContains(req.remote_addr, ':') ? absl::StrCat("ipv6:[", req.remote_addr, "]")
                                                 : absl::StrCat("ipv4:", req.remote_addr);
}

// The credentials of an HTTP request, as the Authenticator takes them;
// valid while the object lives.
class HttpCredentials {
 public:
  explicit HttpCredentials(const httplib::Request& req)
      : peer_(PeerOf(req)),
        authorization_(req.get_header_value("Authorization")),
        api_key_(req.get_header_value("x-api-key")) {
    credentials_.peer = peer_;
    credentials_.authorization = authorization_;
    credentials_.x_api_key = api_key_;
    // HTTPS with client certificates: the names of the one it verified.
    if (req.ssl != nullptr) {
      const SSL* ssl = req.ssl;
      credentials_.certificate_names = [ssl] { return PeerCertificateNames(ssl); };
    }
  }
  const Credentials& get() const { return credentials_; }

 private:
  std::string peer_, authorization_, api_key_;
  Credentials credentials_;
};

// The InferCall's reply end for one REST infer: fulfils the promise the
// handler waits on. The promise is shared, so neither side can free it
// while the other still uses it; `asked` lives in the handler's frame until
// the answer is set.
class RestInferReply final : public InferReply {
 public:
  RestInferReply(std::shared_ptr<std::promise<HttpReply>> promise, const RestInferRequest* asked)
      : promise_(std::move(promise)), asked_(asked) {}
  void Reject(const absl::Status& status, Clock::Duration retry_after) override {
    promise_->set_value(RestError(status, retry_after));
  }
  void Finish(InferenceResult result, const std::string& model_name, const std::string& version,
              const std::string& id) override {
    promise_->set_value(EncodeRestInferResponse(result, model_name, version, id, *asked_));
  }

 private:
  const std::shared_ptr<std::promise<HttpReply>> promise_;
  const RestInferRequest* const asked_;
};

}  // namespace

RestApi::RestApi(const InferCallDeps& deps, const ModelStats* stats, std::string version)
    : deps_(deps), stats_(stats), version_(std::move(version)) {}

void RestApi::Install(httplib::Server& s) const {
  s.Get("/v2", [this](const httplib::Request&, httplib::Response& res) {
    Send(JsonReply({{"name", "fairserve"}, {"version", version_},
                    {"extensions", ServedExtensions()}}),
         res);
  });
  s.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    res.status = 200;
  });
  s.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& res) {
    res.status = deps_.ready->load() ? 200 : 503;
  });

  // Authenticates the caller from the request's headers as gRPC does
  // (AuthenticateGrpcCall); on failure fills `res`.
  auto caller = [this](const httplib::Request& req, httplib::Response& res, CallerKind kind,
                       absl::string_view what = "") -> std::optional<Principal> {
    HttpCredentials credentials(req);
    const Authenticator::Registry& registry = deps_.runtime->Get()->tenants;
    Clock::Duration retry_after{0};
    absl::StatusOr<Principal> p = AuthenticateAs(*deps_.authenticator, registry,
                                                 credentials.get(), kind, what, &retry_after);
    if (!p.ok()) {
      Send(RestError(p.status(), retry_after), res);
      return std::nullopt;
    }
    return std::move(*p);
  };
  auto tenant = [caller](const httplib::Request& req, httplib::Response& res) {
    return caller(req, res, CallerKind::kTenant);
  };
  auto version_of = [](const httplib::Request& req) {
    return req.matches.size() > 2 ? std::string(req.matches[2]) : std::string();
  };

  // Statistics of every model the tenant may use; registered before the
  // model routes, which would take "stats" for a model name.
  s.Get("/v2/models/stats", [this, tenant](const httplib::Request& req, httplib::Response& res) {
    std::optional<Principal> p = tenant(req, res);
    if (!p) return;
    auto stats = DescribeStatistics(*deps_.models, *stats_, *p->tenant, "", "");
    Send(stats.ok() ? JsonReply(ProtoJson(*stats)) : RestError(stats.status()), res);
  });

  const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
  s.Get(model, [this, tenant, version_of](const httplib::Request& req, httplib::Response& res) {
    std::optional<Principal> p = tenant(req, res);
    if (!p) return;
    absl::StatusOr<inference::ModelMetadataResponse> m =
        DescribeModel(*deps_.models, *p->tenant, req.matches[1], version_of(req));
    Send(m.ok() ? JsonReply(MetadataJson(*m)) : RestError(m.status()), res);
  });
  s.Get(model + "/ready",
        [this, tenant, version_of](const httplib::Request& req, httplib::Response& res) {
          std::optional<Principal> p = tenant(req, res);
          if (!p) return;
          std::string name = req.matches[1];
          // As gRPC's ModelReady: servable now (resident or on first use)
          // and the server ready.
          absl::StatusOr<bool> servable =
              ModelServable(*deps_.models, *p->tenant, name, version_of(req));
          if (!servable.ok()) return Send(RestError(servable.status()), res);
          Send(JsonReply({{"name", name}, {"ready", *servable && deps_.ready->load()}}), res);
        });
  s.Get(model + "/config",
        [this, tenant, version_of](const httplib::Request& req, httplib::Response& res) {
          std::optional<Principal> p = tenant(req, res);
          if (!p) return;
          auto config =
              DescribeModelConfig(*deps_.models, *p->tenant, req.matches[1], version_of(req));
          Send(config.ok() ? JsonReply(ProtoJson(config->config())) : RestError(config.status()),
               res);
        });
  s.Get(model + "/stats",
        [this, tenant, version_of](const httplib::Request& req, httplib::Response& res) {
          std::optional<Principal> p = tenant(req, res);
          if (!p) return;
          auto stats = DescribeStatistics(*deps_.models, *stats_, *p->tenant, req.matches[1],
                                          version_of(req));
          Send(stats.ok() ? JsonReply(ProtoJson(*stats)) : RestError(stats.status()), res);
        });

  // The repository extension. Index: admins see every model, a tenant the
  // models it may use; body {"ready": true} lists READY versions only.
  s.Post("/v2/repository/index", [this, caller](const httplib::Request& req,
                                                httplib::Response& res) {
    std::optional<Principal> p = caller(req, res, CallerKind::kAny);
    if (!p) return;
    bool ready_only = false;
    if (!req.body.empty()) {
      json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded() || !body.is_object()) {
        return Send(RestError(absl::InvalidArgumentError(
                        "the repository index body must be a JSON object such as "
                        "{\"ready\": true}")),
                    res);
      }
      if (body.contains("ready")) {
        if (!body["ready"].is_boolean()) {
          return Send(RestError(absl::InvalidArgumentError("\"ready\" must be true or false")),
                      res);
        }
        ready_only = body["ready"].get<bool>();
      }
    }
    json out = json::array();
    inference::RepositoryIndexResponse index =
        DescribeRepository(*deps_.models, p->tenant, ready_only);
    for (const auto& m : index.models()) {
      out.push_back(ProtoJson(m));
    }
    Send(JsonReply(out), res);
  });
  // Load and unload: admin key only, as on gRPC. A load waits on this HTTP
  // thread for the cache's loader thread, like an infer waits for its batch.
  s.Post(R"(/v2/repository/models/([^/]+)/load)",
         [this, caller](const httplib::Request& req, httplib::Response& res) {
           if (!caller(req, res, CallerKind::kAdmin, "repository load")) return;
           if (absl::Status scanned = deps_.models->Rescan(); !scanned.ok()) {
             return Send(RestError(scanned), res);
           }
           auto done = std::make_shared<std::promise<absl::Status>>();
           std::future<absl::Status> loaded = done->get_future();
           deps_.models->Acquire(req.matches[1], "",
                                 [done](absl::StatusOr<std::shared_ptr<const Servable>> got) {
                                   done->set_value(got.status());
                                 });
           absl::Status status = loaded.get();
           Send(status.ok() ? JsonReply(json::object()) : RestError(status), res);
         });
  s.Post(R"(/v2/repository/models/([^/]+)/unload)",
         [this, caller](const httplib::Request& req, httplib::Response& res) {
           if (!caller(req, res, CallerKind::kAdmin, "repository unload")) return;
           absl::Status status = deps_.models->Unload(req.matches[1]);
           Send(status.ok() ? JsonReply(json::object()) : RestError(status), res);
         });

  s.Post(model + "/infer",
         [this, version_of](const httplib::Request& req, httplib::Response& res) {
           std::optional<size_t> json_length;
           if (req.has_header("Inference-Header-Content-Length")) {
             size_t n = 0;
             if (!absl::SimpleAtoi(req.get_header_value("Inference-Header-Content-Length"), &n)) {
               return Send(RestError(absl::InvalidArgumentError(
                               "Inference-Header-Content-Length must be a byte count")),
                           res);
             }
             json_length = n;
           }
           absl::StatusOr<RestInferRequest> parsed =
               ParseRestInferRequest(req.body, json_length, req.matches[1], version_of(req));
           HttpCredentials credentials(req);
           const Credentials& c = credentials.get();
           if (!parsed.ok()) {
             // Authentication still decides first: an unknown caller learns
             // nothing about the body.
             Clock::Duration retry_after{0};
             absl::StatusOr<Principal> p = deps_.authenticator->AuthenticateTenant(
                 deps_.runtime->Get()->tenants, c, &retry_after);
             return Send(p.ok() ? RestError(parsed.status()) : RestError(p.status(), retry_after),
                         res);
           }
           auto promise = std::make_shared<std::promise<HttpReply>>();
           std::future<HttpReply> answer = promise->get_future();
           // cpp-httplib does not tell a handler that its client left: no
           // cancellation flag.
           InferCall::Start(deps_, c, &parsed->request, Clock::TimePoint::max(), nullptr,
                            std::make_unique<RestInferReply>(promise, &*parsed));
           Send(answer.get(), res);
         });
}

}  // namespace fairserve
