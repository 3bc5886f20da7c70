#ifndef FAIRSERVE_ADMISSION_REDIS_RATE_LIMITER_H_
#define FAIRSERVE_ADMISSION_REDIS_RATE_LIMITER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "fairserve/admission/shared_rate_limiter.h"

struct redisContext;

namespace fairserve {

// GCRA token buckets in Redis, shared by every replica that points at the
// same server. Each check is one EVALSHA of a small Lua script that reads
// Redis's own clock (TIME, microseconds), so the replicas' clocks do not
// matter and the check is atomic.
//
// Threads: Check() only queues (or, while Redis is known to be down, answers
// kFailed at once); one I/O thread sends the queued checks as a pipeline on a
// blocking hiredis connection and runs the callbacks; a second thread
// reconnects with exponential backoff (50 ms doubling to 2 s) while Redis is
// down. A check not answered within `timeout_ms` fails, and so does every
// check queued behind it; the connection is then dropped and re-established.
// State changes (down, back up) are logged once each.
class RedisRateLimiter final : public SharedRateLimiter {
 public:
  struct Options {
    std::string address = "127.0.0.1:6379";  // "host:port" or "unix:/path"
    std::chrono::milliseconds timeout{50};
    // Appended to the "backend down" log line, e.g. what the failure policy does.
    std::string failure_note;
    // Called on the I/O thread with each answered check's round trip (s).
    std::function<void(double)> observe_latency;
  };

  // Counters for metrics; all monotonic except `up`.
  struct Stats {
    uint64_t allowed = 0;
    uint64_t denied = 0;
    uint64_t failed = 0;         // checks answered kFailed
    uint64_t disconnects = 0;    // times the backend went from up to down
    uint64_t connect_failures = 0;
    bool up = false;
  };

  // Starts the threads and the first connection attempt; does not wait for
  // Redis (checks fail, and the failure policy applies, until it is reached).
  // INVALID_ARGUMENT for a malformed address.
  static absl::StatusOr<std::unique_ptr<RedisRateLimiter>> Create(Options options);
  // Fails the checks still queued and joins the threads.
  ~RedisRateLimiter() override;

  void Check(const std::string& bucket, double rate, double burst, Callback done) override;
  std::string Describe() const override;

  // Waits until connected; false on timeout. For start-up and tests.
  bool WaitUntilUp(std::chrono::milliseconds timeout);
  Stats stats() const;

 private:
  struct Pending {
    std::string bucket;
    int64_t interval_us;
    int64_t tolerance_us;
    Callback done;
    std::chrono::steady_clock::time_point queued_at;
  };
  struct ContextDeleter {
    void operator()(redisContext* ctx) const;
  };
  using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

  explicit RedisRateLimiter(Options options);
  void IoLoop();
  void ConnectLoop();
  // Connects and loads the script; the error text on failure.
  absl::StatusOr<ContextPtr> Connect();
  // Sends `batch` on `ctx` and answers each; false when the connection broke
  // (the unanswered checks are answered kFailed).
  bool RunBatch(redisContext* ctx, std::deque<Pending>& batch);
  // Queues one EVALSHA of the GCRA script on `ctx`'s output buffer.
  static void Append(redisContext* ctx, const std::string& sha, const Pending& p);
  void Fail(std::deque<Pending>& batch, const std::string& error);
  void MarkDown(const std::string& error);

  const Options options_;
  std::string host_;
  int port_ = 0;
  bool unix_socket_ = false;

  mutable std::mutex mu_;
  std::condition_variable io_cv_;       // work queued, or a connection ready
  std::condition_variable connect_cv_;  // a connection is needed
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  ContextPtr ready_ctx_ ABSL_GUARDED_BY(mu_);  // handed from ConnectLoop to IoLoop
  bool need_connect_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_error_ ABSL_GUARDED_BY(mu_) = "not connected yet";
  std::string sha_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> up_{false};
  std::atomic<uint64_t> allowed_{0}, denied_{0}, failed_{0}, disconnects_{0},
      connect_failures_{0};
  std::thread io_thread_;
  std::thread connect_thread_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_ADMISSION_REDIS_RATE_LIMITER_H_
