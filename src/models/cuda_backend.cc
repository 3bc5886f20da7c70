// Compiled only against a CUDA-capable libtorch (see cuda_backend.h), and
// compile-checked on CPU machines by the fairserve_cuda_check target.
// Written against the API common to libtorch 1.13 and 2.x.

#include "cuda_backend.h"

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <optional>

namespace fairserve {
namespace cuda {
namespace {

// This thread's stream on each device, taken from libtorch's pool on first
// use (a worker thread keeps its stream for its life).
c10::cuda::CUDAStream ThreadStream(int device) {
  thread_local std::vector<std::optional<c10::cuda::CUDAStream>> streams;
  if (static_cast<size_t>(device) >= streams.size()) streams.resize(device + 1);
  if (!streams[device]) {
    streams[device] = c10::cuda::getStreamFromPool(/*isHighPriority=*/false,
                                                   static_cast<c10::DeviceIndex>(device));
  }
  return *streams[device];
}

// The allocator's aggregate statistics: index 0 of each array is
// StatType::AGGREGATE in every libtorch version (the enum moved namespaces
// in 2.x, the layout did not).
constexpr size_t kAggregate = 0;

}  // namespace

int DeviceCount() { return static_cast<int>(c10::cuda::device_count()); }

Memory MemoryOf(int device) {
  Memory m;
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  m.allocated = static_cast<uint64_t>(stats.allocated_bytes[kAggregate].current);
  m.peak_allocated = static_cast<uint64_t>(stats.allocated_bytes[kAggregate].peak);
  m.reserved = static_cast<uint64_t>(stats.reserved_bytes[kAggregate].current);
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) == cudaSuccess) {
    m.free = free;
    m.total = total;
  }
  return m;
}

void ResetPeak(int device) { c10::cuda::CUDACachingAllocator::resetPeakStats(device); }

void ReleaseCached() { c10::cuda::CUDACachingAllocator::emptyCache(); }

void SetMemoryFraction(int device, double fraction) {
  c10::cuda::CUDACachingAllocator::setMemoryFraction(fraction, device);
}

void SyncCurrentStream(int device) {
  c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).synchronize();
}

struct Batch::Impl {
  explicit Impl(int d)
      : device(static_cast<c10::DeviceIndex>(d)), stream(ThreadStream(d)), guard(stream),
        start(cudaEventDefault), stop(cudaEventDefault) {}
  c10::DeviceIndex device;
  c10::cuda::CUDAStream stream;
  c10::cuda::CUDAStreamGuard guard;  // also makes `device` current
  // Timing events (cudaEventDefault: timing on; libtorch's default is off).
  at::cuda::CUDAEvent start;
  at::cuda::CUDAEvent stop;
};

Batch::Batch(int device) : impl_(std::make_unique<Impl>(device)) {}
Batch::~Batch() = default;

at::Tensor Batch::Upload(const std::vector<absl::string_view>& parts, at::IntArrayRef shape,
                         at::ScalarType type) {
  // The caching host allocator reuses pinned blocks and keeps one alive
  // until the copy queued from it has run, so a fresh tensor per batch
  // costs no cudaHostAlloc once warm.
  at::Tensor staging =
      at::empty(shape, at::TensorOptions().dtype(type).pinned_memory(true));
  char* dst = static_cast<char*>(staging.data_ptr());
  for (absl::string_view part : parts) {
    std::memcpy(dst, part.data(), part.size());
    dst += part.size();
  }
  at::Tensor on_device =
      at::empty(shape, at::TensorOptions().dtype(type).device(at::kCUDA, impl_->device));
  on_device.copy_(staging, /*non_blocking=*/true);
  return on_device;
}

void Batch::StartTiming() { impl_->start.record(impl_->stream); }
void Batch::StopTiming() { impl_->stop.record(impl_->stream); }

at::Tensor Batch::Download(const at::Tensor& t) {
  at::Tensor contiguous = t.contiguous();
  at::Tensor host = at::empty(contiguous.sizes(),
                              at::TensorOptions().dtype(contiguous.scalar_type()).pinned_memory(true));
  host.copy_(contiguous, /*non_blocking=*/true);
  return host;
}

double Batch::Finish() {
  impl_->stream.synchronize();
  if (!impl_->start.isCreated() || !impl_->stop.isCreated()) return 0;
  return impl_->start.elapsed_time(impl_->stop) / 1000.0;
}

}  // namespace cuda
}  // namespace fairserve
