#include "fairserve/metering/server_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

namespace fairserve {
namespace {

using ::testing::HasSubstr;

BatchRecord Batch(const std::string& model, std::vector<std::pair<std::string, double>> items) {
  BatchRecord r;
  r.model_name = model;
  for (const auto& [tenant, seconds] : items) {
    BatchItem item;
    item.tenant_id = tenant;
    item.samples = 1;
    item.compute_seconds = seconds;
    r.items.push_back(item);
    r.samples += 1;
    r.compute_seconds += seconds;
  }
  r.device_seconds = r.compute_seconds;
  return r;
}

TEST(ServerMetricsTest, BatchesAndRequestsLandInTheirLabelSets) {
  Registry registry;
  ServerMetrics metrics(registry);
  metrics.SetRejectionSource([] {
    return std::vector<std::pair<std::string, double>>{{"acme", 5}};
  });
  metrics.OnBatch(Batch("mlp", {{"acme", 0.25}, {"globex", 0.5}, {"acme", 0.25}}));
  metrics.OnBatch(Batch("add_one", {{"acme", 1}}));
  metrics.RequestDone("acme", "mlp", absl::StatusCode::kOk, std::chrono::milliseconds(3));
  metrics.RequestDone("acme", "mlp", absl::StatusCode::kOk, std::chrono::milliseconds(3));
  metrics.RequestRejected("acme", absl::StatusCode::kInvalidArgument);
  metrics.Unauthenticated();
  std::string text = SerializeText(registry.Collect());
  EXPECT_THAT(text, HasSubstr("tenant_gpu_compute_seconds_total{model_name=\"mlp\",tenant_id=\"acme\"} 0.5\n"));
  EXPECT_THAT(text, HasSubstr("tenant_gpu_compute_seconds_total{model_name=\"mlp\",tenant_id=\"globex\"} 0.5\n"));
  EXPECT_THAT(text, HasSubstr("tenant_gpu_compute_seconds_total{model_name=\"add_one\",tenant_id=\"acme\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("fairserve_batch_compute_seconds_total{model_name=\"mlp\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tenant_samples_total{model_name=\"mlp\",tenant_id=\"acme\"} 2\n"));
  // Admission's rejections join tenant_requests_total as resource_exhausted.
  EXPECT_THAT(text, HasSubstr("tenant_requests_total{status=\"ok\",tenant_id=\"acme\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("tenant_requests_total{status=\"invalid_argument\",tenant_id=\"acme\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("tenant_requests_total{status=\"resource_exhausted\",tenant_id=\"acme\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("fairserve_request_duration_seconds_count{model_name=\"mlp\",tenant_id=\"acme\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("fairserve_unauthenticated_requests_total 1\n"));
  EXPECT_EQ(metrics.RequestsTotal("acme"), 3);
}

// Workers update the cached handles concurrently with a scrape (TSan runs it).
TEST(ServerMetricsTest, ConcurrentBatchesAndScrapes) {
  Registry registry;
  ServerMetrics metrics(registry);
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&, w] {
      for (int i = 0; i < 500; ++i) {
        std::string tenant = "t" + std::to_string((w + i) % 8);
        metrics.OnBatch(Batch("m" + std::to_string(i % 3), {{tenant, 0.001}}));
        metrics.RequestDone(tenant, "m0", absl::StatusCode::kOk, std::chrono::microseconds(5));
      }
    });
  }
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(SerializeText(registry.Collect()).empty());
  for (auto& w : workers) w.join();
  double total = 0;
  for (int t = 0; t < 8; ++t) total += metrics.RequestsTotal("t" + std::to_string(t));
  EXPECT_EQ(total, 2000);
}

}  // namespace
}  // namespace fairserve
