#ifndef FAIRSERVE_SERVER_ACCESS_LOG_H_
#define FAIRSERVE_SERVER_ACCESS_LOG_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"

namespace spdlog {
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

// The access log: one line per request, plain text or JSON, formatted and
// written in chunks by a thread of its own ("fs-access-log"), never by the
// thread that answers the call. Log() takes the record (the model name and
// request id, which clients choose, cut to the 128 bytes a line shows) and
// appends it to a pending buffer under a mutex; only the first
// record into an empty buffer wakes the writer, which then gathers for
// `gather` (20 ms by default), formats everything pending and writes it at
// once: each sink gets the lines, then one flush. On the daemon's default
// sink (stderr, below) that is one write() per chunk instead of a wake-up
// and a write() per request, which measured (bench/profile.py) as the
// largest cost of the tiny-call path after gRPC itself.
//
// Lines keep the time they were logged at. At most `queue_lines` lines wait;
// when the writer cannot keep up, new lines are dropped and counted
// (dropped()), so an overloaded log never slows serving. Below that no line
// is ever lost: destruction writes every pending line first. The format and
// on/off switch follow config reloads. Thread-safe.
class AccessLog {
 public:
  enum class Format { kOff, kPlain, kJson };

  // `sinks`: where lines go. Empty: standard error, in spdlog's default
  // pattern (the process log's), each chunk written under spdlog's console
  // mutex so it never interleaves with a process-log line.
  explicit AccessLog(size_t queue_lines = 8192,
                     std::vector<std::shared_ptr<spdlog::sinks::sink>> sinks = {},
                     std::chrono::milliseconds gather = std::chrono::milliseconds(20));
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  void SetFormat(Format f) { format_.store(f, std::memory_order_relaxed); }
  // Takes the record whole (callers move it in), so whatever it holds is
  // what gets written.
  void Log(AccessRecord r);
  // Lines dropped so far because `queue_lines` were already waiting.
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  // Chunks written so far (tests, bench).
  uint64_t chunks() const { return chunks_.load(std::memory_order_relaxed); }

  // The line for `r` as written (the writer thread; tests).
  static std::string Render(const AccessRecord& r, Format f);

 private:
  struct Line {
    std::chrono::system_clock::time_point time;
    Format format;
    AccessRecord record;
  };
  void WriterLoop();
  void Write(const std::vector<Line>& lines);

  const size_t capacity_;
  const std::chrono::milliseconds gather_;
  const std::vector<std::shared_ptr<spdlog::sinks::sink>> sinks_;
  std::atomic<Format> format_{Format::kPlain};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> chunks_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Line> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_ACCESS_LOG_H_
