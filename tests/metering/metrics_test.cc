#include "fairserve/metering/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>

#include "fairserve/metering/text_format.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;

TEST(TextFormatTest, CounterAndGaugeWithHelpAndType) {
  Registry r;
  r.AddCounter("requests_total", "Requests.\nSecond line \\ slash")
      .Add({{"tenant_id", "acme"}, {"status", "ok"}})
      .Increment(3);
  r.AddGauge("depth", "Depth").Add({}).Set(-2.5);
  std::string text = SerializeText(r.Collect());
  EXPECT_EQ(text,
            "# HELP depth Depth\n"
            "# TYPE depth gauge\n"
            "depth -2.5\n"
            "# HELP requests_total Requests.\\nSecond line \\\\ slash\n"
            "# TYPE requests_total counter\n"
            "requests_total{status=\"ok\",tenant_id=\"acme\"} 3\n");
}

TEST(TextFormatTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  Registry r;
  r.AddCounter("c_total", "c").Add({{"model_name", "we\"ird\n"}}).Increment();
  EXPECT_THAT(SerializeText(r.Collect()), HasSubstr("c_total{model_name=\"we\\\"ird\\n\"} 1"));
}

TEST(TextFormatTest, SpecialValues) {
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(1e-7), "1e-07");
  EXPECT_EQ(std::stod(FormatValue(1.0 / 3)), 1.0 / 3);  // round-trips exactly
}

TEST(TextFormatTest, HistogramBucketsSumCount) {
  Registry r;
  Histogram& h = r.AddHistogram("lat_seconds", "Latency", {0.1, 0.5, 1}).Add({{"t", "a"}});
  h.Observe(0.05);
  h.Observe(0.1);  // upper bounds are inclusive
  h.Observe(0.7);
  h.Observe(3);
  EXPECT_EQ(SerializeText(r.Collect()),
            "# HELP lat_seconds Latency\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{t=\"a\",le=\"0.1\"} 2\n"
            "lat_seconds_bucket{t=\"a\",le=\"0.5\"} 2\n"
            "lat_seconds_bucket{t=\"a\",le=\"1\"} 3\n"
            "lat_seconds_bucket{t=\"a\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{t=\"a\"} 3.85\n"
            "lat_seconds_count{t=\"a\"} 4\n");
}

TEST(TextFormatTest, EmptyFamiliesAreOmitted) {
  Registry r;
  r.AddCounter("unused_total", "never touched");
  EXPECT_EQ(SerializeText(r.Collect()), "");
}

TEST(MetricsTest, FamilyReturnsStableMetricPerLabelSet) {
  Registry r;
  auto& f = r.AddCounter("x_total", "x");
  Counter& a = f.Add({{"k", "1"}});
  Counter& b = f.Add({{"k", "1"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &f.Add({{"k", "2"}}));
}

TEST(MetricsTest, CounterIgnoresNegativeAndSumsAcrossThreads) {
  Counter c;
  c.Increment(-5);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) c.Increment(0.5);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 200000.0);
}

TEST(MetricsTest, CollectablesJoinTheOutput) {
  Registry r;
  r.AddCollectable([] {
    CollectedFamily f{"from_elsewhere", "computed at scrape", MetricType::kGauge, {}};
    CollectedMetric m;
    m.value = 7;
    f.metrics.push_back(m);
    return std::vector<CollectedFamily>{f};
  });
  EXPECT_THAT(SerializeText(r.Collect()), HasSubstr("from_elsewhere 7\n"));
}

}  // namespace
}  // namespace fairserve
