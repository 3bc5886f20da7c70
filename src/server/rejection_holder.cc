#include "fairserve/server/rejection_holder.h"

#include <pthread.h>

#include <algorithm>

namespace fairserve {

RejectionHolder::RejectionHolder(const Options& options, Clock& clock)
    : options_(options), clock_(clock) {
  if (options_.start_thread && options_.per_tenant > 0) {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "fs-held");
      Loop();
    });
  }
}

RejectionHolder::~RejectionHolder() { Stop(); }

void RejectionHolder::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  AnswerDue(Clock::TimePoint::max());  // nothing held is left unanswered
}

bool RejectionHolder::Hold(const std::string& tenant, Clock::TimePoint until,
                           std::function<void()> answer) {
  if (options_.per_tenant == 0) return false;
  const Clock::TimePoint now = clock_.Now();
  const Clock::TimePoint due = std::min(until, now + options_.max_hold);
  if (due <= now) return false;
  bool earliest = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t& mine = per_tenant_[tenant];
    if (stopping_ || mine >= options_.per_tenant || heap_.size() >= options_.total) {
      if (mine == 0) per_tenant_.erase(tenant);
      ++overflow_total_;
      return false;
    }
    ++mine;
    ++held_total_;
    earliest = heap_.empty() || due < heap_.top().due;
    heap_.push(Entry{due, seq_++, tenant, std::move(answer)});
  }
  if (earliest) cv_.notify_one();
  return true;
}

size_t RejectionHolder::AnswerDue(Clock::TimePoint now) {
  std::vector<std::function<void()>> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!heap_.empty() && heap_.top().due <= now) {
      Entry e = heap_.top();
      heap_.pop();
      auto it = per_tenant_.find(e.tenant);
      if (it != per_tenant_.end() && --it->second == 0) per_tenant_.erase(it);
      due.push_back(std::move(e.answer));
    }
  }
  for (auto& answer : due) answer();
  return due.size();
}

void RejectionHolder::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (heap_.empty()) {
      cv_.wait(lock);
      continue;
    }
    // The clock is injected for AnswerDue(); the wait itself is real time,
    // converted from the next due point.
    const Clock::Duration wait = heap_.top().due - clock_.Now();
    if (wait > Clock::Duration::zero()) {
      cv_.wait_for(lock, wait);
      continue;
    }
    lock.unlock();
    AnswerDue(clock_.Now());
    lock.lock();
  }
}

size_t RejectionHolder::held() const {
  std::lock_guard<std::mutex> lock(mu_);
  return heap_.size();
}

uint64_t RejectionHolder::held_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_total_;
}

uint64_t RejectionHolder::overflow_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return overflow_total_;
}

}  // namespace fairserve
