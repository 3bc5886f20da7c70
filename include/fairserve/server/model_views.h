#ifndef FAIRSERVE_SERVER_MODEL_VIEWS_H_
#define FAIRSERVE_SERVER_MODEL_VIEWS_H_

// What the front ends answer about models, computed once for all of them:
// gRPC and REST return the same metadata, config, readiness, statistics and
// repository index for the same caller. Each checks that the caller may see
// the model (NOT_FOUND, PERMISSION_DENIED as CheckModelAccess). All are
// cheap reads of the model cache; any thread.

#include <string>

#include "absl/status/statusor.h"
#include "fairserve/metering/model_stats.h"
#include "fairserve/models/model_cache.h"
#include "fairserve/tenancy/tenant_registry.h"
#include "inference/grpc_service.pb.h"

namespace fairserve {

// A model's metadata for `tenant` (every front end answers the same):
// NOT_FOUND for an unknown model or version, PERMISSION_DENIED as below.
absl::StatusOr<inference::ModelMetadataResponse> DescribeModel(const ModelCache& models,
                                                               const TenantConfig& tenant,
                                                               const std::string& name,
                                                               const std::string& version);

// Triton's ModelConfig of a model for `tenant`, with the same errors.
absl::StatusOr<inference::ModelConfigResponse> DescribeModelConfig(const ModelCache& models,
                                                                   const TenantConfig& tenant,
                                                                   const std::string& name,
                                                                   const std::string& version);

// ModelReady for `tenant` (every front end answers the same): whether the
// model version can serve the caller now, resident or loaded on first use;
// false when its config or file is bad or its last load failed. Errors as
// DescribeModel. The server's own readiness is the caller's to add.
absl::StatusOr<bool> ModelServable(const ModelCache& models, const TenantConfig& tenant,
                                   const std::string& name, const std::string& version);

// NOT_FOUND for an unknown model or version (empty = any), PERMISSION_DENIED
// as CheckModelAccess.
absl::StatusOr<ModelConfig> CheckModelVersionAccess(const ModelCache& models,
                                                    const TenantConfig& tenant,
                                                    const std::string& name,
                                                    const std::string& version);

// ModelStatistics for `tenant`: one model (and version) when `name` is
// given, else every model the tenant may use.
absl::StatusOr<inference::ModelStatisticsResponse> DescribeStatistics(const ModelCache& models,
                                                                      const ModelStats& stats,
                                                                      const TenantConfig& tenant,
                                                                      const std::string& name,
                                                                      const std::string& version);

// RepositoryIndex: every model version with its state for an admin
// (`tenant` null), the models it may use for a tenant; READY ones only when
// `ready_only`.
inference::RepositoryIndexResponse DescribeRepository(const ModelCache& models,
                                                      const TenantConfig* tenant,
                                                      bool ready_only);

// The extensions ServerMetadata (gRPC) and GET /v2 (REST) list: those
// actually served.
const std::vector<std::string>& ServedExtensions();

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_MODEL_VIEWS_H_
