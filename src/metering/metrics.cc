#include "fairserve/metering/metrics.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include <algorithm>
#include <sstream>

#include "absl/strings/string_view.h"
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

void AddSample(CollectedFamily* family, std::initializer_list<LabelView> labels, double value) {
  // Built in place: a ClientMetric is about 150 bytes with three vectors.
  prometheus::ClientMetric& m = family->metric.emplace_back();
  m.label.reserve(labels.size());
  for (const LabelView& l : labels) m.label.push_back({std::string(l.name), std::string(l.value)});
  // By name, as prometheus-cpp orders the labels of the families it holds
  // (callers that list them in that order pay only the check).
  auto by_name = [](const prometheus::ClientMetric::Label& a,
                    const prometheus::ClientMetric::Label& b) { return a.name < b.name; };
  if (!std::is_sorted(m.label.begin(), m.label.end(), by_name)) {
    std::sort(m.label.begin(), m.label.end(), by_name);
  }
  if (family->type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
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
// difference: a number that is not whole is written in its shortest form
// that reads back exactly, where prometheus-cpp rounds to 16 significant
// digits.

// The page under construction: a buffer written through a raw pointer, so
// that a line's pieces are plain copies, without std::string::append's
// capacity check and terminator per piece (a 22 MB page has about 1.2
// million pieces). Room() makes sure of space once per line.
class PageWriter {
 public:
  explicit PageWriter(size_t reserve) {
    page_.resize(std::max<size_t>(reserve, 256));
    p_ = page_.data();
    end_ = p_ + page_.size();
  }
  // At least `n` bytes of room from here on.
  void Room(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) Grow(n);
  }
  // Writers below need Room() for what they write, except Put*Checked.
  void Put(const char* s, size_t n) {
    std::memcpy(p_, s, n);
    p_ += n;
  }
  void Put(const std::string& s) { Put(s.data(), s.size()); }
  void Put(char c) { *p_++ = c; }
  void PutChecked(const std::string& s) {
    Room(s.size());
    Put(s);
  }
  void PutUint(uint64_t v) {  // needs 20 bytes of room
    p_ = std::to_chars(p_, p_ + 20, v).ptr;
  }
  void PutInt(int64_t v) {  // needs 20 bytes of room
    p_ = std::to_chars(p_, p_ + 20, v).ptr;
  }
  void PutDouble(double v);  // needs kMaxNumber bytes of room
  std::string Finish() {
    page_.resize(static_cast<size_t>(p_ - page_.data()));
    return std::move(page_);
  }

  static constexpr size_t kMaxNumber = 32;  // longest number or timestamp text

 private:
  void Grow(size_t n) {
    const size_t used = static_cast<size_t>(p_ - page_.data());
    page_.resize(std::max(page_.size() * 2, used + n));
    p_ = page_.data() + used;
    end_ = page_.data() + page_.size();
  }

  std::string page_;
  char* p_;
  char* end_;
};

void PageWriter::PutDouble(double v) {
  if (std::isnan(v)) {
    Put("Nan", 3);
  } else if (std::isinf(v)) {
    Put(v < 0 ? "-Inf" : "+Inf", 4);
  } else if (std::fabs(v) < 1e16 && v == static_cast<double>(static_cast<int64_t>(v)) &&
             !(v == 0 && std::signbit(v))) {
    // Whole numbers (most of a page: counts, depths, weights, limits) as
    // integers, which is several times cheaper than the shortest-form search
    // below and is what prometheus-cpp writes for them (%.16g prints every
    // integer below 1e16 in full, where the shortest form would write
    // 100000 as 1e+05).
    PutInt(static_cast<int64_t>(v));
  } else {
    // The shortest text that reads back as the same double (at most 24
    // characters: sign, 17 digits, point, exponent).
    p_ = std::to_chars(p_, p_ + kMaxNumber, v).ptr;
  }
}

// A number's text, as PutDouble writes it.
std::string NumberText(double v) {
  PageWriter w(PageWriter::kMaxNumber);
  w.PutDouble(v);
  return w.Finish();
}

// A label value: backslash, double quote and newline escaped. (HELP text
// is escaped once, when a family is made: EscapeHelp.)
void AppendLabelValue(std::string* out, const std::string& s) {
  size_t plain = 0;  // the leading characters that need no escape: nearly always all
  while (plain < s.size() && s[plain] != '\\' && s[plain] != '\n' && s[plain] != '"') ++plain;
  out->append(s, 0, plain);
  for (char c : absl::string_view(s).substr(plain)) {
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
      le_text[i] = NumberText(bound);
    }
    return le_text[i];
  }
};

// name<suffix>{labels[,extra="value"]} (the value follows), with room for
// the value and the line's end.
void PutHead(PageWriter* out, const CollectedFamily& family, const SampleText& sample,
             const char* suffix = "", size_t suffix_size = 0, const char* extra = nullptr,
             const std::string* extra_value = nullptr) {
  out->Room(family.name.size() + suffix_size + sample.labels.size() +
            (extra ? std::strlen(extra) + extra_value->size() + 4 : 0) + 4 +
            2 * PageWriter::kMaxNumber);
  out->Put(family.name);
  out->Put(suffix, suffix_size);
  if (!sample.labels.empty() || extra != nullptr) {
    out->Put('{');
    out->Put(sample.labels);
    if (extra != nullptr) {
      if (!sample.labels.empty()) out->Put(',');
      out->Put(extra, std::strlen(extra));
      out->Put("=\"", 2);
      out->Put(*extra_value);
      out->Put('"');
    }
    out->Put('}');
  }
  out->Put(' ');
}

// The optional timestamp and the newline (room made by PutHead).
void PutTail(PageWriter* out, const prometheus::ClientMetric& m) {
  if (m.timestamp_ms != 0) {
    out->Put(' ');
    out->PutInt(m.timestamp_ms);
  }
  out->Put('\n');
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

void PutCountAndSum(PageWriter* out, const CollectedFamily& f, const SampleText& sample,
                    const prometheus::ClientMetric& m, uint64_t count, double sum) {
  PutHead(out, f, sample, "_count", 6);
  out->PutUint(count);
  PutTail(out, m);
  PutHead(out, f, sample, "_sum", 4);
  out->PutDouble(sum);
  PutTail(out, m);
}

void PutMetric(PageWriter* out, const CollectedFamily& f, SampleText& sample,
               const prometheus::ClientMetric& m) {
  sample.Render(m);
  switch (f.type) {
    case prometheus::MetricType::Counter:
      PutHead(out, f, sample);
      out->PutDouble(m.counter.value);
      return PutTail(out, m);
    case prometheus::MetricType::Gauge:
      PutHead(out, f, sample);
      out->PutDouble(m.gauge.value);
      return PutTail(out, m);
    case prometheus::MetricType::Untyped:
      PutHead(out, f, sample);
      out->PutDouble(m.untyped.value);
      return PutTail(out, m);
    case prometheus::MetricType::Summary:
      PutCountAndSum(out, f, sample, m, m.summary.sample_count, m.summary.sample_sum);
      for (const auto& q : m.summary.quantile) {
        const std::string quantile = NumberText(q.quantile);
        PutHead(out, f, sample, "", 0, "quantile", &quantile);
        out->PutDouble(q.value);
        PutTail(out, m);
      }
      return;
    case prometheus::MetricType::Histogram: {
      PutCountAndSum(out, f, sample, m, m.histogram.sample_count, m.histogram.sample_sum);
      // Every bucket line starts the same up to its bound: that head once.
      sample.bucket_head.assign(f.name);
      sample.bucket_head.append("_bucket{");
      if (!sample.labels.empty()) {
        sample.bucket_head.append(sample.labels);
        sample.bucket_head.push_back(',');
      }
      sample.bucket_head.append("le=\"");
      auto bucket = [&](size_t i, double bound, uint64_t count) {
        const std::string& le = sample.Le(i, bound);
        out->Room(sample.bucket_head.size() + le.size() + 4 + 2 * PageWriter::kMaxNumber);
        out->Put(sample.bucket_head);
        out->Put(le);
        out->Put("\"} ", 3);
        out->PutUint(count);
        PutTail(out, m);
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
  // plus three), so a large page is rarely copied while it grows.
  size_t bytes = 4096;
  for (const CollectedFamily& f : families) {
    for (const prometheus::ClientMetric& m : f.metric) {
      size_t lines = 1;
      if (f.type == prometheus::MetricType::Histogram) lines = m.histogram.bucket.size() + 3;
      if (f.type == prometheus::MetricType::Summary) lines = m.summary.quantile.size() + 2;
      size_t label_bytes = 0;
      for (const auto& l : m.label) label_bytes += l.name.size() + l.value.size() + 4;
      // Each line: the name, a suffix, the labels, braces, le="..." on a
      // bucket line, the value and the newline. A page of counts comes out
      // about 15% under this estimate, and the buffer is zero-filled to its
      // size, so it is kept close; a page of long numbers grows it once.
      bytes += lines * (f.name.size() + label_bytes + 24);
    }
  }
  PageWriter out(bytes);
  for (const CollectedFamily& f : families) {
    if (f.metric.empty()) continue;
    if (!f.help.empty()) {
      out.Room(8 + f.name.size());
      out.Put("# HELP ", 7);
      out.Put(f.name);
      out.Put(' ');
      out.PutChecked(f.help);  // escaped when the family was made
      out.Room(1);
      out.Put('\n');
    }
    const char* type = TypeName(f.type);
    out.Room(9 + f.name.size() + std::strlen(type));
    out.Put("# TYPE ", 7);
    out.Put(f.name);
    out.Put(' ');
    out.Put(type, std::strlen(type));
    out.Put('\n');
    SampleText sample;
    for (const prometheus::ClientMetric& m : f.metric) PutMetric(&out, f, sample, m);
  }
  return out.Finish();
}

std::string SerializeTextWithPrometheusCpp(const std::vector<CollectedFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace fairserve
