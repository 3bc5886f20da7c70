#ifndef FAIRSERVE_SCHEDULING_SCHEDULER_H_
#define FAIRSERVE_SCHEDULING_SCHEDULER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "fairserve/scheduling/batch_runner.h"
#include "fairserve/scheduling/request.h"

namespace fairserve {

// Takes admitted requests, forms batches and runs them on its own worker
// threads. Never blocks the caller of Submit() on a model run, with one
// exception it is asked for: a request marked `may_run_on_caller` whose batch
// is ready at once, with nothing else queued, a worker's slot free, the
// device idle for a while and an estimated cost under
// SchedulerOptions::run_on_caller_below runs on the calling thread (see
// there).
class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // Queues `request`. On OK the scheduler owns it and calls its on_done
  // exactly once. On error (queue full, shutting down) the request is
  // destroyed without on_done being called; the caller answers the client
  // with the returned status.
  virtual absl::Status Submit(std::unique_ptr<InferenceRequest> request) = 0;

  // Stops taking requests, lets workers finish what is queued for up to
  // `drain`, answers the rest UNAVAILABLE and joins the workers. Idempotent.
  // A batch running on a caller's thread (run_on_caller_below) ends with
  // that caller's Submit(), which the owner must let return before
  // destroying the scheduler.
  virtual void Shutdown(std::chrono::milliseconds drain) = 0;

  // Requests waiting (not yet running).
  virtual int64_t QueueDepth() const = 0;

  // Batches run on the thread that submitted them (run_on_caller_below).
  virtual int64_t CallerRuns() const = 0;
};

struct SchedulerOptions {
  // "fair" (FairPolicy) or "fifo" (one global queue, the baseline).
  std::string policy = "fair";
  int workers = 1;
  // Longest any request may wait in a queue.
  std::chrono::microseconds max_queue_wait = std::chrono::seconds(30);
  // Runs at the start of every worker thread (e.g. libtorch thread set-up).
  std::function<void()> thread_init;
  // Worker threads are named `thread_name`-N (cut to the 15 characters a
  // Linux thread name holds), as top -H and perf show them.
  std::string thread_name = "fs-worker";
  // A request marked `may_run_on_caller` runs on the thread calling Submit,
  // instead of being handed to a worker, when all of these hold: nothing
  // else is queued (nobody waits for it to go first), fewer batches run than
  // there are workers (it takes a worker's slot, so at most `workers` batches
  // run at once either way), its batch is ready now (no batching delay to
  // wait for company in), the policy's estimate of its cost is known and
  // below this, and the device has been idle (no batch running or queued)
  // for at least 4 times that estimate: calls that arrive back to back
  // queue and batch instead, since running one inline holds its connection's
  // next calls back. It goes through the policy like any batch (charged,
  // measured, counted). This saves the hand-off and the worker's wake-up,
  // most of the server's cost on a tiny call. 0 = never.
  std::chrono::microseconds run_on_caller_below{0};
};

// Worker threads that take batches from the policy named in options.policy
// (see queue_policy.h) and run them with `runner`. Cancelled and expired
// requests leave their queue within 10 ms and are answered then.
std::unique_ptr<Scheduler> MakeScheduler(const SchedulerOptions& options, Clock& clock,
                                         BatchRunner& runner);

// One scheduler per device (cpu, cuda:N), each with its own policy and
// worker threads, behind one Submit(): a request goes to the scheduler of
// the device its model version was placed on (servable->config.device; an
// empty device, as test fakes leave it, goes to the first). A GPU's workers
// thus never wait behind CPU batches, or another GPU's. Fairness holds per
// device: each device is its own resource, and a tenant's service on one
// does not count on another. REQUIRES: `per_device` is not empty.
std::unique_ptr<Scheduler> MakeDeviceScheduler(
    std::map<std::string, std::unique_ptr<Scheduler>> per_device);

}  // namespace fairserve

#endif  // FAIRSERVE_SCHEDULING_SCHEDULER_H_
