#ifndef FAIRSERVE_METERING_METRICS_H_
#define FAIRSERVE_METERING_METRICS_H_

// A small metrics library after prometheus-cpp's model (prometheus-cpp is not
// packaged for Debian 12): a Registry of metric Families, each holding one
// Counter, Gauge or Histogram per label set. Collect() returns plain data;
// SerializeText() (text_format.h) turns it into the Prometheus text
// exposition format 0.0.4. The registry knows nothing of HTTP and is passed
// in wherever metrics are recorded, never global.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

namespace fairserve {

using Labels = std::map<std::string, std::string>;

// One sample set of a metric, as collected.
struct CollectedMetric {
  Labels labels;
  double value = 0;  // counter and gauge
  // Histogram: cumulative counts per upper bound (the last bound is +Inf).
  std::vector<std::pair<double, uint64_t>> buckets;
  double sum = 0;
  uint64_t count = 0;
};

enum class MetricType { kCounter, kGauge, kHistogram };

struct CollectedFamily {
  std::string name;
  std::string help;
  MetricType type = MetricType::kCounter;
  std::vector<CollectedMetric> metrics;
};

// A monotonically increasing value. Increment() is lock-free and spread over
// cache-line-sized shards so that worker threads do not bounce one line.
class Counter {
 public:
  // REQUIRES: v >= 0 (negative increments are ignored).
  void Increment(double v = 1.0);
  double Value() const;

 private:
  struct alignas(64) Shard {
    std::atomic<double> value{0};
  };
  std::array<Shard, 8> shards_;
};

// A value that goes up and down. Lock-free.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Increment(double v = 1.0);
  void Decrement(double v = 1.0) { Increment(-v); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with fixed upper bounds. Lock-free.
class Histogram {
 public:
  // `bounds`: strictly increasing upper bounds; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);
  CollectedMetric Collect() const;

  // Bounds start, start*factor, ... (count of them).
  static std::vector<double> ExponentialBounds(double start, double factor, int count);

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
};

// All metrics of one name, one per label set. Add() returns a reference that
// stays valid for the registry's lifetime: hot paths look a metric up once
// and keep the pointer. Thread-safe.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::function<std::unique_ptr<T>()> make)
      : name_(std::move(name)), help_(std::move(help)), make_(std::move(make)) {}

  T& Add(const Labels& labels) {
    {
      std::shared_lock<std::shared_mutex> lock(mu_);
      auto it = metrics_.find(labels);
      if (it != metrics_.end()) return *it->second;
    }
    std::unique_lock<std::shared_mutex> lock(mu_);
    auto& slot = metrics_[labels];
    if (!slot) slot = make_();
    return *slot;
  }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }

  // Calls fn(labels, metric) for each metric, in label order.
  template <typename Fn>
  void ForEach(Fn fn) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    for (const auto& [labels, metric] : metrics_) fn(labels, *metric);
  }

 private:
  const std::string name_;
  const std::string help_;
  const std::function<std::unique_ptr<T>()> make_;
  mutable std::shared_mutex mu_;
  std::map<Labels, std::unique_ptr<T>> metrics_;
};

class Registry {
 public:
  Family<Counter>& AddCounter(const std::string& name, const std::string& help);
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help);
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<double> bounds);

  // Adds families computed at collection time from state that lives
  // elsewhere (admission counters, queue depths), as prometheus-cpp's
  // Collectable does. Their names must not clash with registered families.
  void AddCollectable(std::function<std::vector<CollectedFamily>()> collectable);

  std::vector<CollectedFamily> Collect() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family<Counter>>> counters_;
  std::vector<std::unique_ptr<Family<Gauge>>> gauges_;
  std::vector<std::unique_ptr<Family<Histogram>>> histograms_;
  std::vector<std::function<std::vector<CollectedFamily>()>> collectables_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_METRICS_H_
