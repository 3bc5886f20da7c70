// Two real daemons sharing tenants' rate limits through a real redis-server
// on loopback: the limit holds across the fleet, other tenants are not
// affected, and losing Redis applies the failure policy until it is back.

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "fairserve/tenancy/api_key.h"
#include "integration/daemon_process.h"
#include "testing/redis_server.h"

namespace fairserve {
namespace {

using namespace testing_util;
using ::testing::HasSubstr;
using SteadyTime = std::chrono::steady_clock::time_point;

constexpr char kLimitedKey[] = "limited-key";

std::string FleetConfig(const RedisServer& redis, double rps, double burst,
                        const std::string& on_failure) {
  std::string tenant = "  - id: limited\n    api_keys: [\"" + HashApiKey(kLimitedKey) +
                       "\"]\n    rate_limit: {requests_per_second: " + std::to_string(rps) +
                       ", burst: " + std::to_string(burst) + "}\n";
  // globex is limited too (so it goes through Redis), far above what it sends.
  std::string config = TestConfigYaml(tenant, "rate_limit_backend: {type: redis, address: \"" +
                                                  redis.address() +
                                                  "\", timeout_ms: 100, on_failure: " +
                                                  on_failure + ", replicas: 2}\n");
  std::string globex = "    models: [add_one, mlp]\n";
  config.replace(config.find(globex), globex.size(),
                 globex + "    rate_limit: {requests_per_second: 5000, burst: 100}\n");
  return config;
}

// What one tenant's paced sender saw.
struct Outcome {
  std::map<grpc::StatusCode, int> codes;
  std::map<int, int> ok_per_replica;
  std::vector<std::pair<SteadyTime, grpc::Status>> log;  // every answer, in order
  std::vector<SteadyTime> sent;                            // when each request left
  int ok() const { return codes.count(grpc::StatusCode::OK) ? codes.at(grpc::StatusCode::OK) : 0; }
};

// Sends `rate` requests per second (open loop, one thread) for `seconds`,
// alternating between the replicas.
class PacedSender {
 public:
  PacedSender(std::vector<const DaemonProcess*> replicas, std::string key, double rate,
              double seconds)
      : key_(std::move(key)) {
    for (const DaemonProcess* d : replicas) clients_.push_back(std::make_unique<Client>(*d));
    thread_ = std::thread([this, rate, seconds] { Run(rate, seconds); });
  }
  Outcome Join() {
    thread_.join();
    return outcome_;
  }
  void Stop() { stop_ = true; }
  // Answers received so far (thread-safe snapshot).
  std::vector<std::pair<SteadyTime, grpc::Status>> Log() {
    std::lock_guard<std::mutex> lock(mu_);
    return outcome_.log;
  }

 private:
  void Run(double rate, double seconds) {
    auto start = std::chrono::steady_clock::now();
    auto period = std::chrono::duration<double>(1.0 / rate);
    for (int64_t i = 0; !stop_; ++i) {
      auto at = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(period * i);
      if (at - start > std::chrono::duration<double>(seconds)) break;
      std::this_thread::sleep_until(at);
      size_t replica = i % clients_.size();
      const SteadyTime sent = std::chrono::steady_clock::now();
      grpc::Status s = clients_[replica]->Infer(key_);
      std::lock_guard<std::mutex> lock(mu_);
      outcome_.sent.push_back(sent);
      outcome_.codes[s.error_code()]++;
      if (s.ok()) outcome_.ok_per_replica[replica]++;
      outcome_.log.emplace_back(std::chrono::steady_clock::now(), s);
    }
  }

  std::string key_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  Outcome outcome_;
  std::thread thread_;
};

// How many of `arrivals` one GCRA bucket of `rate` per second and `burst`
// admits: `burst` at once, then one per 1/rate. What the fleet should admit
// for the requests as they really arrived: a sender that falls behind its
// pace on a busy machine leaves gaps whose tokens are lost beyond the burst.
int OneBucketAdmits(const std::vector<SteadyTime>& arrivals, double rate, double burst) {
  const double period = 1.0 / rate;
  const double tolerance = (burst - 1) * period;
  double tat = -1e300;  // theoretical arrival time, seconds after the first
  int admitted = 0;
  for (SteadyTime at : arrivals) {
    const double t = std::chrono::duration<double>(at - arrivals.front()).count();
    const double due = std::max(tat, t);
    if (due - t <= tolerance + 1e-9) {
      ++admitted;
      tat = due + period;
    }
  }
  return admitted;
}

class FleetTest : public ::testing::Test {
 protected:
  void StartFleet(double rps, double burst, const std::string& on_failure) {
    ASSERT_TRUE(redis_.started()) << "redis-server did not start";
    std::string config = FleetConfig(redis_, rps, burst, on_failure);
    a_ = std::make_unique<DaemonProcess>(config);
    b_ = std::make_unique<DaemonProcess>(config);
    ASSERT_TRUE(a_->serving()) << a_->Log();
    ASSERT_TRUE(b_->serving()) << b_->Log();
    for (const DaemonProcess* d : {a_.get(), b_.get()}) {
      ASSERT_TRUE(WaitFor([d] { return Metric(*d, "fairserve_rate_limit_backend_up") == 1; }))
          << d->Log();
    }
  }
  std::vector<const DaemonProcess*> Both() const { return {a_.get(), b_.get()}; }

  RedisServer redis_;
  std::unique_ptr<DaemonProcess> a_, b_;
};

TEST_F(FleetTest, RateLimitHoldsAcrossReplicasAndSparesOtherTenants) {
  constexpr double kRate = 100, kBurst = 10, kSeconds = 10;
  StartFleet(kRate, kBurst, "deny");
  // The limited tenant offers 2.5x its rate, spread over both replicas;
  // globex sends well within its own limit at the same time.
  PacedSender limited(Both(), kLimitedKey, 2.5 * kRate, kSeconds);
  PacedSender globex(Both(), kGlobexKey, 40, kSeconds);
  Outcome l = limited.Join();
  Outcome g = globex.Join();

  double seconds = std::chrono::duration<double>(l.sent.back() - l.sent.front()).count();
  // At the sender's pace, GCRA admits the burst once, then the rate; what
  // one bucket admits for the requests' real send times is the reference
  // (the same when the sender kept its pace).
  const double paced = kRate * seconds + kBurst;
  const double allowed = OneBucketAdmits(l.sent, kRate, kBurst);
  std::cout << "limited: " << l.ok() << " admitted in " << seconds << " s (one bucket: "
            << allowed << "; at the configured pace " << paced << "), replica a "
            << l.ok_per_replica[0] << ", b " << l.ok_per_replica[1] << "; rejected "
            << l.codes[grpc::StatusCode::RESOURCE_EXHAUSTED] << "\n";
  EXPECT_NEAR(l.ok(), allowed, 0.05 * allowed);
  EXPECT_LE(l.ok(), paced * 1.05);
  // Both replicas admitted a share: the limit is one bucket, not two.
  EXPECT_GT(l.ok_per_replica[0], 0.3 * l.ok());
  EXPECT_GT(l.ok_per_replica[1], 0.3 * l.ok());
  EXPECT_EQ(l.ok() + l.codes[grpc::StatusCode::RESOURCE_EXHAUSTED],
            static_cast<int>(l.log.size()));
  // globex: every request succeeded.
  EXPECT_EQ(g.ok(), static_cast<int>(g.log.size())) << "globex saw failures";
  EXPECT_GT(g.ok(), 300);

  double checks = Metric(*a_, "fairserve_rate_limit_backend_checks_total{result=\"allowed\"}") +
                  Metric(*b_, "fairserve_rate_limit_backend_checks_total{result=\"allowed\"}");
  EXPECT_EQ(checks, l.ok() + g.ok());
}

TEST_F(FleetTest, RedisKilledDenyPolicyAppliesThenRecoversWithoutRestart) {
  StartFleet(200, 20, "deny");
  PacedSender limited(Both(), kLimitedKey, 50, 30);
  PacedSender unlimited({a_.get()}, kAcmeKey, 20, 30);  // acme has no rate limit
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // Taken before the kill: a replica may notice the closed connection and
  // answer UNAVAILABLE before Kill() has returned.
  SteadyTime killed = std::chrono::steady_clock::now();
  redis_.Kill();
  // The policy (deny: UNAVAILABLE) applies at once: a closed connection is
  // noticed on the next check, not after a timeout.
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& [at, s] : limited.Log()) {
      if (at > killed && s.error_code() == grpc::StatusCode::UNAVAILABLE) return true;
    }
    return false;
  }, 5));
  auto log = limited.Log();
  grpc::Status first_denied;
  SteadyTime first_denied_at;
  for (const auto& [at, s] : log) {
    if (at > killed && s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      first_denied = s;
      first_denied_at = at;
      break;
    }
  }
  EXPECT_THAT(first_denied.error_message(), HasSubstr("shared rate limiter (redis at 127.0.0.1:"));
  EXPECT_THAT(first_denied.error_message(), HasSubstr("on_failure is deny"));
  EXPECT_LT(first_denied_at - killed, std::chrono::seconds(1));
  // Each replica notices on its own next check (the sender alternates).
  for (const DaemonProcess* d : Both()) {
    EXPECT_TRUE(WaitFor([d] { return Metric(*d, "fairserve_rate_limit_backend_up") == 0; }, 5));
  }

  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_TRUE(redis_.Restart());
  SteadyTime restarted = std::chrono::steady_clock::now();
  // Both replicas reconnect by themselves (backoff is at most 2 s).
  for (const DaemonProcess* d : Both()) {
    ASSERT_TRUE(WaitFor([d] { return Metric(*d, "fairserve_rate_limit_backend_up") == 1; }, 10))
        << d->Log();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  SteadyTime recovered = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  limited.Stop();
  unlimited.Stop();
  Outcome l = limited.Join();
  Outcome u = unlimited.Join();
  int after = 0, after_ok = 0;
  for (const auto& [at, s] : l.log) {
    if (at < recovered) continue;
    ++after;
    after_ok += s.ok();
  }
  EXPECT_GT(after, 50);
  EXPECT_EQ(after_ok, after) << "shared limiting did not come back";
  EXPECT_LT(recovered - restarted, std::chrono::seconds(10));
  EXPECT_EQ(u.ok(), static_cast<int>(u.log.size())) << "an unlimited tenant was affected";
  EXPECT_GE(Metric(*a_, "fairserve_rate_limit_backend_disconnects_total"), 1);
  EXPECT_THAT(a_->Log(), HasSubstr("is down"));
  EXPECT_THAT(a_->Log(), HasSubstr("rate limits are shared by the fleet"));
}

TEST_F(FleetTest, UnresponsiveRedisAllowPolicyFallsBackToLocalShareWithinTimeout) {
  // 2 replicas: while Redis hangs each replica admits 1/2 of the rate itself.
  StartFleet(40, 4, "allow");
  redis_.Pause();
  Client client(*a_);
  auto start = std::chrono::steady_clock::now();
  grpc::Status first = client.Infer(kLimitedKey);
  auto waited = std::chrono::steady_clock::now() - start;
  redis_.Resume();
  EXPECT_TRUE(first.ok()) << first.error_message();
  // Answered after about timeout_ms (100 ms), not after Redis came back.
  EXPECT_LT(waited, std::chrono::milliseconds(1500));
  EXPECT_GE(Metric(*a_, "fairserve_rate_limit_backend_checks_total{result=\"failed\"}"), 1);
  EXPECT_THAT(a_->Log(), HasSubstr("each tenant gets 1/2 of its rate from a local bucket"));
}

TEST_F(FleetTest, FallbackBucketIsTheReplicasShare) {
  StartFleet(40, 4, "allow");
  redis_.Kill();
  Client client(*a_);
  // The first check finds the connection closed; from then on the local
  // bucket (20/s, burst 2) decides at once.
  client.Infer(kLimitedKey);
  ASSERT_TRUE(WaitFor([&] { return Metric(*a_, "fairserve_rate_limit_backend_up") == 0; }, 5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the bucket refills
  const auto start = std::chrono::steady_clock::now();
  int ok = client.Succeeded(kLimitedKey, 20);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(ok, 2);
  // The burst, plus what refilled while they ran (a slow machine takes
  // longer), plus one for a token due just as they started. The fleet's
  // whole bucket (40/s, burst 4) would admit at least 4.
  EXPECT_LE(ok, 3 + 20 * seconds)
      << "20 back-to-back requests against a 20/s, burst 2 bucket, in " << seconds << " s";
  grpc::Status s;
  for (int i = 0; i < 20 && (s = client.Infer(kLimitedKey)).ok(); ++i) {
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("this replica's share"));
}

}  // namespace
}  // namespace fairserve
