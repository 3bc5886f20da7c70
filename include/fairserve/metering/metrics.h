#ifndef FAIRSERVE_METERING_METRICS_H_
#define FAIRSERVE_METERING_METRICS_H_

// Metrics on prometheus-cpp (Debian's prometheus-cpp-dev, core library
// only): its Counter, Gauge, Histogram and Family types, a
// prometheus::Registry for the metrics fairserve records, plus families
// computed at scrape time from state that lives elsewhere (admission
// counters, the model cache), and prometheus-cpp's TextSerializer for the
// exposition format. The HTTP endpoint is a thin separate piece
// (http_server.h); the registry knows nothing of HTTP and is passed in
// wherever metrics are recorded, never global.

#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/labels.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace fairserve {

using Labels = prometheus::Labels;
using Counter = prometheus::Counter;
using Gauge = prometheus::Gauge;
using Histogram = prometheus::Histogram;
template <typename T>
using Family = prometheus::Family<T>;
// One metric family as collected (prometheus-cpp's plain data).
using CollectedFamily = prometheus::MetricFamily;

// Upper bounds start, start*factor, ... (count of them).
std::vector<double> ExponentialBounds(double start, double factor, int count);

// A histogram family whose every label set gets the same bucket bounds
// (prometheus-cpp asks for them at each Add).
class HistogramFamily {
 public:
  HistogramFamily(Family<Histogram>& family, std::vector<double> bounds)
      : family_(family), bounds_(std::move(bounds)) {}
  // The histogram of `labels`; the reference stays valid for the registry's
  // lifetime, so hot paths look it up once and keep it. Thread-safe.
  Histogram& Add(const Labels& labels) { return family_.Add(labels, bounds_); }

 private:
  Family<Histogram>& family_;
  const Histogram::BucketBoundaries bounds_;
};

// Families computed at scrape time: helpers to fill prometheus-cpp's data.
CollectedFamily CounterFamily(std::string name, std::string help);
CollectedFamily GaugeFamily(std::string name, std::string help);
// One label of a sample being added: its name and value, copied into the
// sample.
struct LabelView {
  absl::string_view name;
  absl::string_view value;
};
// Appends one sample (its counter or gauge value, by the family's type),
// its labels ordered by name. The labels are copied once, straight into
// prometheus-cpp's sample, without a Labels map or a temporary vector in
// between: a scrape at 10,000 tenants adds about 150,000 of them.
void AddSample(CollectedFamily* family, std::initializer_list<LabelView> labels, double value);
// The families, moved into one vector. (A braced list would copy each
// family's samples: an initializer_list's elements are const.)
template <typename... F>
std::vector<CollectedFamily> FamilyList(F&&... families) {
  std::vector<CollectedFamily> out;
  out.reserve(sizeof...(families));
  (out.push_back(std::forward<F>(families)), ...);
  return out;
}

// The metrics registry: prometheus-cpp's Registry, plus scrape-time
// collectables. Families added here live as long as the Registry.
// Thread-safe.
class Registry {
 public:
  Family<Counter>& AddCounter(const std::string& name, const std::string& help);
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help);
  HistogramFamily& AddHistogram(const std::string& name, const std::string& help,
                                std::vector<double> bounds);

  // Adds families computed at collection time. `collectable` runs on the
  // thread that collects (the HTTP server's, for /metrics) and must not
  // block. Their names must not clash with registered families.
  void AddCollectable(std::function<std::vector<CollectedFamily>()> collectable);

  // Every family with at least one metric, sorted by name.
  std::vector<CollectedFamily> Collect() const;

 private:
  prometheus::Registry registry_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<HistogramFamily>> histograms_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<std::vector<CollectedFamily>()>> collectables_ ABSL_GUARDED_BY(mu_);
};

// The Prometheus text exposition format 0.0.4: what prometheus-cpp's
// TextSerializer writes (a test holds the two equal), written several times
// faster (bench/hot_paths_bench BM_MetricsPageAtScale); whole numbers below
// 1e16 as integers, as prometheus-cpp writes them, others in their shortest
// exact form where prometheus-cpp rounds to 16 digits.
std::string SerializeText(const std::vector<CollectedFamily>& families);
// prometheus-cpp's TextSerializer itself: the reference the tests compare
// SerializeText with.
std::string SerializeTextWithPrometheusCpp(const std::vector<CollectedFamily>& families);

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_METRICS_H_
