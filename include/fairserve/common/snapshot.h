#ifndef FAIRSERVE_COMMON_SNAPSHOT_H_
#define FAIRSERVE_COMMON_SNAPSHOT_H_

#include <memory>

namespace fairserve {

// An immutable value that readers take a reference-counted snapshot of and a
// writer replaces whole (config and tenant tables on reload). A reader keeps
// the snapshot it took for as long as it holds the pointer, so a request in
// flight finishes under the config it started with; a replaced value is
// freed as soon as its last reader lets go.
//
// Get() and Set() use the standard atomic shared_ptr operations. libstdc++
// implements them with a short spinlock from a pool keyed by address, held
// only for the pointer copy and the reference-count increment, never while
// the value is used. Thread-safe.
template <typename T>
class Snapshot {
 public:
  Snapshot() = default;
  explicit Snapshot(std::shared_ptr<const T> value) { Set(std::move(value)); }
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  // Null until the first Set().
  std::shared_ptr<const T> Get() const { return std::atomic_load(&current_); }

  void Set(std::shared_ptr<const T> value) { std::atomic_store(&current_, std::move(value)); }

 private:
  std::shared_ptr<const T> current_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_COMMON_SNAPSHOT_H_
