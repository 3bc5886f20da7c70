#include "fairserve/server/status_page.h"

#include <algorithm>
#include <ctime>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fairserve/common/units.h"
#include "fairserve/config/partitions.h"
#include "fairserve/metering/invoice.h"
#include "fairserve/version.h"

namespace fairserve {

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

constexpr const char* kHead = R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>fairserve status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fafbfc}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.sub{color:#57606a;margin-bottom:16px}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002}
th,td{padding:6px 12px;border-bottom:1px solid #d0d7de;text-align:right}
th{background:#f6f8fa;font-weight:600} td:first-child,th:first-child{text-align:left}
.bar{display:inline-block;width:80px;height:8px;background:#eaeef2;border-radius:4px;vertical-align:middle;margin-right:6px}
.bar i{display:block;height:8px;border-radius:4px;background:#2da44e}
.hot i{background:#cf222e} .READY{color:#1a7f37} .UNAVAILABLE{color:#cf222e}
#charts td{text-align:left;vertical-align:top} svg.chart{display:block;margin:2px 0}
</style></head><body>
)";

std::string Bar(double fraction) {
  double f = std::max(0.0, std::min(1.0, fraction));
  return absl::StrFormat("<span class=\"bar%s\"><i style=\"width:%.0f%%\"></i></span>",
                         f > 0.9 ? " hot" : "", f * 100);
}

std::string Money(int64_t cents) { return absl::StrFormat("%d.%02d", cents / 100, cents % 100); }

// The "last hour" table: one row of small SVG charts per tenant.
std::string RenderCharts(const StatusSnapshot& snap) {
  std::string html = absl::StrFormat(
      "<h2>Last hour</h2>\n<div class=\"sub\">one point every %.0f s; newest on the right; "
      "hover a chart for its scale</div>\n",
      snap.sample_interval_s);
  if (snap.history.empty()) {
    return html + "<p id=\"charts\">The charts start after the second sample.</p>\n";
  }
  html += "<table id=\"charts\"><tr><th>tenant</th><th>requests/s</th>"
          "<th>rejections/s by reason</th><th>compute share vs weight share</th></tr>\n";
  for (const auto& [id, s] : snap.history) {
    std::vector<std::pair<std::string, std::vector<double>>> rejections;
    std::string legend;
    size_t i = 0;
    for (const auto& [reason, values] : s.rejections_per_s) {
      bool any = std::any_of(values.begin(), values.end(), [](double v) { return v > 0; });
      if (!any) continue;
      rejections.emplace_back(reason, values);
      absl::StrAppendFormat(&legend, "<span style=\"color:%s\">%s</span> ", ChartColour(i++),
                            HtmlEscape(reason));
    }
    if (rejections.empty()) legend = "none";
    absl::StrAppendFormat(
        &html, "<tr data-tenant-charts=\"%s\"><td>%s</td><td>%s %.1f</td><td>%s<br>%s</td>"
               "<td>%s<br><span style=\"color:%s\">compute %.0f%%</span> "
               "<span style=\"color:%s\">weight %.0f%%</span></td></tr>\n",
        HtmlEscape(id), HtmlEscape(id),
        SvgChart("requests", id + ": requests/s", {{"requests/s", s.requests_per_s}}, 1.0),
        s.requests_per_s.empty() ? 0.0 : s.requests_per_s.back(),
        SvgChart("rejections", id + ": rejections/s by reason", rejections, 1.0), legend,
        SvgChart("share", id + ": share of compute (solid) and of the weights (dashed)",
                 {{"compute", s.compute_share}, {"weight (dashed)", s.weight_share}}, 1.0),
        ChartColour(0), s.compute_share.empty() ? 0.0 : 100 * s.compute_share.back(),
        ChartColour(1), s.weight_share.empty() ? 0.0 : 100 * s.weight_share.back());
  }
  return html + "</table>\n";
}

}  // namespace

std::pair<int, std::string> StatusPage::Respond(const std::string& remote_addr,
                                                const std::string& authorization) {
  std::shared_ptr<const RuntimeSnapshot> runtime = deps_.runtime->Get();
  const Config& config = runtime->config();
  const StatusPageMode mode = config.server.status_page;
  bool loopback = absl::StartsWith(remote_addr, "127.") || remote_addr == "::1" ||
                  absl::StartsWith(remote_addr, "::ffff:127.");
  if (mode == StatusPageMode::kOff) return {404, "the status page is off (server.status_page)\n"};
  if (mode == StatusPageMode::kLoopback && !loopback) {
    return {403, "the status page is only served to loopback clients (server.status_page: "
                 "loopback); use an SSH tunnel or set server.status_page: admin\n"};
  }
  if (mode == StatusPageMode::kAdmin) {
    Credentials credentials;
    credentials.peer = remote_addr;
    credentials.authorization = authorization;
    absl::StatusOr<Principal> p =
        deps_.authenticator->AuthenticateAdmin(runtime->tenants, credentials, "the status page");
    if (!p.ok()) {
      int code = p.status().code() == absl::StatusCode::kPermissionDenied    ? 403
                 : p.status().code() == absl::StatusCode::kResourceExhausted ? 429
                                                                             : 401;
      return {code, absl::StrCat(p.status().message(), "\n")};
    }
  }
  StatusSnapshot snap;
  snap.version = kFairserveVersion;
  if (deps_.history != nullptr) snap.history = deps_.history->Get();
  snap.sample_interval_s = static_cast<double>(config.server.status_sample_interval_s);
  snap.currency = config.pricing.currency;
  snap.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - deps_.started).count();
  // This calendar month (UTC) is the billing period shown.
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  UsageQuery query;
  query.from = timegm(&tm);
  char period[16];
  std::strftime(period, sizeof(period), "%Y-%m", &tm);
  snap.period = period;
  std::vector<UsageRow> usage;
  if (auto rows = deps_.ledger->Usage(query); rows.ok()) usage = std::move(*rows);

  std::map<std::string, uint64_t> owned_bytes;
  for (const ModelState& m : deps_.models->Index()) {
    snap.models.push_back({m.name, m.version, m.state, m.owner, m.bytes});
    if (!m.owner.empty()) owned_bytes[m.owner] += m.bytes;
  }
  // Used and quota over every device (a tenant's quota applies on each).
  std::vector<MemoryPartitions> partitions;
  for (size_t d = 0; d < std::max<size_t>(1, config.devices.size()); ++d) {
    partitions.emplace_back(config, d);
  }
  for (const TenantConfig& t : config.tenants) {
    TenantStatus ts;
    ts.id = t.id;
    ts.weight = t.weight;
    ts.rate_limit = t.rate_limit.requests_per_second;
    ts.max_inflight = t.max_inflight;
    ts.requests_total = deps_.metrics->RequestsTotal(t.id);
    if (auto state = runtime->admission->Find(t.id)) {
      ts.queued = state->waiting().load();
      ts.inflight = state->inflight().load();
      ts.requests_total += static_cast<double>(state->rejected_total());
    }
    ts.memory_used = owned_bytes[t.id];
    ts.memory_quota = 0;
    for (const MemoryPartitions& p : partitions) {
      if (p.quotas().count(t.id)) ts.memory_quota += p.Capacity(t.id);
    }
    Invoice inv = MakeInvoice(usage, config.pricing, t.id, query.from, query.to);
    ts.compute_seconds = inv.compute_seconds;
    ts.cost_cents = inv.total_cents;
    snap.tenants.push_back(ts);
  }
  return {200, Render(snap)};
}

std::string StatusPage::Render(const StatusSnapshot& snap) {
  auto now = std::chrono::steady_clock::now();
  std::map<std::string, double> rates;
  {
    std::lock_guard<std::mutex> lock(mu_);
    double dt = std::chrono::duration<double>(now - last_time_).count();
    if (!last_totals_.empty() && dt > 0.5) {
      for (const TenantStatus& t : snap.tenants) {
        auto it = last_totals_.find(t.id);
        if (it != last_totals_.end()) rates[t.id] = (t.requests_total - it->second) / dt;
      }
    }
    last_totals_.clear();
    for (const TenantStatus& t : snap.tenants) last_totals_[t.id] = t.requests_total;
    last_time_ = now;
  }
  std::string html = kHead;
  absl::StrAppendFormat(&html,
                        "<h1>fairserve %s</h1><div class=\"sub\">up %.0f s &middot; %d tenants "
                        "&middot; billing period %s &middot; refreshes every 5 s</div>\n",
                        HtmlEscape(snap.version), snap.uptime_s, snap.tenants.size(),
                        HtmlEscape(snap.period));
  html += "<h2>Tenants</h2>\n<table id=\"tenants\"><tr><th>tenant</th><th>weight</th>"
          "<th>requests/s (limit)</th><th>queued</th><th>in flight</th><th>memory (quota)</th>"
          "<th>compute s this period</th><th>cost this period</th></tr>\n";
  for (const TenantStatus& t : snap.tenants) {
    auto rate = rates.find(t.id);
    std::string rate_text = rate == rates.end() ? "&ndash;" : absl::StrFormat("%.1f", rate->second);
    std::string limit = t.rate_limit > 0 ? absl::StrFormat("%.6g", t.rate_limit) : "&infin;";
    std::string rate_cell =
        (t.rate_limit > 0 && rate != rates.end() ? Bar(rate->second / t.rate_limit) : "") +
        rate_text + " (" + limit + ")";
    std::string inflight =
        absl::StrCat(t.max_inflight > 0 ? Bar(static_cast<double>(t.inflight) / t.max_inflight) : "",
                     t.inflight, t.max_inflight > 0 ? absl::StrCat(" / ", t.max_inflight) : "");
    std::string memory =
        t.memory_quota > 0
            ? absl::StrCat(Bar(static_cast<double>(t.memory_used) / t.memory_quota),
                           FormatBytes(t.memory_used), " / ", FormatBytes(t.memory_quota))
            : absl::StrCat(FormatBytes(t.memory_used), " (shared pool)");
    absl::StrAppendFormat(&html,
                          "<tr data-tenant=\"%s\"><td>%s</td><td>%.4g</td><td>%s</td><td>%d</td>"
                          "<td>%s</td><td>%s</td><td>%.3f</td><td>%s %s</td></tr>\n",
                          HtmlEscape(t.id), HtmlEscape(t.id), t.weight, rate_cell, t.queued,
                          inflight, memory, t.compute_seconds, Money(t.cost_cents),
                          HtmlEscape(snap.currency));
  }
  html += "</table>\n";
  html += RenderCharts(snap);
  html += "<h2>Models</h2>\n<table id=\"models\"><tr><th>model</th><th>version</th>"
          "<th>state</th><th>owner</th><th>resident bytes</th></tr>\n";
  for (const ModelStatus& m : snap.models) {
    absl::StrAppendFormat(&html,
                          "<tr><td>%s</td><td>%s</td><td class=\"%s\">%s</td><td>%s</td>"
                          "<td>%s</td></tr>\n",
                          HtmlEscape(m.name), HtmlEscape(m.version), HtmlEscape(m.state),
                          HtmlEscape(m.state), m.owner.empty() ? "shared" : HtmlEscape(m.owner),
                          m.state == "READY" ? FormatBytes(m.bytes) : "&ndash;");
  }
  html += "</table>\n</body></html>\n";
  return html;
}

}  // namespace fairserve
