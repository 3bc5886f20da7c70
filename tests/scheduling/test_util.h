#ifndef FAIRSERVE_TESTS_SCHEDULING_TEST_UTIL_H_
#define FAIRSERVE_TESTS_SCHEDULING_TEST_UTIL_H_

// Fakes for scheduler tests: an executor that doubles FP32 inputs, can be
// told to fail on a marker value, advances a fake clock by a fixed time per
// sample, and records the batch sizes it saw.

#include <cstring>
#include <mutex>
#include <optional>
#include <vector>

#include "fairserve/common/clock.h"
#include "fairserve/scheduling/request.h"

namespace fairserve {
namespace testing_util {

class DoublingExecutor : public Executor {
 public:
  // `device_seconds_per_sample` >= 0: RunTimed reports the batch's device
  // time as that many seconds a sample (a device that times its own work,
  // as CUDA events do); negative: no device timing, host time is used.
  DoublingExecutor(FakeClock* clock, Clock::Duration per_sample,
                   double device_seconds_per_sample = -1)
      : clock_(clock),
        per_sample_(per_sample),
        device_seconds_per_sample_(device_seconds_per_sample) {}

  absl::StatusOr<std::vector<Tensor>> RunTimed(const std::vector<BatchInput>& inputs,
                                               RunTiming* timing) override {
    if (device_seconds_per_sample_ >= 0) {
      timing->device_seconds = device_seconds_per_sample_ * static_cast<double>(inputs[0].shape[0]);
    }
    return Run(inputs);
  }

  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<BatchInput>& inputs) override {
    const BatchInput& in = inputs[0];
    Tensor out;
    out.dtype = DataType::kFp32;
    out.shape = in.shape;
    for (absl::string_view part : in.parts) out.bytes.append(part.data(), part.size());
    std::vector<float> v(out.bytes.size() / 4);
    std::memcpy(v.data(), out.bytes.data(), out.bytes.size());
    {
      std::lock_guard<std::mutex> lock(mu_);
      batches_.push_back(in.shape[0]);
    }
    if (clock_) clock_->Advance(per_sample_ * in.shape[0]);
    for (float& f : v) {
      if (f == kPoison) return absl::InvalidArgumentError("poisoned sample");
      f *= 2;
    }
    std::memcpy(out.bytes.data(), v.data(), out.bytes.size());
    return std::vector<Tensor>{std::move(out)};
  }
  uint64_t memory_bytes() const override { return 0; }

  std::vector<int64_t> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }

  static constexpr float kPoison = -999.0f;

 private:
  FakeClock* clock_;
  Clock::Duration per_sample_;
  const double device_seconds_per_sample_;
  std::mutex mu_;
  std::vector<int64_t> batches_;
};

inline std::shared_ptr<const Servable> MakeServable(std::shared_ptr<Executor> exec,
                                                    int64_t max_batch = 8,
                                                    const std::string& name = "double") {
  auto s = std::make_shared<Servable>();
  s->config.name = name;
  s->config.max_batch_size = max_batch;
  s->config.inputs = {{"X", DataType::kFp32, {-1, 2}}};
  s->config.outputs = {{"Y", DataType::kFp32, {-1, 2}}};
  s->version = "1";
  s->executor = std::move(exec);
  return s;
}

// Collects what on_done delivered.
struct Outcome {
  std::mutex mu;
  std::optional<absl::StatusOr<InferenceResult>> result;
  bool done() {
    std::lock_guard<std::mutex> lock(mu);
    return result.has_value();
  }
};

// A request of `rows` samples of two floats each, all equal to `value`.
inline std::unique_ptr<InferenceRequest> MakeRequest(std::shared_ptr<const Servable> servable,
                                                     const std::string& tenant, int64_t rows,
                                                     float value,
                                                     std::shared_ptr<Outcome> outcome) {
  auto r = std::make_unique<InferenceRequest>();
  r->tenant_id = tenant;
  r->servable = std::move(servable);
  std::vector<float> v(rows * 2, value);
  r->owned_buffers.emplace_back(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  r->inputs = {TensorView{DataType::kFp32, {rows, 2}, r->owned_buffers.back()}};
  r->output_indexes = {0};
  r->batch_size = rows;
  r->on_done = [outcome](absl::StatusOr<InferenceResult> res) {
    std::lock_guard<std::mutex> lock(outcome->mu);
    outcome->result = std::move(res);
  };
  return r;
}

// Whether a request's queue place had been given back when its answer came
// (nullopt until it came).
struct QueuePlaceAtAnswer {
  std::mutex mu;
  std::optional<bool> waiting_free;
};

// Gives `r` a stand-in for its queue place (admission's WaitSlot) and
// records in the result whether it was gone (dropped by the scheduler) by the
// time on_done ran.
inline std::shared_ptr<QueuePlaceAtAnswer> TrackQueuePlace(InferenceRequest* r) {
  auto seen = std::make_shared<QueuePlaceAtAnswer>();
  auto waiting = std::make_shared<int>(0);
  std::weak_ptr<int> waiting_alive = waiting;
  r->waiting = std::move(waiting);
  r->on_done = [seen, waiting_alive,
                done = std::move(r->on_done)](absl::StatusOr<InferenceResult> res) {
    {
      std::lock_guard<std::mutex> lock(seen->mu);
      seen->waiting_free = waiting_alive.expired();
    }
    done(std::move(res));
  };
  return seen;
}

inline std::vector<float> OutputFloats(const InferenceResult& r) {
  std::vector<float> v(r.outputs[0].bytes.size() / 4);
  std::memcpy(v.data(), r.outputs[0].bytes.data(), r.outputs[0].bytes.size());
  return v;
}

}  // namespace testing_util
}  // namespace fairserve

#endif  // FAIRSERVE_TESTS_SCHEDULING_TEST_UTIL_H_
