#ifndef FAIRSERVE_CONFIG_RENDER_H_
#define FAIRSERVE_CONFIG_RENDER_H_

// Operator views of a config: the tenant table, memory partitions, and the
// Kubernetes objects of namespace-per-tenant isolation. Pure functions of
// the config, used by fairctl.

#include <string>

#include "fairserve/config/config.h"

namespace fairserve {

// Tenants and their limits, one row each.
std::string RenderTenantTable(const Config& config);

// Each tenant's memory share and bytes per device, and the shared pool.
std::string RenderPartitions(const Config& config);

// Kubernetes namespace name for a tenant ("tenant-<id>", '_' -> '-').
std::string TenantNamespace(const std::string& tenant_id);

// The Namespace (label tenant: <id>), ResourceQuota and LimitRange of one
// tenant, as a multi-document YAML file.
std::string RenderTenantManifests(const TenantConfig& tenant);

}  // namespace fairserve

#endif  // FAIRSERVE_CONFIG_RENDER_H_
