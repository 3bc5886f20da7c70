// The cost of fleet-wide rate limits (rate_limit_backend: redis) against a
// real redis-server on loopback:
//  1. one shared check in-process (RedisRateLimiter, sequential), p50/p99;
//  2. checks per second one replica sustains (256 checks kept outstanding);
//  3. added latency per admitted request end to end: sequential add_one
//     ModelInfer calls to a daemon with the local backend and to one with
//     the Redis backend (a limit high enough that nothing is rejected).
//
//   build/bin/ratelimit_bench --models build/demo-models [--reps 3] [--calls 2000]

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "fairserve/admission/redis_rate_limiter.h"
#include "testing/redis_server.h"

namespace fs = fairserve::bench;
using fairserve::RedisRateLimiter;
using fairserve::SharedRateLimiter;

namespace {

std::vector<double> SequentialChecks(RedisRateLimiter& l, int n) {
  std::vector<double> lat;
  for (int i = 0; i < n; ++i) {
    auto t0 = fs::Clock::now();
    std::promise<void> done;
    l.Check("bench:seq", 1e6, 1e6, [&](const SharedRateLimiter::Result&) { done.set_value(); });
    done.get_future().wait();
    lat.push_back(fs::Ms(fs::Clock::now() - t0));
  }
  return lat;
}

// Keeps `window` checks outstanding for `seconds`; returns checks per second.
double Throughput(RedisRateLimiter& l, int window, double seconds) {
  std::atomic<uint64_t> answered{0};
  std::atomic<bool> stop{false};
  std::atomic<int> outstanding{0};
  std::function<void()> issue = [&] {
    outstanding++;
    l.Check("bench:tput", 1e9, 1e9, [&](const SharedRateLimiter::Result&) {
      answered++;
      outstanding--;
      if (!stop) issue();
    });
  };
  for (int i = 0; i < window; ++i) issue();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // warm-up
  uint64_t start = answered;
  auto t0 = fs::Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  double rate = (answered - start) / std::chrono::duration<double>(fs::Clock::now() - t0).count();
  stop = true;
  while (outstanding > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::BenchFlags flags = fs::ParseBenchFlags(argc, argv, {"build/demo-models", 3, 2000});
  const std::string& models = flags.models;
  const int reps = flags.reps, calls = flags.calls;
  std::string bin = std::filesystem::path(argv[0]).parent_path() / "fairserve";
  fairserve::testing_util::RedisServer redis;
  if (!redis.started()) {
    std::fprintf(stderr, "redis-server did not start (is it installed?)\n");
    return 1;
  }

  RedisRateLimiter::Options o;
  o.address = redis.address();
  auto limiter = RedisRateLimiter::Create(o);
  if (!limiter.ok() || !(*limiter)->WaitUntilUp(std::chrono::seconds(5))) {
    std::fprintf(stderr, "cannot reach redis at %s\n", redis.address().c_str());
    return 1;
  }
  std::vector<fs::Stats> checks;
  std::vector<double> tput;
  for (int r = 0; r < reps; ++r) {
    SequentialChecks(**limiter, 500);  // warm-up
    checks.push_back(fs::Summarize(SequentialChecks(**limiter, 5000)));
    tput.push_back(Throughput(**limiter, 256, 3.0));
  }
  std::printf("shared check in-process (5000 sequential x %d runs):\n", reps);
  fs::Report("  RedisRateLimiter::Check", checks, "us", 1000.0);
  std::sort(tput.begin(), tput.end());
  std::printf("  checks/s, 256 outstanding, 3 s x %d runs: median %.0f (runs %.0f..%.0f)\n", reps,
              fs::Median(tput), tput.front(), tput.back());
  limiter->reset();

  char tmpl[] = "/tmp/fairserve-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::filesystem::create_directories(dir + "/local");
  std::filesystem::create_directories(dir + "/redis");
  std::string limit = "    rate_limit: {requests_per_second: 1000000, burst: 1000000}\n";
  fs::Daemon local = fs::StartDaemon(bin, dir + "/local", fs::BenchConfig(models, limit));
  fs::Daemon shared = fs::StartDaemon(
      bin, dir + "/redis",
      fs::BenchConfig(models, limit,
                      "rate_limit_backend: {type: redis, address: \"" + redis.address() +
                          "\", timeout_ms: 100}\n"));
  auto call_local = fs::AddOneCaller(local.port);
  auto call_shared = fs::AddOneCaller(shared.port);
  std::vector<fs::Stats> l, s;
  std::vector<double> added;
  for (int r = 0; r < reps; ++r) {  // interleaved, so drift hits both alike
    std::vector<double> a = fs::TimeCalls(call_local, calls);
    std::vector<double> b = fs::TimeCalls(call_shared, calls);
    if (a.empty() || b.empty()) return 1;
    l.push_back(fs::Summarize(a));
    s.push_back(fs::Summarize(b));
    added.push_back((s.back().p50 - l.back().p50) * 1000.0);
  }
  fs::StopDaemon(local);
  fs::StopDaemon(shared);
  std::filesystem::remove_all(dir);
  std::printf("add_one ModelInfer end to end (%d sequential calls x %d runs):\n", calls, reps);
  fs::Report("  rate limits local", l);
  fs::Report("  rate limits in redis", s);
  std::sort(added.begin(), added.end());
  std::printf("  added per admitted request (p50 difference): median %.1f us (runs %.1f..%.1f); "
              "target <= 100 us\n",
              fs::Median(added), added.front(), added.back());
  return 0;
}
