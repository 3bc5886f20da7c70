#ifndef FAIRSERVE_SERVER_REST_API_H_
#define FAIRSERVE_SERVER_REST_API_H_

#include <string>

#include "fairserve/metering/model_stats.h"
#include "fairserve/server/infer_call.h"

namespace httplib {
class Server;
}

namespace fairserve {

// The Open Inference Protocol's HTTP/REST binding on the HTTP port, a
// second front end of InferCall: the same authentication (authorization:
// Bearer / x-api-key headers), limits, fair scheduling and billing as gRPC,
// so a tenant's rate is one budget across both.
//
//   GET  /v2                                        server metadata
//   GET  /v2/health/live, /v2/health/ready          probes
//   GET  /v2/models/{m}[/versions/{v}]              model metadata (tenant key)
//   GET  /v2/models/{m}[/versions/{v}]/ready        model readiness (tenant key)
//   GET  /v2/models/{m}[/versions/{v}]/config       Triton's ModelConfig (tenant key)
//   GET  /v2/models[/{m}[/versions/{v}]]/stats      statistics (tenant key)
//   POST /v2/models/{m}[/versions/{v}]/infer        inference: JSON tensors and the
//                                                   binary tensor data extension
//   POST /v2/repository/index                       index (admin: all; tenant: its models)
//   POST /v2/repository/models/{m}/load, /unload    admin key only
//
// Errors are {"error": "..."} with the HTTP status of the gRPC code
// (HttpStatusFor); refusals that say when to retry carry Retry-After.
//
// Threads: handlers run on the HTTP server's pool. An infer hands its call
// to InferCall like gRPC does and waits on that pool thread for the answer;
// it never blocks a gRPC thread, a worker or the executor. The pool size
// therefore bounds concurrent REST calls (http_threads in HttpServer).
class RestApi {
 public:
  RestApi(const InferCallDeps& deps, const ModelStats* stats, std::string version);

  // Adds the /v2 routes to `server`.
  void Install(httplib::Server& server) const;

 private:
  const InferCallDeps& deps_;
  const ModelStats* const stats_;
  const std::string version_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_REST_API_H_
