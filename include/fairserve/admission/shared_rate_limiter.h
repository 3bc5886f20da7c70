#ifndef FAIRSERVE_ADMISSION_SHARED_RATE_LIMITER_H_
#define FAIRSERVE_ADMISSION_SHARED_RATE_LIMITER_H_

#include <functional>
#include <string>

#include "fairserve/common/clock.h"

namespace fairserve {

// A token bucket that lives outside this process and is shared by every
// replica of a fleet (RedisRateLimiter; fakes in tests). Admission asks it
// once per request of a rate-limited tenant and applies the failure policy
// itself when it cannot answer.
class SharedRateLimiter {
 public:
  struct Result {
    enum class Kind {
      kAllowed,  // a token was taken
      kDenied,   // the fleet-wide bucket is empty
      kFailed,   // the backend could not answer (down, slow, error)
    };
    Kind kind = Kind::kFailed;
    // kDenied: how long until the bucket holds a token again.
    Clock::Duration retry_after{0};
    // kFailed: what went wrong, for the client's message.
    std::string error;
  };
  using Callback = std::function<void(const Result&)>;

  virtual ~SharedRateLimiter() = default;

  // Takes one token from the bucket named `bucket` that refills at `rate`
  // tokens per second up to `burst`. `done` runs exactly once: on the
  // limiter's own thread, or on this one when the answer is known at once
  // (backend known to be down). Never blocks the caller on I/O.
  virtual void Check(const std::string& bucket, double rate, double burst, Callback done) = 0;

  // A short description for messages, e.g. "redis at 127.0.0.1:6379".
  virtual std::string Describe() const = 0;
};

}  // namespace fairserve

#endif  // FAIRSERVE_ADMISSION_SHARED_RATE_LIMITER_H_
