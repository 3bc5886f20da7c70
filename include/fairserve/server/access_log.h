#ifndef FAIRSERVE_SERVER_ACCESS_LOG_H_
#define FAIRSERVE_SERVER_ACCESS_LOG_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace spdlog {
class logger;
namespace details {
class thread_pool;
}
namespace sinks {
class sink;
}
}  // namespace spdlog

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

// The access log: one line per request, plain text or JSON, written by a
// thread of its own (spdlog's asynchronous logger), never by the thread that
// answers the call: Log() formats the line and queues it (a mutex and a
// condition variable), and the "fs-access-log" thread writes it to the
// sinks. The queue holds `queue_lines` lines; when the writer cannot keep
// up, the oldest queued lines are dropped and counted (dropped()), so an
// overloaded log never slows serving. Below that no line is ever lost:
// destruction writes every queued line first. The format and on/off switch
// follow config reloads. Thread-safe.
class AccessLog {
 public:
  enum class Format { kOff, kPlain, kJson };

  // `sinks`: where lines go (the daemon passes its stderr logger's sinks, so
  // access lines share the process log's pattern and lock). Empty: spdlog's
  // default logger's sinks.
  explicit AccessLog(size_t queue_lines = 8192,
                     std::vector<std::shared_ptr<spdlog::sinks::sink>> sinks = {});
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  void SetFormat(Format f) { format_.store(f, std::memory_order_relaxed); }
  void Log(const AccessRecord& r) const;
  // Lines dropped so far because the queue was full.
  uint64_t dropped() const;

  // The line as it would be written (tests).
  static std::string Render(const AccessRecord& r, Format f);

 private:
  std::atomic<Format> format_{Format::kPlain};
  std::shared_ptr<spdlog::details::thread_pool> pool_;
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_ACCESS_LOG_H_
