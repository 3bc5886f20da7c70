#ifndef FAIRSERVE_TESTS_METERING_BATCH_RECORDS_H_
#define FAIRSERVE_TESTS_METERING_BATCH_RECORDS_H_

#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "fairserve/scheduling/request.h"

namespace fairserve {
namespace testing_util {

// A batch record of `model` (version `version`) with one item per
// (tenant, samples, compute seconds, status code).
inline BatchRecord Batch(
    const std::string& model,
    std::vector<std::tuple<std::string, int64_t, double, absl::StatusCode>> items,
    const std::string& version = "1") {
  BatchRecord r;
  r.model_name = model;
  r.model_version = version;
  for (auto& [tenant, samples, seconds, code] : items) {
    BatchItem item;
    item.tenant_id = tenant;
    item.samples = samples;
    item.compute_seconds = seconds;
    item.code = code;
    r.items.push_back(item);
    r.samples += samples;
    r.compute_seconds += seconds;
  }
  return r;
}

}  // namespace testing_util
}  // namespace fairserve

#endif  // FAIRSERVE_TESTS_METERING_BATCH_RECORDS_H_
