#ifndef FAIRSERVE_COMMON_TASK_EXECUTOR_H_
#define FAIRSERVE_COMMON_TASK_EXECUTOR_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <optional>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"

namespace fairserve {

// A small pool of threads owned by the server that runs the continuations
// of calls whose previous step finished on somebody else's thread: the
// Redis limiter's I/O thread, the model loader's low-priority thread. Those
// threads only hand the call over (Post) and go back to their own work, so
// one tenant's 64 MiB payload is never decoded on a thread that every
// other tenant's rate checks or model loads wait on.
//
// Tasks run in the order posted, on any of the pool's threads. Post() is
// thread-safe and never blocks on a task. Shutdown() runs what is queued,
// then joins the threads; tasks posted after it run on the posting thread.
class TaskExecutor {
 public:
  // `threads` >= 1; `name` names the threads (for ps, gdb and perf).
  TaskExecutor(int threads, const std::string& name);
  ~TaskExecutor();
  TaskExecutor(const TaskExecutor&) = delete;
  TaskExecutor& operator=(const TaskExecutor&) = delete;

  void Post(std::function<void()> task);
  void Shutdown();

  // Tasks posted and not yet started.
  size_t queued() const;

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Asks a component something that may answer at once (on this thread) or
// later (on the component's own thread), and runs `then` with the answer
// either right here, when the answer came before `ask` returned, or on
// `executor`: never on the component's thread. `ask` receives the callback
// to give the component; it is called exactly once.
//
//   AskThenContinue<Decision>(executor,
//       [&](auto done) { admission.AdmitAsync(id, bytes, done); },
//       [self](Decision d) { self->OnAdmitted(std::move(d)); });
//
// `then` must be copyable (it travels in a std::function when posted).
template <typename T, typename Ask, typename Then>
void AskThenContinue(TaskExecutor& executor, Ask&& ask, Then then) {
  struct Handoff {
    // 0: asking; 1: `ask` returned first; 2: the answer came first.
    std::atomic<int> phase{0};
    std::optional<T> value;
  };
  auto h = std::make_shared<Handoff>();
  ask([h, &executor, then](T value) {
    h->value.emplace(std::move(value));
    if (h->phase.exchange(2) == 1) {
      executor.Post([h, then] { then(std::move(*h->value)); });
    }
  });
  if (h->phase.exchange(1) == 2) then(std::move(*h->value));
}

}  // namespace fairserve

#endif  // FAIRSERVE_COMMON_TASK_EXECUTOR_H_
