#ifndef FAIRSERVE_SCHEDULING_REQUEST_H_
#define FAIRSERVE_SCHEDULING_REQUEST_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fairserve/common/clock.h"
#include "fairserve/models/model_cache.h"
#include "fairserve/models/tensor.h"

namespace fairserve {

// What a completed request gets back.
struct InferenceResult {
  // The requested outputs, in the order the request asked for them.
  std::vector<Tensor> outputs;
  std::vector<std::string> output_names;
  // This request's share of its batch's compute time (split by samples).
  double compute_seconds = 0;
  Clock::Duration queue_time{};
  int64_t batch_samples = 0;  // samples in the batch this request ran in
};

// One admitted inference request, validated against its model's signature.
// Created by the front end, owned by the scheduler until completed.
struct InferenceRequest {
  using DoneCallback = std::function<void(absl::StatusOr<InferenceResult>)>;

  std::string id;
  std::string tenant_id;
  double tenant_weight = 1.0;
  std::shared_ptr<const Servable> servable;
  // One per model input, in the order of servable->config.inputs. The bytes
  // are owned by the transport message or by `owned_buffers`.
  std::vector<TensorView> inputs;
  std::vector<std::string> owned_buffers;
  // Indexes into servable->config.outputs, in the order to answer with.
  std::vector<int> output_indexes;
  // Samples: the first dimension for batching models, else 1.
  int64_t batch_size = 1;
  // Largest batch this request may share (the tenant's cap); 0 = no cap.
  int64_t max_batch_size = 0;
  // Largest answer the transport can send (its message limit); 0 = no limit.
  // Outputs over it fail the request with RESOURCE_EXHAUSTED before the
  // batch is metered, and that request is not billed for its share.
  uint64_t max_response_bytes = 0;
  Clock::TimePoint arrival{};
  Clock::TimePoint deadline = Clock::TimePoint::max();
  // Held from admission until the request starts to run (admission's
  // max_queue counts it meanwhile); the queue drops it when it hands the
  // request to a worker, and shutdown before answering a request it never
  // ran. May be null. (The in-flight slot is not here: the caller keeps it
  // until its answer, see InferCall.)
  std::shared_ptr<void> waiting;
  // Set by the transport when the client goes away; the transport shares it
  // with its call. Null: nobody can cancel this request.
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Called exactly once, once the scheduler accepted it: from a worker
  // thread, or from the thread calling Submit when the scheduler ran the
  // request there (`may_run_on_caller`).
  DoneCallback on_done;
  // Set by the transport when the thread calling Submit is its own (a gRPC
  // callback thread of this call, the REST handler thread waiting for this
  // call), never a thread other calls wait on (the shared executor): the
  // scheduler may then run a cheap batch that is ready at once right there,
  // with no hand-off (SchedulerOptions::run_on_caller_below).
  bool may_run_on_caller = false;

  // True when `other` may run in the same batch as this one: same model
  // version and equal non-batch dimensions for every input.
  bool BatchableWith(const InferenceRequest& other) const;

  // Largest number of samples a batch led by this request may hold.
  int64_t BatchLimit() const;
  bool Cancelled() const { return cancelled && cancelled->load(std::memory_order_relaxed); }
  // True when the request should not run: its client left or its deadline passed.
  bool Dead(Clock::TimePoint now) const { return Cancelled() || now >= deadline; }
};

// Per-request line of a completed batch, for metering.
struct BatchItem {
  std::string tenant_id;
  int64_t samples = 0;
  double compute_seconds = 0;
  Clock::Duration queue_time{};
  absl::StatusCode code = absl::StatusCode::kOk;
};

struct BatchRecord {
  std::string model_name;
  std::string model_version;
  int64_t samples = 0;
  double compute_seconds = 0;  // measured time of the model run(s) billed to the items
  // All the device time the batch took, including a failed shared run that
  // was then retried request by request (billed to nobody, but the tenant
  // whose batch it was used the device: the fair-share clock charges it).
  double device_seconds = 0;
  std::vector<BatchItem> items;
};

// Told about every batch that ran. Called from worker threads; must be quick
// and thread-safe.
class BatchObserver {
 public:
  virtual ~BatchObserver() = default;
  virtual void OnBatch(const BatchRecord& record) = 0;
};

// Decides when a batch's answers may leave, once every observer has its
// record: at once, or only when the record is durable (the usage ledger in
// reply_after_commit mode). Called on the worker thread that ran the batch.
class ReplyGate {
 public:
  virtual ~ReplyGate() = default;
  // Runs `send` exactly once: here, or later on the gate's own thread.
  virtual void AfterRecorded(std::function<void()> send) = 0;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SCHEDULING_REQUEST_H_
