#ifndef FAIRSERVE_SRC_MODELS_CUDA_BACKEND_H_
#define FAIRSERVE_SRC_MODELS_CUDA_BACKEND_H_

// What the libtorch executor needs from CUDA, behind plain functions so that
// torch_executor.cc compiles against any libtorch and only cuda_backend.cc
// includes CUDA headers. cuda_backend.cc is compiled and linked only when
// CMake finds a CUDA-capable Torch (FAIRSERVE_WITH_CUDA); on other builds
// the executor never calls these. Internal to fairserve::models.

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"

namespace fairserve {
namespace cuda {

// Devices the CUDA runtime sees.
int DeviceCount();

struct Memory {
  uint64_t allocated = 0;       // bytes in live tensors (caching allocator)
  uint64_t peak_allocated = 0;  // since the last ResetPeak
  uint64_t reserved = 0;        // bytes the caching allocator holds from the driver
  uint64_t free = 0;            // the driver's view of the whole device
  uint64_t total = 0;
};
Memory MemoryOf(int device);
void ResetPeak(int device);
// Hands cached, unused blocks back to the driver (after an out-of-memory).
void ReleaseCached();
// Caps what this process's caching allocator may take of `device`.
void SetMemoryFraction(int device, double fraction);
// Waits for the calling thread's current stream on `device`: the loader
// calls it once a model's weights are copied (on its own stream), so a
// worker's stream never reads weights still in flight.
void SyncCurrentStream(int device);

// One batch on one device, run by the calling (worker) thread. Construction
// makes this thread's own stream for `device` current: each worker thread
// takes one stream from libtorch's pool per device on first use and keeps
// it, so two workers on one GPU never serialise on a shared stream. Every
// copy and the forward pass are queued on that stream; Finish() waits for
// it alone, never for the device. Not thread-safe; one per running batch.
class Batch {
 public:
  explicit Batch(int device);
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // Joins `parts` (host bytes) into a pinned staging buffer from libtorch's
  // caching host allocator and queues a non-blocking copy to the device.
  at::Tensor Upload(const std::vector<absl::string_view>& parts, at::IntArrayRef shape,
                    at::ScalarType type);
  // Records the timing events around the forward pass, on this stream.
  void StartTiming();
  void StopTiming();
  // Queues a non-blocking copy of `t` into pinned host memory; its bytes are
  // valid after Finish().
  at::Tensor Download(const at::Tensor& t);
  // Waits for this batch's stream; returns the forward pass's time between
  // the two events, in seconds.
  double Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuda
}  // namespace fairserve

#endif  // FAIRSERVE_SRC_MODELS_CUDA_BACKEND_H_
