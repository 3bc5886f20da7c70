#ifndef FAIRSERVE_SCHEDULING_BATCH_RUNNER_H_
#define FAIRSERVE_SCHEDULING_BATCH_RUNNER_H_

#include <functional>
#include <memory>
#include <vector>

#include "fairserve/common/clock.h"
#include "fairserve/scheduling/request.h"

namespace fairserve {

// Runs one batch of mutually batchable requests and completes each of them.
// Shared by every scheduling policy. Thread-safe (stateless apart from the
// injected clock and observers).
class BatchRunner {
 public:
  // `observers` and `gate` (optional) are not owned and must outlive the
  // runner.
  BatchRunner(Clock& clock, std::vector<BatchObserver*> observers, ReplyGate* gate = nullptr)
      : clock_(clock), observers_(std::move(observers)), gate_(gate) {}

  // REQUIRES: all requests BatchableWith the first, total samples within the
  // model's max batch size.
  // Requests whose deadline passed or whose client left are answered
  // DEADLINE_EXCEEDED / CANCELLED without running. When a batch of several
  // fails, its requests are retried one by one so only a faulty request gets
  // the error. Returns the batch record (also given to the observers).
  // Replies go out only after every observer (the usage ledger among them)
  // has the record: a client that saw its answer is already billed. With a
  // gate, they go out when the gate says (after the ledger's commit, in
  // reply_after_commit mode); each caller keeps its in-flight slot until
  // its on_done runs (InferCall), so a held answer still counts against
  // max_inflight.
  // `settle` (optional) runs on this thread after the observers and before
  // any answer goes out: the scheduler frees the batch's slot and charges
  // its tenant there, so a client that has its answer and sends the next
  // request at once finds the device free and its cost counted.
  BatchRecord Run(std::vector<std::unique_ptr<InferenceRequest>> batch,
                  const std::function<void(const BatchRecord&)>& settle = nullptr);

  // The answers of a batch, held until the observers have its record.
  struct Reply {
    InferenceRequest::DoneCallback done;
    absl::StatusOr<InferenceResult> result;
  };
  using Replies = std::vector<Reply>;

 private:
  // Runs `batch` as one model call; on success completes every request.
  absl::Status RunOnce(std::vector<std::unique_ptr<InferenceRequest>>& batch, BatchRecord* record,
                       Replies* replies);

  Clock& clock_;
  std::vector<BatchObserver*> observers_;
  ReplyGate* gate_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SCHEDULING_BATCH_RUNNER_H_
