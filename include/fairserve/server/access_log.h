#ifndef FAIRSERVE_SERVER_ACCESS_LOG_H_
#define FAIRSERVE_SERVER_ACCESS_LOG_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace fairserve {

// One answered ModelInfer call. Never holds the API key.
struct AccessRecord {
  std::string tenant_id;
  std::string model;
  std::string version;
  std::string request_id;
  absl::StatusCode code = absl::StatusCode::kOk;
  int64_t rows = 0;           // samples of this request
  int64_t batch_samples = 0;  // samples of the batch it ran in (0: did not run)
  double queue_ms = 0;
  double compute_ms = 0;  // this request's share
  double total_ms = 0;
};

// The access log: one line per request, plain text or JSON, to the process
// log (stderr). The format and on/off switch follow config reloads.
// Thread-safe.
class AccessLog {
 public:
  enum class Format { kOff, kPlain, kJson };
  void SetFormat(Format f) { format_.store(f, std::memory_order_relaxed); }
  void Log(const AccessRecord& r) const;
  // The line as it would be written (tests).
  static std::string Render(const AccessRecord& r, Format f);

 private:
  std::atomic<Format> format_{Format::kPlain};
};

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_ACCESS_LOG_H_
