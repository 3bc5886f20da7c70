#include "fairserve/metering/metrics.h"

#include <algorithm>
#include <functional>
#include <thread>

namespace fairserve {
namespace {

void AtomicAdd(std::atomic<double>& a, double v) {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

size_t ShardIndex() {
  static thread_local size_t index = std::hash<std::thread::id>()(std::this_thread::get_id());
  return index;
}

}  // namespace

void Counter::Increment(double v) {
  if (!(v >= 0)) return;
  AtomicAdd(shards_[ShardIndex() % shards_.size()].value, v);
}

double Counter::Value() const {
  double total = 0;
  for (const Shard& s : shards_) total += s.value.load(std::memory_order_relaxed);
  return total;
}

void Gauge::Increment(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

CollectedMetric Histogram::Collect() const {
  CollectedMetric m;
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    double bound = i < bounds_.size() ? bounds_[i] : std::numeric_limits<double>::infinity();
    m.buckets.emplace_back(bound, cumulative);
  }
  m.count = cumulative;
  m.sum = sum_.load(std::memory_order_relaxed);
  return m;
}

std::vector<double> Histogram::ExponentialBounds(double start, double factor, int count) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

Family<Counter>& Registry::AddCounter(const std::string& name, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  counters_.push_back(std::make_unique<Family<Counter>>(
      name, help, [] { return std::make_unique<Counter>(); }));
  return *counters_.back();
}

Family<Gauge>& Registry::AddGauge(const std::string& name, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  gauges_.push_back(
      std::make_unique<Family<Gauge>>(name, help, [] { return std::make_unique<Gauge>(); }));
  return *gauges_.back();
}

Family<Histogram>& Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  histograms_.push_back(std::make_unique<Family<Histogram>>(
      name, help, [bounds] { return std::make_unique<Histogram>(bounds); }));
  return *histograms_.back();
}

void Registry::AddCollectable(std::function<std::vector<CollectedFamily>()> collectable) {
  std::lock_guard<std::mutex> lock(mu_);
  collectables_.push_back(std::move(collectable));
}

std::vector<CollectedFamily> Registry::Collect() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<CollectedFamily> out;
  for (const auto& collectable : collectables_) {
    for (CollectedFamily& f : collectable()) out.push_back(std::move(f));
  }
  auto simple = [&out](const auto& families, MetricType type) {
    for (const auto& f : families) {
      CollectedFamily cf{f->name(), f->help(), type, {}};
      f->ForEach([&](const Labels& labels, const auto& metric) {
        CollectedMetric m;
        m.labels = labels;
        m.value = metric.Value();
        cf.metrics.push_back(std::move(m));
      });
      out.push_back(std::move(cf));
    }
  };
  simple(counters_, MetricType::kCounter);
  simple(gauges_, MetricType::kGauge);
  for (const auto& f : histograms_) {
    CollectedFamily cf{f->name(), f->help(), MetricType::kHistogram, {}};
    f->ForEach([&](const Labels& labels, const Histogram& h) {
      CollectedMetric m = h.Collect();
      m.labels = labels;
      cf.metrics.push_back(std::move(m));
    });
    out.push_back(std::move(cf));
  }
  std::sort(out.begin(), out.end(),
            [](const CollectedFamily& a, const CollectedFamily& b) { return a.name < b.name; });
  return out;
}

}  // namespace fairserve
