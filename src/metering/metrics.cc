#include "fairserve/metering/metrics.h"

#include <charconv>
#include <cmath>
#include <limits>

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

void AddSample(CollectedFamily* family, std::vector<SampleLabel> labels, double value) {
  prometheus::ClientMetric m;
  // By name, as prometheus-cpp orders the labels of the families it holds
  // (callers that list them in that order pay only the check).
  auto by_name = [](const SampleLabel& a, const SampleLabel& b) { return a.name < b.name; };
  if (!std::is_sorted(labels.begin(), labels.end(), by_name)) {
    std::sort(labels.begin(), labels.end(), by_name);
  }
  m.label = std::move(labels);
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

namespace {

// The text format 0.0.4, written the way prometheus-cpp's TextSerializer
// writes it (same order, spellings and escapes; a test compares the two),
// but into one std::string with std::to_chars instead of through an
// ostream, whose per-token sentry and locale work made a 22 MB page
// (10,000 tenants, 1,000 active x 3 models) take about 230 ms to write
// (bench/hot_paths_bench BM_MetricsPageAtScale: page 299 -> 126 ms). One
// difference: a number is written in its shortest form that reads back
// exactly, where prometheus-cpp rounds to 16 significant digits.

// A label value: backslash, double quote and newline escaped. (HELP text
// is escaped once, when a family is made: EscapeHelp.)
void AppendLabelValue(std::string* out, const std::string& s) {
  for (char c : s) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"') {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}

void AppendDouble(std::string* out, double v) {
  if (std::isnan(v)) {
    out->append("Nan");
  } else if (std::isinf(v)) {
    out->append(v < 0 ? "-Inf" : "+Inf");
  } else if (std::fabs(v) < 1e16 && v == static_cast<double>(static_cast<int64_t>(v)) &&
             !(v == 0 && std::signbit(v))) {
    // Whole numbers (most of a page: counts, depths, weights, limits) as
    // integers, which is several times cheaper than the shortest-form search
    // below and is what prometheus-cpp writes for them (%.16g prints every
    // integer below 1e16 in full, where the shortest form would write
    // 100000 as 1e+05).
    char buf[24];
    auto result = std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(v));
    out->append(buf, result.ptr);
  } else {
    char buf[64];
    // The shortest text that reads back as the same double.
    auto result = std::to_chars(buf, buf + sizeof(buf), v);
    out->append(buf, result.ptr);
  }
}

void AppendUint(std::string* out, uint64_t v) {
  char buf[24];
  auto result = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, result.ptr);
}

// What every line of one sample shares: its labels, rendered once as
// name="value",... (escaped), and the family's le="..." texts, rendered once
// per family while the bucket bounds stay the same. A histogram writes 18
// lines per sample, so rendering per line was most of a large page's cost.
struct SampleText {
  std::string labels;
  std::string bucket_head;  // name_bucket{labels,le=" of the current sample
  std::vector<double> le_bounds;
  std::vector<std::string> le_text;

  void Render(const prometheus::ClientMetric& m) {
    labels.clear();
    for (const auto& l : m.label) {
      if (!labels.empty()) labels.push_back(',');
      labels.append(l.name);
      labels.append("=\"");
      AppendLabelValue(&labels, l.value);
      labels.push_back('"');
    }
  }
  // The text of bucket i's upper bound (cached across the family's samples).
  const std::string& Le(size_t i, double bound) {
    if (i >= le_bounds.size()) {
      le_bounds.resize(i + 1, std::numeric_limits<double>::quiet_NaN());
      le_text.resize(i + 1);
    }
    if (!(le_bounds[i] == bound)) {  // NaN: not rendered yet
      le_bounds[i] = bound;
      le_text[i].clear();
      AppendDouble(&le_text[i], bound);
    }
    return le_text[i];
  }
};

// name<suffix>{labels[,extra="value"]} (the value follows).
void AppendHead(std::string* out, const CollectedFamily& family, const SampleText& sample,
                const char* suffix = "", const char* extra = nullptr,
                const std::string* extra_value = nullptr) {
  out->append(family.name);
  out->append(suffix);
  if (!sample.labels.empty() || extra != nullptr) {
    out->push_back('{');
    out->append(sample.labels);
    if (extra != nullptr) {
      if (!sample.labels.empty()) out->push_back(',');
      out->append(extra);
      out->append("=\"");
      out->append(*extra_value);
      out->push_back('"');
    }
    out->push_back('}');
  }
  out->push_back(' ');
}

void AppendTail(std::string* out, const prometheus::ClientMetric& m) {
  if (m.timestamp_ms != 0) {
    out->push_back(' ');
    char buf[24];
    auto result = std::to_chars(buf, buf + sizeof(buf), m.timestamp_ms);
    out->append(buf, result.ptr);
  }
  out->push_back('\n');
}

const char* TypeName(prometheus::MetricType t) {
  switch (t) {
    case prometheus::MetricType::Counter: return "counter";
    case prometheus::MetricType::Gauge: return "gauge";
    case prometheus::MetricType::Summary: return "summary";
    case prometheus::MetricType::Histogram: return "histogram";
    case prometheus::MetricType::Untyped: break;
  }
  return "untyped";
}

void AppendCountAndSum(std::string* out, const CollectedFamily& f, const SampleText& sample,
                       const prometheus::ClientMetric& m, uint64_t count, double sum) {
  AppendHead(out, f, sample, "_count");
  AppendUint(out, count);
  AppendTail(out, m);
  AppendHead(out, f, sample, "_sum");
  AppendDouble(out, sum);
  AppendTail(out, m);
}

void AppendMetric(std::string* out, const CollectedFamily& f, SampleText& sample,
                  const prometheus::ClientMetric& m) {
  sample.Render(m);
  switch (f.type) {
    case prometheus::MetricType::Counter:
      AppendHead(out, f, sample);
      AppendDouble(out, m.counter.value);
      return AppendTail(out, m);
    case prometheus::MetricType::Gauge:
      AppendHead(out, f, sample);
      AppendDouble(out, m.gauge.value);
      return AppendTail(out, m);
    case prometheus::MetricType::Untyped:
      AppendHead(out, f, sample);
      AppendDouble(out, m.untyped.value);
      return AppendTail(out, m);
    case prometheus::MetricType::Summary:
      AppendCountAndSum(out, f, sample, m, m.summary.sample_count, m.summary.sample_sum);
      for (const auto& q : m.summary.quantile) {
        std::string quantile;
        AppendDouble(&quantile, q.quantile);
        AppendHead(out, f, sample, "", "quantile", &quantile);
        AppendDouble(out, q.value);
        AppendTail(out, m);
      }
      return;
    case prometheus::MetricType::Histogram: {
      AppendCountAndSum(out, f, sample, m, m.histogram.sample_count, m.histogram.sample_sum);
      // Every bucket line starts the same up to its bound: that head once.
      sample.bucket_head.assign(f.name);
      sample.bucket_head.append("_bucket{");
      if (!sample.labels.empty()) {
        sample.bucket_head.append(sample.labels);
        sample.bucket_head.push_back(',');
      }
      sample.bucket_head.append("le=\"");
      auto bucket = [&](size_t i, double bound, uint64_t count) {
        out->append(sample.bucket_head);
        out->append(sample.Le(i, bound));
        out->append("\"} ");
        AppendUint(out, count);
        AppendTail(out, m);
      };
      constexpr double kInf = std::numeric_limits<double>::infinity();
      double last = -kInf;
      size_t i = 0;
      for (const auto& b : m.histogram.bucket) {
        bucket(i++, b.upper_bound, b.cumulative_count);
        last = b.upper_bound;
      }
      if (last != kInf) bucket(i, kInf, m.histogram.sample_count);
      return;
    }
  }
}

}  // namespace

std::string SerializeText(const std::vector<CollectedFamily>& families) {
  // Room for the whole page up front (a histogram writes a line per bucket
  // plus three), so a large page is never copied while it grows.
  size_t bytes = 4096;
  for (const CollectedFamily& f : families) {
    for (const prometheus::ClientMetric& m : f.metric) {
      size_t lines = 1;
      if (f.type == prometheus::MetricType::Histogram) lines = m.histogram.bucket.size() + 3;
      if (f.type == prometheus::MetricType::Summary) lines = m.summary.quantile.size() + 2;
      size_t label_bytes = 0;
      for (const auto& l : m.label) label_bytes += l.name.size() + l.value.size() + 4;
      bytes += lines * (f.name.size() + label_bytes + 48);
    }
  }
  std::string out;
  out.reserve(bytes);
  for (const CollectedFamily& f : families) {
    if (f.metric.empty()) continue;
    if (!f.help.empty()) {
      out.append("# HELP ");
      out.append(f.name);
      out.push_back(' ');
      out.append(f.help);  // escaped when the family was made
      out.push_back('\n');
    }
    out.append("# TYPE ");
    out.append(f.name);
    out.push_back(' ');
    out.append(TypeName(f.type));
    out.push_back('\n');
    SampleText sample;
    for (const prometheus::ClientMetric& m : f.metric) AppendMetric(&out, f, sample, m);
  }
  return out;
}

std::string SerializeTextWithPrometheusCpp(const std::vector<CollectedFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace fairserve
