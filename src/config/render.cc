#include "fairserve/config/render.h"

#include "fairserve/config/partitions.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "fairserve/common/units.h"
#include "yaml-cpp/yaml.h"

namespace fairserve {

std::string RenderTenantTable(const Config& config) {
  std::string out = absl::StrFormat("%-16s %7s %10s %8s %9s %9s %12s %s\n", "tenant", "weight",
                                    "rate/s", "burst", "inflight", "queue", "memory", "models");
  for (const TenantConfig& t : config.tenants) {
    std::string rate = t.rate_limit.requests_per_second > 0
                           ? absl::StrFormat("%.6g", t.rate_limit.requests_per_second)
                           : "-";
    std::string memory = t.memory_limit ? FormatBytes(t.memory_limit)
                         : t.memory_share_percent > 0
                             ? absl::StrFormat("%.4g%%", t.memory_share_percent)
                             : "-";
    absl::StrAppendFormat(&out, "%-16s %7.4g %10s %8.6g %9s %9d %12s %s\n", t.id, t.weight, rate,
                          t.rate_limit.burst,
                          t.max_inflight ? absl::StrCat(t.max_inflight) : std::string("-"),
                          t.max_queue, memory, absl::StrJoin(t.models, ","));
  }
  return out;
}

std::string RenderPartitions(const Config& config) {
  std::string out = absl::StrFormat("%-10s %-16s %8s %14s\n", "device", "tenant", "share",
                                    "bytes");
  for (size_t i = 0; i < config.devices.size(); ++i) {
    const DeviceConfig& d = config.devices[i];
    const MemoryPartitions partitions(config, i);
    const uint64_t budget = partitions.budget();
    for (const TenantConfig& t : config.tenants) {
      auto it = partitions.quotas().find(t.id);
      uint64_t bytes = it == partitions.quotas().end() ? 0 : it->second;
      double share = budget ? 100.0 * bytes / budget : 0;
      absl::StrAppendFormat(&out, "%-10s %-16s %7.2f%% %14s\n", d.name, t.id, share,
                            bytes ? absl::StrCat(bytes, " (", FormatBytes(bytes), ")") : "-");
    }
    uint64_t pool = partitions.Capacity("");
    absl::StrAppendFormat(&out, "%-10s %-16s %7.2f%% %14s\n", d.name, "(shared pool)",
                          budget ? 100.0 * pool / budget : 0,
                          budget ? absl::StrCat(pool, " (", FormatBytes(pool), ")") : "unlimited");
  }
  return out;
}

std::string TenantNamespace(const std::string& tenant_id) {
  return absl::StrCat("tenant-", absl::StrReplaceAll(tenant_id, {{"_", "-"}}));
}

std::string RenderTenantManifests(const TenantConfig& t) {
  const std::string ns = TenantNamespace(t.id);
  const KubernetesQuota& q = t.kubernetes;
  auto metadata = [&](YAML::Emitter& e, const std::string& name, bool namespaced) {
    e << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "name" << YAML::Value << name;
    if (namespaced) e << YAML::Key << "namespace" << YAML::Value << ns;
    e << YAML::Key << "labels" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "tenant" << YAML::Value << t.id;
    e << YAML::Key << "app.kubernetes.io/managed-by" << YAML::Value << "fairctl";
    e << YAML::EndMap << YAML::EndMap;
  };
  YAML::Emitter e;
  e << YAML::BeginDoc << YAML::BeginMap;
  e << YAML::Key << "apiVersion" << YAML::Value << "v1";
  e << YAML::Key << "kind" << YAML::Value << "Namespace";
  metadata(e, ns, false);
  e << YAML::EndMap;

  e << YAML::BeginDoc << YAML::BeginMap;
  e << YAML::Key << "apiVersion" << YAML::Value << "v1";
  e << YAML::Key << "kind" << YAML::Value << "ResourceQuota";
  metadata(e, "tenant-quota", true);
  e << YAML::Key << "spec" << YAML::Value << YAML::BeginMap << YAML::Key << "hard" << YAML::Value
    << YAML::BeginMap;
  e << YAML::Key << "requests.nvidia.com/gpu" << YAML::Value << YAML::DoubleQuoted
    << absl::StrCat(q.gpus);
  e << YAML::Key << "requests.cpu" << YAML::Value << YAML::DoubleQuoted << q.cpu;
  e << YAML::Key << "limits.cpu" << YAML::Value << YAML::DoubleQuoted << q.cpu;
  e << YAML::Key << "requests.memory" << YAML::Value << YAML::DoubleQuoted << q.memory;
  e << YAML::Key << "limits.memory" << YAML::Value << YAML::DoubleQuoted << q.memory;
  e << YAML::Key << "pods" << YAML::Value << YAML::DoubleQuoted << absl::StrCat(q.pods);
  e << YAML::EndMap << YAML::EndMap << YAML::EndMap;

  e << YAML::BeginDoc << YAML::BeginMap;
  e << YAML::Key << "apiVersion" << YAML::Value << "v1";
  e << YAML::Key << "kind" << YAML::Value << "LimitRange";
  metadata(e, "tenant-limits", true);
  e << YAML::Key << "spec" << YAML::Value << YAML::BeginMap << YAML::Key << "limits"
    << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  e << YAML::Key << "type" << YAML::Value << "Container";
  auto gpus = [&](const char* key, int64_t n) {
    e << YAML::Key << key << YAML::Value << YAML::BeginMap << YAML::Key << "nvidia.com/gpu"
      << YAML::Value << YAML::DoubleQuoted << absl::StrCat(n) << YAML::EndMap;
  };
  gpus("default", q.default_gpus_per_container);
  gpus("defaultRequest", q.default_gpus_per_container);
  gpus("max", q.max_gpus_per_container);
  e << YAML::EndMap << YAML::EndSeq << YAML::EndMap << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace fairserve
