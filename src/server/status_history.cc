#include "fairserve/server/status_history.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fairserve/server/status_page.h"

namespace fairserve {
namespace {

std::string Label(const prometheus::ClientMetric& m, const std::string& name) {
  for (const prometheus::ClientMetric::Label& l : m.label) {
    if (l.name == name) return l.value;
  }
  return "";
}

void Push(std::vector<double>* v, double x, size_t cap) {
  v->push_back(x);
  if (v->size() > cap) v->erase(v->begin(), v->begin() + (v->size() - cap));
}

}  // namespace

void StatusHistory::Record(double t, const std::vector<CollectedFamily>& families) {
  std::map<std::string, Totals> now;
  for (const CollectedFamily& f : families) {
    const bool requests = f.name == "tenant_requests_total";
    const bool compute = f.name == "tenant_gpu_compute_seconds_total";
    const bool rejected = f.name == "fairserve_rejected_requests_total";
    const bool weight = f.name == "fairserve_tenant_weight";
    if (!requests && !compute && !rejected && !weight) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      Totals& tenant = now[Label(m, "tenant_id")];
      if (requests) tenant.requests += m.counter.value;
      if (compute) tenant.compute += m.counter.value;
      if (rejected) tenant.rejected[Label(m, "reason")] += m.counter.value;
      if (weight) tenant.weight = m.gauge.value;
    }
  }
  now.erase("");
  std::lock_guard<std::mutex> lock(mu_);
  const double dt = t - last_t_;
  if (last_t_ >= 0 && dt > 0) {
    double compute_all = 0, weight_all = 0;
    for (const auto& [id, tenant] : now) {
      auto before = last_.find(id);
      if (before != last_.end()) compute_all += std::max(0.0, tenant.compute - before->second.compute);
      weight_all += tenant.weight;
    }
    for (const auto& [id, tenant] : now) {
      auto before = last_.find(id);
      const Totals& prev = before != last_.end() ? before->second : tenant;
      Series& s = series_[id];
      // Counters only grow; a restart of one (a reload re-creating it) reads as 0.
      auto rate = [dt](double a, double b) { return std::max(0.0, a - b) / dt; };
      Push(&s.requests_per_s, rate(tenant.requests, prev.requests), points_);
      for (const auto& [reason, total] : tenant.rejected) {
        auto p = prev.rejected.find(reason);
        std::vector<double>& line = s.rejections_per_s[reason];
        // A reason seen for the first time starts with zeros so all lines align.
        if (line.size() + 1 < s.requests_per_s.size()) {
          line.assign(s.requests_per_s.size() - 1, 0.0);
        }
        Push(&line, rate(total, p == prev.rejected.end() ? total : p->second), points_);
      }
      double used = std::max(0.0, tenant.compute - prev.compute);
      Push(&s.compute_share, compute_all > 0 ? used / compute_all : 0.0, points_);
      Push(&s.weight_share, weight_all > 0 ? tenant.weight / weight_all : 0.0, points_);
    }
  }
  for (auto it = series_.begin(); it != series_.end();) {
    it = now.count(it->first) ? std::next(it) : series_.erase(it);
  }
  last_t_ = t;
  last_ = std::move(now);
}

std::map<std::string, StatusHistory::Series> StatusHistory::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return series_;
}

const char* ChartColour(size_t i) {
  static const char* kColours[] = {"#0969da", "#cf222e", "#8250df", "#bf8700", "#1a7f37",
                                   "#57606a"};
  return kColours[i % 6];
}

std::string SvgChart(const std::string& chart, const std::string& title,
                     const std::vector<std::pair<std::string, std::vector<double>>>& lines,
                     double min_max) {
  constexpr double kWidth = 180, kHeight = 36;
  double max = min_max;
  size_t n = 0;
  for (const auto& [name, values] : lines) {
    for (double v : values) max = std::max(max, v);
    n = std::max(n, values.size());
  }
  std::string svg = absl::StrFormat(
      "<svg class=\"chart\" data-chart=\"%s\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f "
      "%.0f\" role=\"img\"><title>%s (max %.4g)</title>"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"#f6f8fa\"/>",
      HtmlEscape(chart), kWidth, kHeight, kWidth, kHeight, HtmlEscape(title), max);
  size_t colour = 0;
  for (const auto& [name, values] : lines) {
    if (values.empty()) continue;
    std::string points;
    // Right-aligned: the newest point at the right edge.
    const double step = n > 1 ? kWidth / static_cast<double>(n - 1) : kWidth;
    const size_t offset = n - values.size();
    for (size_t i = 0; i < values.size(); ++i) {
      double x = values.size() == 1 ? kWidth : static_cast<double>(offset + i) * step;
      double y = kHeight - 2 - (kHeight - 4) * (values[i] / max);
      absl::StrAppendFormat(&points, "%s%.1f,%.1f", i ? " " : "", x, y);
    }
    const bool dashed = name.size() >= 8 && name.compare(name.size() - 8, 8, "(dashed)") == 0;
    absl::StrAppendFormat(&svg,
                          "<polyline data-series=\"%s\" fill=\"none\" stroke=\"%s\" "
                          "stroke-width=\"1.5\"%s points=\"%s\"/>",
                          HtmlEscape(name), ChartColour(colour++),
                          dashed ? " stroke-dasharray=\"3 2\"" : "", points);
  }
  return svg + "</svg>";
}

}  // namespace fairserve
