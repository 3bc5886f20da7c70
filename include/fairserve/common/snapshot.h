#ifndef FAIRSERVE_COMMON_SNAPSHOT_H_
#define FAIRSERVE_COMMON_SNAPSHOT_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

namespace fairserve {

// An immutable value that readers take a reference-counted snapshot of and a
// writer replaces whole (config and tenant tables on reload). A reader keeps
// the snapshot it took for as long as it holds the pointer, so a request in
// flight finishes under the config it started with.
//
// Get() takes no lock (one atomic load and a reference-count increment), so
// requests of different tenants never contend on it. The price: every value
// ever published stays allocated until the Snapshot itself is destroyed.
// Values change only on operator reloads, so that is a few kilobytes per
// reload. Thread-safe.
template <typename T>
class Snapshot {
 public:
  Snapshot() = default;
  explicit Snapshot(std::shared_ptr<const T> value) { Set(std::move(value)); }
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  // Null until the first Set().
  std::shared_ptr<const T> Get() const {
    const std::shared_ptr<const T>* slot = current_.load(std::memory_order_acquire);
    return slot ? *slot : nullptr;
  }

  void Set(std::shared_ptr<const T> value) {
    std::lock_guard<std::mutex> lock(mu_);
    slots_.push_back(std::make_unique<const std::shared_ptr<const T>>(std::move(value)));
    current_.store(slots_.back().get(), std::memory_order_release);
  }

 private:
  std::atomic<const std::shared_ptr<const T>*> current_{nullptr};
  std::mutex mu_;
  // Published slots are never modified or freed while the Snapshot lives,
  // which is what makes the lock-free Get() safe.
  std::vector<std::unique_ptr<const std::shared_ptr<const T>>> slots_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_COMMON_SNAPSHOT_H_
