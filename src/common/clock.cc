#include "fairserve/common/clock.h"

namespace fairserve {

Clock& SteadyClock::Get() {
  static SteadyClock* clock = new SteadyClock();
  return *clock;
}

}  // namespace fairserve
