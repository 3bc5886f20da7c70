#ifndef FAIRSERVE_COMMON_SNAPSHOT_H_
#define FAIRSERVE_COMMON_SNAPSHOT_H_

#include <memory>

namespace fairserve {

// An immutable value that readers take a reference-counted snapshot of and a
// writer replaces whole (config and tenant tables on reload). A reader keeps
// the snapshot it took for as long as it holds the pointer, so a request in
// flight finishes under the config it started with. Thread-safe.
template <typename T>
class Snapshot {
 public:
  Snapshot() = default;
  explicit Snapshot(std::shared_ptr<const T> value) : value_(std::move(value)) {}

  std::shared_ptr<const T> Get() const { return std::atomic_load(&value_); }
  void Set(std::shared_ptr<const T> value) { std::atomic_store(&value_, std::move(value)); }

 private:
  std::shared_ptr<const T> value_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_COMMON_SNAPSHOT_H_
