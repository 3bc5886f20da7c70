#include "fairserve/metering/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>

namespace fairserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Our part is the registry, the scrape-time families and a faster writer of
// the text prometheus-cpp's TextSerializer writes (held equal below). These
// tests pin what Prometheus (and the promtool check in the integration
// tests) rely on.

TEST(MetricsTest, CounterAndGaugeWithHelpAndType) {
  Registry r;
  r.AddCounter("requests_total", "Requests.\nSecond line \\ slash")
      .Add({{"tenant_id", "acme"}, {"status", "ok"}})
      .Increment(3);
  r.AddGauge("depth", "Depth").Add({}).Set(-2.5);
  EXPECT_EQ(SerializeText(r.Collect()),
            "# HELP depth Depth\n"
            "# TYPE depth gauge\n"
            "depth -2.5\n"
            "# HELP requests_total Requests.\\nSecond line \\\\ slash\n"
            "# TYPE requests_total counter\n"
            "requests_total{status=\"ok\",tenant_id=\"acme\"} 3\n");
}

TEST(MetricsTest, EscapesLabelValues) {
  Registry r;
  r.AddCounter("c_total", "c").Add({{"model_name", "we\"ird\n\\"}}).Increment();
  EXPECT_THAT(SerializeText(r.Collect()),
              HasSubstr("c_total{model_name=\"we\\\"ird\\n\\\\\"} 1\n"));
}

TEST(MetricsTest, SpecialValues) {
  Registry r;
  auto& g = r.AddGauge("g", "g");
  g.Add({{"v", "nan"}}).Set(std::nan(""));
  g.Add({{"v", "inf"}}).Set(std::numeric_limits<double>::infinity());
  g.Add({{"v", "-inf"}}).Set(-std::numeric_limits<double>::infinity());
  g.Add({{"v", "third"}}).Set(1.0 / 3);
  std::string text = SerializeText(r.Collect());
  EXPECT_THAT(text, HasSubstr("g{v=\"nan\"} Nan\n"));
  EXPECT_THAT(text, HasSubstr("g{v=\"inf\"} +Inf\n"));
  EXPECT_THAT(text, HasSubstr("g{v=\"-inf\"} -Inf\n"));
  std::string third = text.substr(text.find("g{v=\"third\"} ") + 13);
  EXPECT_NEAR(std::stod(third), 1.0 / 3, 1e-15);
}

TEST(MetricsTest, HistogramBucketsSumCount) {
  Registry r;
  Histogram& h = r.AddHistogram("lat_seconds", "Latency", {0.1, 0.5, 1}).Add({{"t", "a"}});
  h.Observe(0.05);
  h.Observe(0.1);  // upper bounds are inclusive
  h.Observe(0.7);
  h.Observe(3);
  std::string text = SerializeText(r.Collect());
  EXPECT_THAT(text, HasSubstr("# TYPE lat_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_count{t=\"a\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_sum{t=\"a\"} 3.85"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{t=\"a\",le=\"0.1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{t=\"a\",le=\"0.5\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{t=\"a\",le=\"1\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{t=\"a\",le=\"+Inf\"} 4\n"));
  // Every label set of a family gets the family's bounds.
  r.AddHistogram("other_seconds", "o", {2}).Add({{"t", "b"}}).Observe(1);
  EXPECT_THAT(SerializeText(r.Collect()), HasSubstr("other_seconds_bucket{t=\"b\",le=\"2\"} 1\n"));
}

// Our writer and prometheus-cpp's TextSerializer write the same page:
// every kind of family, labels needing escapes, special and awkward values,
// histograms with and without a +Inf bucket, a summary, a timestamp.
TEST(MetricsTest, WritesWhatPrometheusCppWrites) {
  Registry r;
  r.AddCounter("requests_total", "Requests.\nSecond \\ line")
      .Add({{"tenant_id", "acme"}, {"status", "ok"}})
      .Increment(123456789);
  auto& g = r.AddGauge("g", "");
  for (double v : {0.0, -0.0, 1.0, 0.1, 1.0 / 3, 2.5e-9, 1e21, 33587200.0, -7.25, 100000.0,
                   -3e6, 999999999999999.0, 1e15, 1e16, 4503599627370497.0,
                   std::numeric_limits<double>::infinity(), std::nan("")}) {
    g.Add({{"v", std::to_string(v)}, {"odd", "q\"uo\\te\nnl"}}).Set(v);
  }
  HistogramFamily& lat = r.AddHistogram("lat_seconds", "Latency", {0.005, 0.1, 2.5, 10});
  Histogram& h = lat.Add({{"t", "a"}});
  for (double v : {0.001, 0.1, 0.7, 3.0, 40.0}) h.Observe(v);
  // A second label set: the same bounds, written from the family's cache.
  lat.Add({{"t", "b"}}).Observe(0.05);
  r.AddHistogram("empty_seconds", "e", {1}).Add({});
  r.AddCollectable([] {
    CollectedFamily s;
    s.name = "rpc_seconds";
    s.help = "a summary";
    s.type = prometheus::MetricType::Summary;
    prometheus::ClientMetric m;
    m.label = {{"m", "x"}};
    m.summary.sample_count = 3;
    m.summary.sample_sum = 0.75;
    m.summary.quantile = {{0.5, 0.2}, {0.99, 0.5}};
    s.metric.push_back(m);
    CollectedFamily u;
    u.name = "untyped_thing";
    u.type = prometheus::MetricType::Untyped;
    prometheus::ClientMetric um;
    um.untyped.value = 42;
    um.timestamp_ms = 1700000000123;
    u.metric.push_back(um);
    CollectedFamily inf;
    inf.name = "explicit_inf";
    inf.help = "a histogram whose buckets end in +Inf";
    inf.type = prometheus::MetricType::Histogram;
    prometheus::ClientMetric hm;
    hm.histogram.sample_count = 2;
    hm.histogram.sample_sum = 5;
    hm.histogram.bucket = {{1, 1.0}, {2, std::numeric_limits<double>::infinity()}};
    inf.metric.push_back(hm);
    // Samples of one family with other bounds, and fewer of them.
    hm.label = {{"b", "other"}};
    hm.histogram.bucket = {{1, 0.5}, {2, 4.0}, {2, std::numeric_limits<double>::infinity()}};
    inf.metric.push_back(hm);
    hm.label = {{"b", "fewer"}};
    hm.histogram.bucket = {{2, 0.5}};
    inf.metric.push_back(hm);
    return std::vector<CollectedFamily>{s, u, inf};
  });
  std::vector<CollectedFamily> families = r.Collect();
  EXPECT_EQ(SerializeText(families), SerializeTextWithPrometheusCpp(families));
}

// A page larger than the writer's estimate (long HELP text, label values
// that double in size when escaped) grows its buffer and still comes out
// exactly as prometheus-cpp writes it.
TEST(MetricsTest, APageLargerThanItsEstimateIsWrittenWhole) {
  Registry r;
  r.AddGauge("long_help", std::string(20000, 'h')).Add({{"k", "v"}}).Set(1);
  auto& quoted = r.AddGauge("quoted", "values that need escaping");
  for (int i = 0; i < 20; ++i) {
    quoted.Add({{"q", std::string(2000, '"') + std::to_string(i)}}).Set(0.5 + i);
  }
  HistogramFamily& h = r.AddHistogram("escaped_seconds", "h", {0.1, 1});
  h.Add({{"path", std::string(3000, '\\')}}).Observe(0.3);
  std::vector<CollectedFamily> families = r.Collect();
  const std::string page = SerializeText(families);
  EXPECT_GT(page.size(), 120000u);  // about twice what the writer reserves up front
  EXPECT_EQ(page, SerializeTextWithPrometheusCpp(families));
}

TEST(MetricsTest, EmptyFamiliesAreOmitted) {
  Registry r;
  r.AddCounter("unused_total", "never touched");
  r.AddCollectable([] { return std::vector<CollectedFamily>{GaugeFamily("empty", "e")}; });
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

TEST(MetricsTest, CounterSumsAcrossThreads) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) c.Increment(0.5);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 200000.0);
}

TEST(MetricsTest, CollectablesJoinTheOutputSortedByName) {
  Registry r;
  r.AddCounter("b_total", "b").Add({}).Increment();
  r.AddCollectable([] {
    CollectedFamily g = GaugeFamily("a_from_elsewhere", "computed at scrape");
    AddSample(&g, {}, 7);
    CollectedFamily c = CounterFamily("c_total", "c");
    AddSample(&c, {{"k", "v"}}, 2);
    // Labels come out by name, whatever order they were given in.
    AddSample(&c, {{"tenant_id", "t"}, {"reason", "r"}, {"a", "x"}}, 3);
    return FamilyList(std::move(g), std::move(c));
  });
  EXPECT_EQ(SerializeText(r.Collect()),
            "# HELP a_from_elsewhere computed at scrape\n"
            "# TYPE a_from_elsewhere gauge\n"
            "a_from_elsewhere 7\n"
            "# HELP b_total b\n"
            "# TYPE b_total counter\n"
            "b_total 1\n"
            "# HELP c_total c\n"
            "# TYPE c_total counter\n"
            "c_total{k=\"v\"} 2\n"
            "c_total{a=\"x\",reason=\"r\",tenant_id=\"t\"} 3\n");
}

}  // namespace
}  // namespace fairserve
