#include "fairserve/server/model_views.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "fairserve/models/triton_config.h"
#include "fairserve/server/infer_call.h"

namespace fairserve {

absl::StatusOr<ModelConfig> CheckModelVersionAccess(const ModelCache& models,
                                                    const TenantConfig& tenant,
                                                    const std::string& name,
                                                    const std::string& version) {
  if (absl::Status access = CheckModelAccess(models, tenant, name); !access.ok()) return access;
  absl::StatusOr<ModelConfig> config = models.GetConfig(name);
  if (!config.ok() || version.empty()) return config;
  std::vector<std::string> versions = models.Versions(name);
  if (std::find(versions.begin(), versions.end(), version) == versions.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' has no version '", version, "'"));
  }
  return config;
}

absl::StatusOr<inference::ModelConfigResponse> DescribeModelConfig(const ModelCache& models,
                                                                   const TenantConfig& tenant,
                                                                   const std::string& name,
                                                                   const std::string& version) {
  absl::StatusOr<ModelConfig> config = CheckModelVersionAccess(models, tenant, name, version);
  if (!config.ok()) return config.status();
  inference::ModelConfigResponse out;
  *out.mutable_config() = ToTritonConfig(*config);
  return out;
}

absl::StatusOr<bool> ModelServable(const ModelCache& models, const TenantConfig& tenant,
                                   const std::string& name, const std::string& version) {
  absl::StatusOr<ModelConfig> config = CheckModelVersionAccess(models, tenant, name, version);
  if (!config.ok()) return config.status();
  absl::Status s = models.CheckServable(name, version);
  if (s.code() == absl::StatusCode::kNotFound) return s;
  return s.ok();
}

absl::StatusOr<inference::ModelMetadataResponse> DescribeModel(const ModelCache& models,
                                                               const TenantConfig& tenant,
                                                               const std::string& name,
                                                               const std::string& version) {
  absl::StatusOr<ModelConfig> config = CheckModelVersionAccess(models, tenant, name, version);
  if (!config.ok()) return config.status();
  std::vector<std::string> versions = models.Versions(name);
  inference::ModelMetadataResponse out;
  out.set_name(config->name);
  for (const std::string& v : versions) out.add_versions(v);
  out.set_platform(config->platform);
  auto fill = [](const std::vector<TensorSpec>& specs, auto* list) {
    for (const TensorSpec& s : specs) {
      auto* m = list->Add();
      m->set_name(s.name);
      m->set_datatype(std::string(DataTypeName(s.dtype)));
      for (int64_t d : s.shape) m->add_shape(d);
    }
  };
  fill(config->inputs, out.mutable_inputs());
  fill(config->outputs, out.mutable_outputs());
  return out;
}

absl::StatusOr<inference::ModelStatisticsResponse> DescribeStatistics(const ModelCache& models,
                                                                      const ModelStats& stats,
                                                                      const TenantConfig& tenant,
                                                                      const std::string& name,
                                                                      const std::string& version) {
  if (!name.empty()) {
    absl::StatusOr<ModelConfig> config = CheckModelVersionAccess(models, tenant, name, version);
    if (!config.ok()) return config.status();
  }
  inference::ModelStatisticsResponse out;
  inference::ModelStatisticsResponse* resp = &out;
  std::map<std::pair<std::string, std::string>, uint64_t> resident;
  for (const ModelState& m : models.Index()) {
    if (m.state == "READY") resident[{m.name, m.version}] = m.bytes;
  }
  auto fill = [](const ModelStats::Duration& d, inference::StatisticDuration* to) {
    to->set_count(d.count);
    to->set_ns(d.ns);
  };
  for (const auto& [model, versions] : stats.Snapshot()) {
    if (!name.empty() && model != name) continue;
    // All models asked for: only those this tenant may use.
    if (name.empty() && !CheckModelAccess(models, tenant, model).ok()) continue;
    for (const auto& [model_version, m] : versions) {
      if (!version.empty() && model_version != version) continue;
      auto* entry = resp->add_model_stats();
      entry->set_name(model);
      entry->set_version(model_version);
      entry->set_last_inference(m.last_inference_ms);
      entry->set_inference_count(m.inference_count);
      entry->set_execution_count(m.execution_count);
      auto* s = entry->mutable_inference_stats();
      fill(m.success, s->mutable_success());
      fill(m.fail, s->mutable_fail());
      fill(m.queue, s->mutable_queue());
      fill(m.compute_infer, s->mutable_compute_infer());
      for (const auto& [size, d] : m.batches) {
        auto* b = entry->add_batch_stats();
        b->set_batch_size(size);
        fill(d, b->mutable_compute_infer());
      }
      auto it = resident.find({model, model_version});
      if (it != resident.end()) {
        auto* mem = entry->add_memory_usage();
        mem->set_type("CPU");
        mem->set_id(0);
        mem->set_byte_size(it->second);
      }
    }
  }
  return out;
}

inference::RepositoryIndexResponse DescribeRepository(const ModelCache& models,
                                                      const TenantConfig* tenant,
                                                      bool ready_only) {
  inference::RepositoryIndexResponse resp;
  for (const ModelState& m : models.Index()) {
    if (tenant && (!tenant->AllowsModel(m.name) || (!m.owner.empty() && m.owner != tenant->id))) {
      continue;
    }
    if (ready_only && m.state != "READY") continue;
    auto* out = resp.add_models();
    out->set_name(m.name);
    out->set_version(m.version);
    out->set_state(m.state);
    out->set_reason(m.reason);
  }
  return resp;
}

const std::vector<std::string>& ServedExtensions() {
  static const std::vector<std::string> kExtensions = {
      "binary_tensor_data", "model_configuration", "model_repository", "statistics"};
  return kExtensions;
}

}  // namespace fairserve
