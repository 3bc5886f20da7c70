#include "fairserve/metering/metrics.h"

#include <algorithm>
#include <sstream>

#include "prometheus/text_serializer.h"

namespace fairserve {
namespace {

// prometheus-cpp 1.0.1's TextSerializer writes HELP text as it is, so a
// backslash or newline in it would break the page: escape them as the
// exposition format asks, once, where families are made.
std::string EscapeHelp(const std::string& help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::vector<double> ExponentialBounds(double start, double factor, int count) {
  std::vector<double> b;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) b.push_back(v);
  return b;
}

CollectedFamily CounterFamily(std::string name, std::string help) {
  CollectedFamily f;
  f.name = std::move(name);
  f.help = EscapeHelp(help);
  f.type = prometheus::MetricType::Counter;
  return f;
}

CollectedFamily GaugeFamily(std::string name, std::string help) {
  CollectedFamily f = CounterFamily(std::move(name), std::move(help));
  f.type = prometheus::MetricType::Gauge;
  return f;
}

void AddSample(CollectedFamily* family, const Labels& labels, double value) {
  prometheus::ClientMetric m;
  m.label.reserve(labels.size());
  for (const auto& [name, v] : labels) m.label.push_back({name, v});
  if (family->type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  family->metric.push_back(std::move(m));
}

Family<Counter>& Registry::AddCounter(const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(EscapeHelp(help)).Register(registry_);
}

Family<Gauge>& Registry::AddGauge(const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(EscapeHelp(help)).Register(registry_);
}

HistogramFamily& Registry::AddHistogram(const std::string& name, const std::string& help,
                                        std::vector<double> bounds) {
  Family<Histogram>& family =
      prometheus::BuildHistogram().Name(name).Help(EscapeHelp(help)).Register(registry_);
  std::lock_guard<std::mutex> lock(mu_);
  histograms_.push_back(std::make_unique<HistogramFamily>(family, std::move(bounds)));
  return *histograms_.back();
}

void Registry::AddCollectable(std::function<std::vector<CollectedFamily>()> collectable) {
  std::lock_guard<std::mutex> lock(mu_);
  collectables_.push_back(std::move(collectable));
}

std::vector<CollectedFamily> Registry::Collect() const {
  std::vector<CollectedFamily> out = registry_.Collect();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& collectable : collectables_) {
      for (CollectedFamily& f : collectable()) out.push_back(std::move(f));
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(),
                           [](const CollectedFamily& f) { return f.metric.empty(); }),
            out.end());
  std::sort(out.begin(), out.end(),
            [](const CollectedFamily& a, const CollectedFamily& b) { return a.name < b.name; });
  return out;
}

std::string SerializeText(const std::vector<CollectedFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace fairserve
