#include "fairserve/metering/model_stats.h"

#include <chrono>

namespace fairserve {
namespace {

uint64_t Ns(double seconds) { return static_cast<uint64_t>(seconds * 1e9); }
uint64_t Ns(Clock::Duration d) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

}  // namespace

void ModelStats::OnBatch(const BatchRecord& record) {
  if (record.items.empty()) return;
  uint64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  std::lock_guard<std::mutex> lock(mu_);
  Model& m = models_[record.model_name][record.model_version];
  if (record.samples > 0) {
    m.last_inference_ms = now_ms;
    ++m.execution_count;
    Duration& b = m.batches[record.samples];
    ++b.count;
    b.ns += Ns(record.compute_seconds);
  }
  for (const BatchItem& item : record.items) {
    Duration& outcome = item.code == absl::StatusCode::kOk ? m.success : m.fail;
    ++outcome.count;
    outcome.ns += Ns(item.queue_time) + Ns(item.compute_seconds);
    if (item.code == absl::StatusCode::kOk) {
      m.inference_count += item.samples;
      ++m.queue.count;
      m.queue.ns += Ns(item.queue_time);
      ++m.compute_infer.count;
      m.compute_infer.ns += Ns(item.compute_seconds);
    }
  }
}

std::map<std::string, std::map<std::string, ModelStats::Model>> ModelStats::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return models_;
}

}  // namespace fairserve
