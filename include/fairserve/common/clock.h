#ifndef FAIRSERVE_COMMON_CLOCK_H_
#define FAIRSERVE_COMMON_CLOCK_H_

#include <atomic>
#include <chrono>

namespace fairserve {

// Monotonic time source. Everything that reads the time (token buckets, queues,
// the scheduler, the cache) takes a Clock& so tests can move time by hand.
// Thread-safe.
class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The real monotonic clock.
class SteadyClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  // A process-wide instance; it has no state, so sharing it is harmless.
  static Clock& Get();
};

// A clock that only moves when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  TimePoint Now() const override {
    return TimePoint(Duration(now_.load(std::memory_order_acquire)));
  }
  void Advance(Duration d) { now_.fetch_add(d.count(), std::memory_order_acq_rel); }

 private:
  std::atomic<Duration::rep> now_{Duration(std::chrono::hours(1)).count()};
};

}  // namespace fairserve

#endif  // FAIRSERVE_COMMON_CLOCK_H_
