#ifndef FAIRSERVE_TENANCY_AUTH_THROTTLE_H_
#define FAIRSERVE_TENANCY_AUTH_THROTTLE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "fairserve/common/clock.h"

namespace fairserve {

// Throttles peers that keep failing authentication (guessing keys, or a
// client stuck on a revoked key). Each peer address has a GCRA bucket of
// failures: `failures_per_second` refill it up to `burst`. While a peer's
// bucket is empty, every call from it is turned away before any key is
// looked at, valid or not: a guesser must not learn that a guess was right.
// While no peer is tracked a check is one relaxed atomic load; otherwise a
// map lookup under one of 16 shard mutexes. A peer is forgotten once its
// bucket is full again. Thread-safe.
class AuthThrottle {
 public:
  struct Options {
    double failures_per_second = 5;  // 0 disables the throttle
    double burst = 20;
    size_t max_peers = 100000;  // peers tracked at once; beyond it full buckets are dropped
  };

  AuthThrottle(Clock& clock, Options options);

  // > 0 when `peer` is throttled: how long until it may try again.
  Clock::Duration Blocked(absl::string_view peer) const;
  // OK, or RESOURCE_EXHAUSTED saying how long `peer` must wait.
  absl::Status Check(absl::string_view peer) const;
  // Counts one failed authentication of `peer`.
  void RecordFailure(absl::string_view peer);
  // Applies new limits (reload); peers' state carries over.
  void Reconfigure(Options options);

  // Peers currently tracked, and calls turned away so far.
  size_t tracked() const { return tracked_.load(std::memory_order_relaxed); }
  uint64_t throttled() const { return throttled_.load(std::memory_order_relaxed); }

 private:
  struct Shard {
    mutable std::mutex mu;
    // Theoretical arrival time of the next failure, in clock ticks.
    std::unordered_map<std::string, Clock::Duration::rep> tat ABSL_GUARDED_BY(mu);
  };
  static constexpr size_t kShards = 16;
  Shard& ShardFor(absl::string_view peer) const;
  // Drops peers whose bucket is full again (they are like new peers).
  void SweepLocked(Shard& shard, Clock::Duration::rep now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  Clock& clock_;
  std::atomic<Clock::Duration::rep> interval_{0};
  std::atomic<Clock::Duration::rep> tolerance_{0};
  std::atomic<size_t> max_peers_{0};
  mutable std::array<Shard, kShards> shards_;
  mutable std::atomic<size_t> tracked_{0};
  mutable std::atomic<uint64_t> throttled_{0};
};

// The address part of a gRPC peer string ("ipv4:10.0.0.7:51234" ->
// "ipv4:10.0.0.7", "ipv6:[::1]:5000" -> "ipv6:[::1]"): one bucket per host,
// not per connection.
absl::string_view PeerHost(absl::string_view peer);

}  // namespace fairserve

#endif  // FAIRSERVE_TENANCY_AUTH_THROTTLE_H_
