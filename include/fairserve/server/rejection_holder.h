#ifndef FAIRSERVE_SERVER_REJECTION_HOLDER_H_
#define FAIRSERVE_SERVER_REJECTION_HOLDER_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "fairserve/common/clock.h"

namespace fairserve {

// Holds the answers of refused calls that carry a retry hint (rate limit,
// in-flight cap) until their retry-after point
// (server.rejection_hold_per_tenant), so a closed-loop client that retries at once
// slows itself down instead of making the server refuse it as fast as it
// can send: a flooder with N calls outstanding costs at most N refusals per
// retry-after interval. A refusal is counted and decided at once; only its
// answer waits, holding nothing but the call's small state (no tensors,
// no in-flight slot, no queue place).
//
// Bounded: a tenant holds at most `per_tenant` answers and the server
// `total`; past either, and for calls that may not wait (REST: its handler
// thread would), the answer goes at once, as without holding. A held answer
// never waits past `max_hold`, nor past the call's own deadline (the caller
// passes the earlier of the two as `until`).
//
// Held answers are sent by this object's thread ("fs-held"), or, for tests,
// by whoever calls AnswerDue(); at destruction every held answer goes at
// once. Thread-safe.
class RejectionHolder {
 public:
  struct Options {
    size_t per_tenant = 0;  // 0 = holding off
    size_t total = 10000;
    Clock::Duration max_hold = std::chrono::seconds(1);
    bool start_thread = true;
  };

  RejectionHolder(const Options& options, Clock& clock);
  ~RejectionHolder();
  RejectionHolder(const RejectionHolder&) = delete;
  RejectionHolder& operator=(const RejectionHolder&) = delete;

  // Takes `answer` to run at min(until, now + max_hold) and returns true;
  // or returns false (and does not take it) when holding is off or a bound
  // is reached: the caller answers now. `answer` must not block.
  bool Hold(const std::string& tenant, Clock::TimePoint until, std::function<void()> answer);

  // Answers everything held now and holds nothing more (drain, shutdown).
  void Stop();

  // Runs the answers due at `now`, outside the lock; returns how many.
  size_t AnswerDue(Clock::TimePoint now);

  size_t held() const;                 // now
  uint64_t held_total() const;         // ever
  uint64_t overflow_total() const;     // answered at once because a bound was reached

 private:
  struct Entry {
    Clock::TimePoint due;
    uint64_t seq;
    std::string tenant;
    std::function<void()> answer;
    bool operator>(const Entry& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  void Loop();

  const Options options_;
  Clock& clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, size_t> per_tenant_ ABSL_GUARDED_BY(mu_);
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t held_total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t overflow_total_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_REJECTION_HOLDER_H_
