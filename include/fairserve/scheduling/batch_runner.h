#ifndef FAIRSERVE_SCHEDULING_BATCH_RUNNER_H_
#define FAIRSERVE_SCHEDULING_BATCH_RUNNER_H_

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
  // `observers` are not owned and must outlive the runner.
  BatchRunner(Clock& clock, std::vector<BatchObserver*> observers)
      : clock_(clock), observers_(std::move(observers)) {}

  // REQUIRES: all requests BatchableWith the first, total samples within the
  // model's max batch size.
  // Requests whose deadline passed or whose client left are answered
  // DEADLINE_EXCEEDED / CANCELLED without running. When a batch of several
  // fails, its requests are retried one by one so only a faulty request gets
  // the error. Returns the batch record (also given to the observers).
  // Replies go out only after every observer (the usage ledger among them)
  // has the record: a client that saw its answer is already billed.
  BatchRecord Run(std::vector<std::unique_ptr<InferenceRequest>> batch);

 private:
  // The answers of a batch, held until the observers have its record.
  using Replies =
      std::vector<std::pair<InferenceRequest::DoneCallback, absl::StatusOr<InferenceResult>>>;
  // Runs `batch` as one model call; on success completes every request.
  absl::Status RunOnce(std::vector<std::unique_ptr<InferenceRequest>>& batch, BatchRecord* record,
                       Replies* replies);

  Clock& clock_;
  std::vector<BatchObserver*> observers_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SCHEDULING_BATCH_RUNNER_H_
