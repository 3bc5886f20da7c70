#ifndef FAIRSERVE_METERING_MODEL_STATS_H_
#define FAIRSERVE_METERING_MODEL_STATS_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "fairserve/scheduling/request.h"

namespace fairserve {

// Per model version statistics in the shape of the protocol's
// ModelStatistics: counts and summed durations (ns). Fed by every batch.
// Thread-safe.
class ModelStats final : public BatchObserver {
 public:
  struct Duration {
    uint64_t count = 0;
    uint64_t ns = 0;
  };
  struct Model {
    uint64_t last_inference_ms = 0;  // Unix ms of the last batch
    uint64_t inference_count = 0;    // samples run successfully
    uint64_t execution_count = 0;    // batches run
    Duration success, fail, queue, compute_infer;
    std::map<uint64_t, Duration> batches;  // by batch size: compute time
  };

  void OnBatch(const BatchRecord& record) override;
  // name -> version -> stats
  std::map<std::string, std::map<std::string, Model>> Snapshot() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::map<std::string, Model>> models_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_MODEL_STATS_H_
