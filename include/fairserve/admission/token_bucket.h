#ifndef FAIRSERVE_ADMISSION_TOKEN_BUCKET_H_
#define FAIRSERVE_ADMISSION_TOKEN_BUCKET_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "fairserve/common/clock.h"

namespace fairserve {

// A token bucket in its GCRA form (the generic cell rate algorithm): the
// whole state is one atomic "theoretical arrival time", so a check is a
// compare-and-swap and takes no lock. `rate` tokens per second refill a bucket
// of depth `burst`. Thread-safe.
class TokenBucket {
 public:
  struct Decision {
    bool allowed;
    // When not allowed: how long until one token is available.
    Clock::Duration retry_after;
  };

  // REQUIRES: rate > 0, burst >= 1.
  TokenBucket(double rate, double burst);

  // Takes one token at time `now` if one is available.
  Decision TryAcquire(Clock::TimePoint now);

  // Changes rate and burst at time `now` (config reload). The share of the
  // bucket already spent carries over, rescaled to the new rate, so a higher
  // limit helps at once and a lower one does not hand out a fresh burst.
  void Reconfigure(double rate, double burst, Clock::TimePoint now);

 private:
  using Rep = Clock::Duration::rep;
  std::atomic<Rep> interval_;   // time one token takes to refill
  std::atomic<Rep> tolerance_;  // (burst - 1) * interval
  std::atomic<Rep> tat_{0};     // theoretical arrival time, in clock ticks
};

}  // namespace fairserve

#endif  // FAIRSERVE_ADMISSION_TOKEN_BUCKET_H_
