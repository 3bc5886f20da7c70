// FairPolicy in simulated time: no threads, no sleeps. The "worker" here pops
// a batch, charges it a cost, and moves the simulated clock.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include <map>
#include <random>

#include "fairserve/scheduling/queue_policy.h"
#include "scheduling/test_util.h"

namespace fairserve {
namespace {

using namespace testing_util;
using std::chrono::microseconds;
using std::chrono::milliseconds;

std::shared_ptr<Servable> Model(const std::string& name, int64_t max_batch, int64_t delay_us = 0) {
  auto s = std::make_shared<Servable>(*MakeServable(nullptr, max_batch, name));
  s->config.max_queue_delay_us = delay_us;
  return s;
}

class FairPolicyTest : public ::testing::Test {
 protected:
  void Push(const std::string& tenant, std::shared_ptr<const Servable> model, int64_t rows = 1,
            double weight = 1.0) {
    auto r = MakeRequest(model, tenant, rows, 1.0f, std::make_shared<Outcome>());
    r->tenant_weight = weight;
    r->arrival = now_;
    policy_.Push(std::move(r), now_);
  }

  // Pops one batch at now_, charges `cost_per_sample` per sample, advances
  // time by the cost. Returns the dispatch (requests consumed).
  bool Step(double cost_per_sample, Dispatch* out = nullptr) {
    Dispatch d;
    Clock::TimePoint wake;
    if (!policy_.Pop(now_, false, &d, &wake)) return false;
    BatchRecord record;
    record.samples = d.samples;
    record.compute_seconds = cost_per_sample * d.samples;
    record.device_seconds = record.compute_seconds;
    now_ += std::chrono::duration_cast<Clock::Duration>(
        std::chrono::duration<double>(record.compute_seconds));
    tenants_.push_back(d.tenant_id);
    policy_.Done(d, record);
    if (out) *out = std::move(d);
    return true;
  }

  Clock::TimePoint now_ = Clock::TimePoint(std::chrono::hours(1));
  FairPolicy policy_;
  std::vector<std::string> tenants_;  // who got each dispatch
  std::shared_ptr<Servable> mlp_ = Model("mlp", 1);
};

// A poisoned shared batch is re-run request by request; its failed run is
// billed to nobody, but the tenant whose batch it was pays for it in
// fair-share service, so a poison request cannot buy twice the device time.
TEST_F(FairPolicyTest, AFailedSharedRunCountsAgainstItsTenant) {
  for (int i = 0; i < 4; ++i) Push("mallory", mlp_);
  for (int i = 0; i < 4; ++i) Push("victim", mlp_);
  Dispatch d;
  Clock::TimePoint wake;
  ASSERT_TRUE(policy_.Pop(now_, false, &d, &wake));
  std::string first = d.tenant_id;
  BatchRecord record;
  record.samples = d.samples;
  record.compute_seconds = 0.001 * d.samples;  // the retries, billed
  record.device_seconds = 0.011 * d.samples;   // plus the failed shared run
  policy_.Done(d, record);
  // The other tenant now gets ten batches' worth of turns before `first`
  // is served again.
  int others = 0;
  for (int i = 0; i < 3; ++i) {
    Dispatch next;
    ASSERT_TRUE(policy_.Pop(now_, false, &next, &wake));
    if (next.tenant_id != first) ++others;
    BatchRecord r;
    r.samples = next.samples;
    r.compute_seconds = r.device_seconds = 0.001 * next.samples;
    policy_.Done(next, r);
  }
  EXPECT_EQ(others, 3);
}

TEST_F(FairPolicyTest, WorkConservingForALoneTenant) {
  for (int i = 0; i < 5; ++i) Push("a", mlp_);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Step(0.01));
  EXPECT_FALSE(Step(0.01));
  EXPECT_EQ(policy_.size(), 0);
}

TEST_F(FairPolicyTest, EqualWeightsAlternate) {
  for (int i = 0; i < 10; ++i) {
    Push("a", mlp_);
    Push("b", mlp_);
  }
  while (Step(0.01)) {
  }
  std::map<std::string, int> count;
  for (size_t i = 0; i < 10; ++i) count[tenants_[i]]++;  // the first half
  EXPECT_EQ(count["a"], 5);
  EXPECT_EQ(count["b"], 5);
}

TEST_F(FairPolicyTest, WeightsSetTheShares) {
  for (int i = 0; i < 400; ++i) {
    Push("light", mlp_, 1, 1.0);
    Push("heavy", mlp_, 1, 3.0);
  }
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(Step(0.01));
  int heavy = std::count(tenants_.begin(), tenants_.end(), "heavy");
  EXPECT_NEAR(heavy, 150, 2);
}

TEST_F(FairPolicyTest, ChargesMeasuredCostNotRequestCount) {
  // "big" sends 8-sample batches, "small" single samples; same weight. Over
  // time both get the same compute, so small gets ~8x as many dispatches.
  auto batched = Model("batched", 8);
  for (int i = 0; i < 200; ++i) Push("big", batched, 8);
  for (int i = 0; i < 800; ++i) Push("small", batched, 1);
  for (int i = 0; i < 180; ++i) ASSERT_TRUE(Step(0.001));
  // Requests of one tenant batch together: small's batches hold 8 singles.
  EXPECT_NEAR(policy_.Service("big"), policy_.Service("small"), 0.0081);
}

TEST_F(FairPolicyTest, ReturningTenantBanksNoCredit) {
  for (int i = 0; i < 100; ++i) Push("busy", mlp_);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(Step(0.01));
  // "late" was idle all along: it starts level with busy, not 0.5 s behind.
  for (int i = 0; i < 20; ++i) Push("late", mlp_);
  EXPECT_GE(policy_.Service("late"), policy_.Service("busy") - 1e-9);
  tenants_.clear();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Step(0.01));
  EXPECT_EQ(std::count(tenants_.begin(), tenants_.end(), "late"), 10);
}

TEST_F(FairPolicyTest, BatchesNeverMixTenantsOrModels) {
  auto batched = Model("batched", 8), other = Model("other", 8);
  for (int i = 0; i < 6; ++i) {
    Push("a", batched);
    Push("b", batched);
    Push("a", other);
  }
  // 3 queues of 6 requests each -> 3 batches of 6, each of one tenant and
  // one model, together holding all 18 requests.
  std::set<std::pair<std::string, std::string>> seen;
  size_t requests = 0;
  Dispatch d;
  while (Step(0.001, &d)) {
    ASSERT_EQ(d.requests.size(), 6u);
    for (const auto& r : d.requests) {
      EXPECT_EQ(r->tenant_id, d.tenant_id);
      EXPECT_EQ(r->servable.get(), d.servable);
    }
    EXPECT_TRUE(seen.insert({d.tenant_id, d.servable->config.name}).second)
        << d.tenant_id << " " << d.servable->config.name << " dispatched twice";
    requests += d.requests.size();
  }
  EXPECT_EQ(tenants_.size(), 3u);
  EXPECT_EQ(requests, 18u);
  EXPECT_EQ(seen, (std::set<std::pair<std::string, std::string>>{
                      {"a", "batched"}, {"b", "batched"}, {"a", "other"}}));
}

TEST_F(FairPolicyTest, DynamicBatchingWaitsForTheDelayOrAFullBatch) {
  auto delayed = Model("delayed", 4, /*delay_us=*/500);
  Push("a", delayed);
  Dispatch d;
  Clock::TimePoint wake;
  EXPECT_FALSE(policy_.Pop(now_, false, &d, &wake));
  EXPECT_EQ(wake, now_ + microseconds(500));
  now_ += microseconds(200);
  Push("a", delayed);
  Push("a", delayed);
  EXPECT_FALSE(policy_.Pop(now_, false, &d, &wake));
  Push("a", delayed);  // now full: ready at once
  ASSERT_TRUE(policy_.Pop(now_, false, &d, &wake));
  EXPECT_EQ(d.samples, 4);
  Push("a", delayed);
  EXPECT_TRUE(policy_.Pop(now_, /*flush=*/true, &d, &wake));  // draining does not wait
}

// While a batch of a tenant's model runs, that tenant's next partial batch
// of the model waits for it to end rather than taking a second worker for a
// row or two. A full batch, another tenant, a model without a queue delay
// and draining are not held, and the head's deadline bounds the wait.
TEST_F(FairPolicyTest, APartialBatchWaitsWhileABatchOfItsQueueRuns) {
  auto delayed = Model("delayed", 4, /*delay_us=*/500);
  auto undelayed = Model("undelayed", 4, /*delay_us=*/0);
  BatchRecord record;
  record.samples = 4;
  record.compute_seconds = record.device_seconds = 0.001;
  Dispatch first, d;
  Clock::TimePoint wake;
  for (int i = 0; i < 4; ++i) Push("a", delayed);
  ASSERT_TRUE(policy_.Pop(now_, false, &first, &wake));  // full: at once
  Push("a", delayed);
  now_ += milliseconds(5);  // ten times the queue delay
  EXPECT_FALSE(policy_.Pop(now_, false, &d, &wake));
  EXPECT_EQ(wake, Clock::TimePoint::max());  // no deadline: the running batch's end wakes it

  // Another tenant's partial batch of the same model goes to a free worker.
  Push("b", delayed);
  now_ += microseconds(500);
  ASSERT_TRUE(policy_.Pop(now_, false, &d, &wake));
  EXPECT_EQ(d.tenant_id, "b");
  EXPECT_EQ(d.samples, 1);

  // a's queue, once full, is not held either.
  for (int i = 0; i < 3; ++i) Push("a", delayed);
  ASSERT_TRUE(policy_.Pop(now_, false, &d, &wake));
  EXPECT_EQ(d.tenant_id, "a");
  EXPECT_EQ(d.samples, 4);
  Dispatch second = std::move(d);

  // A partial batch waits while either of a's batches runs, and goes as
  // the last one ends.
  Push("a", delayed);
  now_ += milliseconds(1);
  EXPECT_FALSE(policy_.Pop(now_, false, &d, &wake));
  policy_.Done(first, record);
  EXPECT_FALSE(policy_.Pop(now_, false, &d, &wake));
  policy_.Done(second, record);
  ASSERT_TRUE(policy_.Pop(now_, false, &d, &wake));
  EXPECT_EQ(d.tenant_id, "a");
  EXPECT_EQ(d.samples, 1);

  // With that one running, the wait ends at the next head's deadline.
  auto r = MakeRequest(delayed, "a", 1, 1.0f, std::make_shared<Outcome>());
  r->arrival = now_;
  r->deadline = now_ + milliseconds(3);
  policy_.Push(std::move(r), now_);
  EXPECT_FALSE(policy_.Pop(now_, false, &d, &wake));
  EXPECT_EQ(wake, now_ + milliseconds(3));
  EXPECT_TRUE(policy_.Pop(now_ + milliseconds(3), false, &d, &wake));

  // A model without a queue delay never waits for company.
  Push("a", undelayed);
  ASSERT_TRUE(policy_.Pop(now_, false, &d, &wake));
  Push("a", undelayed);
  EXPECT_TRUE(policy_.Pop(now_, false, &d, &wake));
}

TEST_F(FairPolicyTest, DeadRequestsAreRemovedAndCounted) {
  Push("a", mlp_);
  Push("a", mlp_);
  auto r = MakeRequest(mlp_, "a", 1, 1.0f, std::make_shared<Outcome>());
  r->deadline = now_ + milliseconds(1);
  policy_.Push(std::move(r), now_);
  now_ += milliseconds(2);
  std::vector<std::unique_ptr<InferenceRequest>> dead;
  policy_.TakeDead(now_, &dead);
  EXPECT_EQ(dead.size(), 1u);
  EXPECT_EQ(policy_.Queued("a"), 2);
  EXPECT_EQ(policy_.size(), 2);
}

// The scheduler's invariant under randomized, adversarial arrivals and
// costs: for any two tenants that stay backlogged over an interval, the
// weighted service each received over it differs by at most twice the
// largest single batch cost.
TEST(FairPolicyPropertyTest, BackloggedTenantsStayWithinTwoBatchCosts) {
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    std::mt19937 gen(seed);
    FairPolicy policy;
    const int kTenants = 4;
    std::vector<double> weight(kTenants);
    std::vector<std::shared_ptr<Servable>> model(kTenants);
    for (int t = 0; t < kTenants; ++t) {
      weight[t] = std::uniform_int_distribution<int>(1, 4)(gen);
      model[t] = Model("m" + std::to_string(t), std::uniform_int_distribution<int>(1, 8)(gen));
    }
    std::uniform_real_distribution<double> cost_dist(0.001, 0.02);
    Clock::TimePoint now(std::chrono::hours(1));
    std::vector<double> service(kTenants, 0);  // raw compute / weight, no lifts
    std::vector<bool> backlogged(kTenants, false);
    std::vector<std::vector<double>> base(kTenants, std::vector<double>(kTenants, 0));
    double max_cost = 0;
    auto id = [](int t) { return "t" + std::to_string(t); };
    for (int step = 0; step < 3000; ++step) {
      // Adversarial arrivals: bursts, silences, huge and tiny requests.
      for (int t = 0; t < kTenants; ++t) {
        int burst = std::uniform_int_distribution<int>(0, 9)(gen) < 3
                        ? std::uniform_int_distribution<int>(0, 6)(gen) : 0;
        for (int k = 0; k < burst; ++k) {
          int64_t rows = std::uniform_int_distribution<int64_t>(1, model[t]->config.max_batch_size)(gen);
          auto r = MakeRequest(model[t], id(t), rows, 1.0f, std::make_shared<Outcome>());
          r->tenant_weight = weight[t];
          r->arrival = now;
          policy.Push(std::move(r), now);
        }
      }
      // Track who is continuously backlogged, and service at the start of
      // each pair's common backlogged interval.
      for (int t = 0; t < kTenants; ++t) {
        bool b = policy.Queued(id(t)) > 0;
        if (b && !backlogged[t]) {
          for (int u = 0; u < kTenants; ++u) {
            base[t][u] = service[t];
            base[u][t] = service[u];
          }
        }
        backlogged[t] = b;
      }
      Dispatch d;
      Clock::TimePoint wake;
      if (!policy.Pop(now, false, &d, &wake)) continue;
      int t = std::stoi(d.tenant_id.substr(1));
      // Cost per sample varies per batch (noisy measurements).
      double cost = cost_dist(gen) * d.samples / 4.0;
      max_cost = std::max(max_cost, cost);
      BatchRecord record;
      record.samples = d.samples;
      record.compute_seconds = cost;
      record.device_seconds = cost;
      policy.Done(d, record);
      service[t] += cost / weight[t];
      now += std::chrono::duration_cast<Clock::Duration>(std::chrono::duration<double>(cost));
      for (int a = 0; a < kTenants; ++a) {
        for (int b = a + 1; b < kTenants; ++b) {
          if (!backlogged[a] || !backlogged[b]) continue;
          double da = service[a] - base[a][b];
          double db = service[b] - base[b][a];
          ASSERT_LE(std::abs(da - db), 2 * max_cost + 1e-9)
              << "seed " << seed << " step " << step << " tenants " << a << "," << b;
        }
      }
    }
  }
}

}  // namespace
}  // namespace fairserve
