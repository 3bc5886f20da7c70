#include "fairserve/metering/invoice.h"

#include <cmath>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace fairserve {
namespace {

int64_t Cents(double amount) { return static_cast<int64_t>(std::llround(amount * 100.0)); }

std::string Money(int64_t cents) {
  return absl::StrFormat("%s%d.%02d", cents < 0 ? "-" : "", std::llabs(cents) / 100,
                         std::llabs(cents) % 100);
}

}  // namespace

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

Invoice MakeInvoice(const std::vector<UsageRow>& usage, const PricingConfig& pricing,
                    const std::string& tenant_id, int64_t from, int64_t to) {
  Invoice inv;
  inv.tenant_id = tenant_id;
  inv.from = from;
  inv.to = to;
  inv.currency = pricing.currency;
  for (const UsageRow& r : usage) {
    if (r.tenant_id != tenant_id) continue;
    inv.compute_seconds += r.compute_seconds;
    (r.status == "ok" ? inv.requests : inv.failed_requests) += r.requests;
  }
  const Prices& prices = pricing.For(tenant_id);
  // Graduated tiers: each band of compute at its own price.
  double lower = 0;
  double price = prices.per_compute_second;
  std::string name = "compute";
  for (size_t i = 0; i <= prices.tiers.size(); ++i) {
    double upper = i < prices.tiers.size() ? prices.tiers[i].above_compute_seconds : INFINITY;
    double band = std::max(0.0, std::min(inv.compute_seconds, upper) - lower);
    if (band > 0 || i == 0) {
      inv.lines.push_back({name, band, "s", price, Cents(band * price)});
    }
    if (i < prices.tiers.size()) {
      lower = upper;
      price = prices.tiers[i].per_compute_second;
      name = absl::StrCat("compute (above ", upper, " s)");
    }
  }
  double thousands = inv.requests / 1000.0;
  inv.lines.push_back({"requests", thousands, "1k requests", prices.per_1k_requests,
                       Cents(thousands * prices.per_1k_requests)});
  for (const InvoiceLine& l : inv.lines) inv.total_cents += l.amount_cents;
  return inv;
}

absl::StatusOr<std::string> FormatInvoice(const Invoice& inv, const std::string& format) {
  if (format == "json") {
    // Amounts as numbers of the currency (exact to the cent) and as integer
    // cents, for programs that must not round.
    nlohmann::ordered_json out = {
        {"tenant_id", inv.tenant_id},
        {"from", FormatUtc(inv.from)},
        {"to", FormatUtc(inv.to)},
        {"currency", inv.currency},
        {"compute_seconds", inv.compute_seconds},
        {"requests", inv.requests},
        {"failed_requests", inv.failed_requests},
        {"lines", nlohmann::ordered_json::array()}};
    for (const InvoiceLine& l : inv.lines) {
      out["lines"].push_back({{"item", l.item},
                              {"quantity", l.quantity},
                              {"unit", l.unit},
                              {"unit_price", l.unit_price},
                              {"amount", l.amount_cents / 100.0},
                              {"amount_cents", l.amount_cents}});
    }
    out["total"] = inv.total_cents / 100.0;
    out["total_cents"] = inv.total_cents;
    return out.dump() + "\n";
  }
  if (format == "csv") {
    std::string out = "tenant_id,from,to,item,quantity,unit,unit_price,amount,currency\n";
    for (const InvoiceLine& l : inv.lines) {
      absl::StrAppendFormat(&out, "%s,%s,%s,%s,%.9f,%s,%.9g,%s,%s\n", CsvField(inv.tenant_id),
                            FormatUtc(inv.from), FormatUtc(inv.to), CsvField(l.item), l.quantity,
                            l.unit, l.unit_price, Money(l.amount_cents), inv.currency);
    }
    absl::StrAppendFormat(&out, "%s,%s,%s,total,,,,%s,%s\n", CsvField(inv.tenant_id),
                          FormatUtc(inv.from), FormatUtc(inv.to), Money(inv.total_cents),
                          inv.currency);
    return out;
  }
  if (format != "table") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown format '", format, "'; use table, json or csv"));
  }
  std::string out = absl::StrFormat(
      "Invoice for tenant %s, %s to %s\nCompute: %.6f s; requests: %d ok, %d failed\n\n"
      "%-28s %18s %-12s %12s %12s\n",
      inv.tenant_id, FormatUtc(inv.from), FormatUtc(inv.to), inv.compute_seconds, inv.requests,
      inv.failed_requests, "item", "quantity", "unit", "unit price", "amount");
  for (const InvoiceLine& l : inv.lines) {
    absl::StrAppendFormat(&out, "%-28s %18.6f %-12s %12.6g %12s\n", l.item, l.quantity, l.unit,
                          l.unit_price, Money(l.amount_cents));
  }
  absl::StrAppendFormat(&out, "%-28s %18s %-12s %12s %12s %s\n", "total", "", "", "",
                        Money(inv.total_cents), inv.currency);
  return out;
}

absl::StatusOr<int64_t> ParseUtcDate(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (!end || *end) {
    tm = {};
    end = strptime(text.c_str(), "%Y-%m-%d", &tm);
  }
  if (!end || *end) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", text, "' is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"));
  }
  return static_cast<int64_t>(timegm(&tm));
}

std::string FormatUtc(int64_t unix_seconds) {
  if (unix_seconds <= 0) return "beginning";
  if (unix_seconds >= INT64_MAX / 2) return "now";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string FormatDailyCsv(const std::vector<DailyUsageRow>& rows) {
  std::string out =
      "day,tenant_id,model_name,requests,failed_requests,samples,compute_seconds\n";
  for (const DailyUsageRow& d : rows) {
    absl::StrAppendFormat(&out, "%s,%s,%s,%d,%d,%d,%d.%09d\n", d.day, CsvField(d.tenant_id),
                          CsvField(d.model_name), d.requests, d.failed_requests, d.samples,
                          d.compute_ns / 1000000000, d.compute_ns % 1000000000);
  }
  return out;
}

}  // namespace fairserve
