#include "fairserve/tenancy/auth_throttle.h"

#include <algorithm>
#include <functional>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace fairserve {

absl::string_view PeerHost(absl::string_view peer) {
  if (peer.substr(0, 5) == "unix:" || (!peer.empty() && peer.back() == ']')) return peer;
  size_t colon = peer.rfind(':');
  size_t scheme = peer.find(':');
  if (colon == absl::string_view::npos || colon == scheme) return peer;
  return peer.substr(0, colon);
}

AuthThrottle::AuthThrottle(Clock& clock, Options options) : clock_(clock) {
  Reconfigure(options);
}

void AuthThrottle::Reconfigure(Options options) {
  using Rep = Clock::Duration::rep;
  Rep interval = 0;
  if (options.failures_per_second > 0) {
    interval = std::max<Rep>(1, std::chrono::duration_cast<Clock::Duration>(
                                    std::chrono::duration<double>(1.0 / options.failures_per_second))
                                    .count());
  }
  interval_.store(interval, std::memory_order_relaxed);
  tolerance_.store(static_cast<Rep>((std::max(1.0, options.burst) - 1.0) * interval),
                   std::memory_order_relaxed);
  max_peers_.store(options.max_peers, std::memory_order_relaxed);
}

AuthThrottle::Shard& AuthThrottle::ShardFor(absl::string_view peer) const {
  return shards_[std::hash<std::string_view>()(std::string_view(peer.data(), peer.size())) %
                 kShards];
}

Clock::Duration AuthThrottle::Blocked(absl::string_view peer) const {
  if (tracked_.load(std::memory_order_relaxed) == 0) return Clock::Duration(0);
  if (interval_.load(std::memory_order_relaxed) == 0) return Clock::Duration(0);
  const Clock::Duration::rep now = clock_.Now().time_since_epoch().count();
  const Clock::Duration::rep tolerance = tolerance_.load(std::memory_order_relaxed);
  Shard& shard = ShardFor(peer);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.tat.find(std::string(peer));
  if (it == shard.tat.end()) return Clock::Duration(0);
  if (it->second <= now) {  // the bucket is full again: forget the peer
    shard.tat.erase(it);
    tracked_.fetch_sub(1, std::memory_order_relaxed);
    return Clock::Duration(0);
  }
  // Blocked while one more failure would not fit in the bucket.
  Clock::Duration::rep over = it->second - now - tolerance;
  if (over <= 0) return Clock::Duration(0);
  throttled_.fetch_add(1, std::memory_order_relaxed);
  return Clock::Duration(over);
}

absl::Status AuthThrottle::Check(absl::string_view peer) const {
  Clock::Duration wait = Blocked(peer);
  if (wait <= Clock::Duration(0)) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "too many failed authentications from this address; every call from it is refused for "
      "now; retry after ",
      std::chrono::ceil<std::chrono::milliseconds>(wait).count(), " ms with a valid API key"));
}

void AuthThrottle::RecordFailure(absl::string_view peer) {
  const Clock::Duration::rep interval = interval_.load(std::memory_order_relaxed);
  if (interval == 0) return;
  const Clock::Duration::rep now = clock_.Now().time_since_epoch().count();
  Shard& shard = ShardFor(peer);
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.tat.size() >= 64 ||
      tracked_.load(std::memory_order_relaxed) >= max_peers_.load(std::memory_order_relaxed)) {
    SweepLocked(shard, now);
  }
  auto [it, fresh] = shard.tat.try_emplace(std::string(peer), now);
  if (fresh) {
    if (tracked_.load(std::memory_order_relaxed) >= max_peers_.load(std::memory_order_relaxed)) {
      shard.tat.erase(it);  // full of active offenders: do not grow without bound
      return;
    }
    tracked_.fetch_add(1, std::memory_order_relaxed);
  }
  it->second = std::max(it->second, now) + interval;
}

void AuthThrottle::SweepLocked(Shard& shard, Clock::Duration::rep now) {
  for (auto it = shard.tat.begin(); it != shard.tat.end();) {
    if (it->second <= now) {
      it = shard.tat.erase(it);
      tracked_.fetch_sub(1, std::memory_order_relaxed);
    } else {
      ++it;
    }
  }
}

}  // namespace fairserve
