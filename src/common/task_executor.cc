#include "fairserve/common/task_executor.h"

#include <pthread.h>

namespace fairserve {

TaskExecutor::TaskExecutor(int threads, const std::string& name) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this, name, i] {
      std::string thread_name = (name + "-" + std::to_string(i)).substr(0, 15);
      pthread_setname_np(pthread_self(), thread_name.c_str());
      Run();
    });
  }
}

TaskExecutor::~TaskExecutor() { Shutdown(); }

void TaskExecutor::Post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      tasks_.push_back(std::move(task));
      cv_.notify_one();
      return;
    }
  }
  task();  // shut down: nothing else would run it
}

void TaskExecutor::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.notify_all();
  }
  for (std::thread& t : threads_) t.join();
}

size_t TaskExecutor::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tasks_.size();
}

void TaskExecutor::Run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and everything queued has run
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace fairserve
