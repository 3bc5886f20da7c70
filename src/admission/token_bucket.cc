#include "fairserve/admission/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace fairserve {
namespace {

Clock::Duration::rep Ticks(double seconds) {
  return std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double>(seconds))
      .count();
}

}  // namespace

TokenBucket::TokenBucket(double rate, double burst) {
  Rep interval = std::max<Rep>(1, Ticks(1.0 / rate));
  interval_.store(interval, std::memory_order_relaxed);
  tolerance_.store(static_cast<Rep>((std::max(1.0, burst) - 1.0) * interval),
                   std::memory_order_relaxed);
}

void TokenBucket::Reconfigure(double rate, double burst, Clock::TimePoint now) {
  Rep interval = std::max<Rep>(1, Ticks(1.0 / rate));
  Rep old_interval = interval_.exchange(interval, std::memory_order_relaxed);
  const Rep t = now.time_since_epoch().count();
  Rep tat = tat_.load(std::memory_order_relaxed);
  while (tat > t) {
    Rep scaled = t + static_cast<Rep>(static_cast<double>(tat - t) * interval / old_interval);
    if (tat_.compare_exchange_weak(tat, scaled, std::memory_order_relaxed)) break;
  }
  tolerance_.store(static_cast<Rep>((std::max(1.0, burst) - 1.0) * interval),
                   std::memory_order_relaxed);
}

TokenBucket::Decision TokenBucket::TryAcquire(Clock::TimePoint now) {
  const Rep t = now.time_since_epoch().count();
  const Rep interval = interval_.load(std::memory_order_relaxed);
  const Rep tolerance = tolerance_.load(std::memory_order_relaxed);
  Rep tat = tat_.load(std::memory_order_relaxed);
  while (true) {
    Rep start = std::max(tat, t);
    // Allowed while the bucket is not over its depth: the new arrival time
    // may run ahead of now by at most the burst tolerance.
    if (start - t > tolerance) {
      return {false, Clock::Duration(start - t - tolerance)};
    }
    if (tat_.compare_exchange_weak(tat, start + interval, std::memory_order_relaxed)) {
      return {true, Clock::Duration(0)};
    }
  }
}

}  // namespace fairserve
