#include "fairserve/metering/text_format.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace fairserve {
namespace {

std::string EscapeHelp(const std::string& s) {
  std::string out;
  for (char c : s) {
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

void AppendLabels(std::string* out, const Labels& labels, const std::string* le = nullptr) {
  if (labels.empty() && !le) return;
  *out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) *out += ',';
    first = false;
    *out += k + "=\"" + EscapeLabelValue(v) + "\"";
  }
  if (le) {
    if (!first) *out += ',';
    *out += "le=\"" + *le + "\"";
  }
  *out += '}';
}

void AppendSample(std::string* out, const std::string& name, const Labels& labels,
                  const std::string& value, const std::string* le = nullptr) {
  *out += name;
  AppendLabels(out, labels, le);
  *out += ' ';
  *out += value;
  *out += '\n';
}

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    default: return "histogram";
  }
}

}  // namespace

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  if (v == std::floor(v) && std::abs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
    return buf;
  }
  // The shortest form that reads back as the same double.
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string SerializeText(const std::vector<CollectedFamily>& families) {
  std::string out;
  for (const CollectedFamily& f : families) {
    if (f.metrics.empty()) continue;
    out += "# HELP " + f.name + " " + EscapeHelp(f.help) + "\n";
    out += "# TYPE " + f.name + " " + TypeName(f.type) + "\n";
    for (const CollectedMetric& m : f.metrics) {
      if (f.type != MetricType::kHistogram) {
        AppendSample(&out, f.name, m.labels, FormatValue(m.value));
        continue;
      }
      for (const auto& [bound, count] : m.buckets) {
        std::string le = FormatValue(bound);
        AppendSample(&out, f.name + "_bucket", m.labels, FormatValue(count), &le);
      }
      AppendSample(&out, f.name + "_sum", m.labels, FormatValue(m.sum));
      AppendSample(&out, f.name + "_count", m.labels, FormatValue(m.count));
    }
  }
  return out;
}

}  // namespace fairserve
