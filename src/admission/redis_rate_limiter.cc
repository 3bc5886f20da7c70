#include "fairserve/admission/redis_rate_limiter.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

// GCRA on Redis's clock. KEYS[1]: the bucket. ARGV[1]: microseconds one
// token takes to refill; ARGV[2]: the burst tolerance ((burst - 1) *
// interval). The key holds the theoretical arrival time (µs since the epoch)
// and expires once the bucket is full again. Returns {1, 0} when a token was
// taken, {0, µs until one is available} when not.
constexpr char kGcraScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
if tat - now > tolerance then
  return {0, tat - now - tolerance}
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
           'PX', math.floor((next_tat - now) / 1000) + 1000)
return {1, 0}
)lua";

constexpr size_t kMaxPipeline = 256;
constexpr auto kFirstBackoff = std::chrono::milliseconds(50);
constexpr auto kMaxBackoff = std::chrono::seconds(2);

timeval ToTimeval(std::chrono::milliseconds d) {
  timeval tv;
  tv.tv_sec = d.count() / 1000;
  tv.tv_usec = (d.count() % 1000) * 1000;
  return tv;
}

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

std::string ContextError(const redisContext* ctx) {
  if (ctx == nullptr) return "out of memory";
  if (ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return "timed out";
  }
  return ctx->errstr[0] != '\0' ? ctx->errstr : "connection error";
}

}  // namespace

void RedisRateLimiter::ContextDeleter::operator()(redisContext* ctx) const {
  if (ctx != nullptr) redisFree(ctx);
}

void RedisRateLimiter::Append(redisContext* ctx, const std::string& sha, const Pending& p) {
  redisAppendCommand(ctx, "EVALSHA %s 1 %b %lld %lld", sha.c_str(), p.bucket.data(),
                     p.bucket.size(), static_cast<long long>(p.interval_us),
                     static_cast<long long>(p.tolerance_us));
}

absl::StatusOr<std::unique_ptr<RedisRateLimiter>> RedisRateLimiter::Create(Options options) {
  std::unique_ptr<RedisRateLimiter> limiter(new RedisRateLimiter(std::move(options)));
  const std::string& a = limiter->options_.address;
  if (absl::StartsWith(a, "unix:") && a.size() > 5) {
    limiter->unix_socket_ = true;
    limiter->host_ = a.substr(5);
  } else {
    size_t colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0 ||
        !absl::SimpleAtoi(a.substr(colon + 1), &limiter->port_) || limiter->port_ <= 0 ||
        limiter->port_ > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis address '", a, "' is not \"host:port\" or \"unix:/path\""));
    }
    limiter->host_ = a.substr(0, colon);
  }
  limiter->io_thread_ = std::thread([l = limiter.get()] { l->IoLoop(); });
  limiter->connect_thread_ = std::thread([l = limiter.get()] { l->ConnectLoop(); });
  return limiter;
}

RedisRateLimiter::RedisRateLimiter(Options options) : options_(std::move(options)) {}

RedisRateLimiter::~RedisRateLimiter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  io_cv_.notify_all();
  connect_cv_.notify_all();
  if (io_thread_.joinable()) io_thread_.join();
  if (connect_thread_.joinable()) connect_thread_.join();
  std::deque<Pending> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(queue_);
  }
  Fail(left, "the server is shutting down");
}

std::string RedisRateLimiter::Describe() const {
  return absl::StrCat("redis at ", options_.address);
}

RedisRateLimiter::Stats RedisRateLimiter::stats() const {
  Stats s;
  s.allowed = allowed_.load(std::memory_order_relaxed);
  s.denied = denied_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  s.disconnects = disconnects_.load(std::memory_order_relaxed);
  s.connect_failures = connect_failures_.load(std::memory_order_relaxed);
  s.up = up_.load(std::memory_order_relaxed);
  return s;
}

bool RedisRateLimiter::WaitUntilUp(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!up_.load()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void RedisRateLimiter::Check(const std::string& bucket, double rate, double burst,
                             Callback done) {
  if (!up_.load(std::memory_order_acquire)) {
    std::string error;
    {
      std::lock_guard<std::mutex> lock(mu_);
      error = last_error_;
    }
    failed_.fetch_add(1, std::memory_order_relaxed);
    Result r;
    r.error = std::move(error);
    done(r);
    return;
  }
  Pending p;
  p.bucket = bucket;
  double interval = 1e6 / std::max(rate, 1e-6);
  p.interval_us = std::max<int64_t>(1, std::llround(interval));
  p.tolerance_us = std::llround((std::max(1.0, burst) - 1.0) * interval);
  p.done = std::move(done);
  p.queued_at = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(p));
  }
  io_cv_.notify_one();
}

void RedisRateLimiter::Fail(std::deque<Pending>& batch, const std::string& error) {
  for (Pending& p : batch) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    Result r;
    r.error = error;
    p.done(r);
  }
  batch.clear();
}

void RedisRateLimiter::MarkDown(const std::string& error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    last_error_ = error;
    need_connect_ = true;
  }
  if (up_.exchange(false)) {
    disconnects_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("rate-limit backend {} is down ({}){}; reconnecting in the background",
                 Describe(), error,
                 options_.failure_note.empty() ? "" : "; " + options_.failure_note);
  }
  connect_cv_.notify_one();
}

absl::StatusOr<RedisRateLimiter::ContextPtr> RedisRateLimiter::Connect() {
  timeval tv = ToTimeval(options_.timeout);
  ContextPtr ctx(unix_socket_ ? redisConnectUnixWithTimeout(host_.c_str(), tv)
                              : redisConnectWithTimeout(host_.c_str(), port_, tv));
  if (ctx == nullptr || ctx->err) {
    return absl::UnavailableError(absl::StrCat("cannot connect: ", ContextError(ctx.get())));
  }
  if (redisSetTimeout(ctx.get(), tv) != REDIS_OK) {
    return absl::UnavailableError(absl::StrCat("cannot set timeout: ", ContextError(ctx.get())));
  }
  ReplyPtr reply(static_cast<redisReply*>(redisCommand(ctx.get(), "SCRIPT LOAD %s", kGcraScript)));
  if (reply == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot load the rate-limit script: ", ContextError(ctx.get())));
  }
  if (reply->type != REDIS_REPLY_STRING) {
    return absl::UnavailableError(absl::StrCat(
        "cannot load the rate-limit script: ",
        reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len) : "bad reply"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  sha_.assign(reply->str, reply->len);
  return ctx;
}

void RedisRateLimiter::ConnectLoop() {
  auto backoff = std::chrono::milliseconds(kFirstBackoff);
  bool logged_failure = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    connect_cv_.wait(lock, [this] { return stopping_ || (need_connect_ && !ready_ctx_); });
    if (stopping_) return;
    lock.unlock();
    absl::StatusOr<ContextPtr> ctx = Connect();
    lock.lock();
    if (stopping_) return;
    if (ctx.ok()) {
      ready_ctx_ = std::move(*ctx);
      need_connect_ = false;
      backoff = kFirstBackoff;
      logged_failure = false;
      io_cv_.notify_one();
      continue;
    }
    connect_failures_.fetch_add(1, std::memory_order_relaxed);
    last_error_ = std::string(ctx.status().message());
    if (!logged_failure) {
      spdlog::warn("rate-limit backend {}: {}; retrying with backoff up to {} ms", Describe(),
                   last_error_, std::chrono::milliseconds(kMaxBackoff).count());
      logged_failure = true;
    }
    connect_cv_.wait_for(lock, backoff, [this] { return stopping_; });
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, kMaxBackoff);
  }
}

void RedisRateLimiter::IoLoop() {
  ContextPtr ctx;
  std::string sha;
  std::deque<Pending> batch;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      io_cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || ready_ctx_ != nullptr; });
      if (stopping_) return;
      if (ready_ctx_ != nullptr) {
        ctx = std::move(ready_ctx_);
        sha = sha_;
        up_.store(true, std::memory_order_release);
        spdlog::info("rate-limit backend {} is up; rate limits are shared by the fleet",
                     Describe());
      }
      size_t n = std::min(queue_.size(), kMaxPipeline);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (batch.empty()) continue;
    if (ctx == nullptr) {
      // Queued just before the backend went down.
      std::string error;
      {
        std::lock_guard<std::mutex> lock(mu_);
        error = last_error_;
      }
      Fail(batch, error);
      continue;
    }
    for (const Pending& p : batch) Append(ctx.get(), sha, p);
    if (!RunBatch(ctx.get(), batch)) {
      std::string error = absl::StrCat("no answer from Redis: ", ContextError(ctx.get()));
      ctx.reset();
      MarkDown(error);
      Fail(batch, error);
      std::deque<Pending> rest;
      {
        std::lock_guard<std::mutex> lock(mu_);
        rest.swap(queue_);
      }
      Fail(rest, error);
    }
  }
}

bool RedisRateLimiter::RunBatch(redisContext* ctx, std::deque<Pending>& batch) {
  std::deque<Pending> retry;  // NOSCRIPT: Redis restarted and lost the script
  while (!batch.empty()) {
    void* raw = nullptr;
    if (redisGetReply(ctx, &raw) != REDIS_OK) {
      for (Pending& p : retry) batch.push_back(std::move(p));
      return false;
    }
    ReplyPtr reply(static_cast<redisReply*>(raw));
    Pending p = std::move(batch.front());
    batch.pop_front();
    auto now = std::chrono::steady_clock::now();
    if (reply->type == REDIS_REPLY_ERROR && absl::StartsWith(reply->str, "NOSCRIPT")) {
      retry.push_back(std::move(p));
      continue;
    }
    Result r;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER &&
        reply->element[1]->type == REDIS_REPLY_INTEGER) {
      bool allowed = reply->element[0]->integer == 1;
      r.kind = allowed ? Result::Kind::kAllowed : Result::Kind::kDenied;
      r.retry_after = std::chrono::microseconds(reply->element[1]->integer);
      (allowed ? allowed_ : denied_).fetch_add(1, std::memory_order_relaxed);
      if (options_.observe_latency) {
        options_.observe_latency(std::chrono::duration<double>(now - p.queued_at).count());
      }
    } else {
      r.error = reply->type == REDIS_REPLY_ERROR
                    ? absl::StrCat("Redis error: ", std::string(reply->str, reply->len))
                    : "unexpected reply from the rate-limit script";
      failed_.fetch_add(1, std::memory_order_relaxed);
    }
    p.done(r);
  }
  if (retry.empty()) return true;
  // Load the script again and resend what Redis could not run.
  ReplyPtr load(static_cast<redisReply*>(redisCommand(ctx, "SCRIPT LOAD %s", kGcraScript)));
  if (load == nullptr) {
    batch.swap(retry);
    return false;
  }
  if (load->type != REDIS_REPLY_STRING) {
    Fail(retry, "Redis lost the rate-limit script and refused to load it again");
    return true;
  }
  std::string sha(load->str, load->len);
  for (const Pending& p : retry) Append(ctx, sha, p);
  batch.swap(retry);
  return RunBatch(ctx, batch);
}

}  // namespace fairserve
