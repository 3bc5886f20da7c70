#ifndef FAIRSERVE_METERING_INVOICE_H_
#define FAIRSERVE_METERING_INVOICE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fairserve/config/config.h"
#include "fairserve/metering/ledger.h"

namespace fairserve {

struct InvoiceLine {
  std::string item;      // "compute", "compute (above 36000 s)", "requests"
  double quantity = 0;   // seconds or requests
  std::string unit;      // "s", "1k requests"
  double unit_price = 0;
  int64_t amount_cents = 0;  // quantity x unit price, rounded half away from zero
};

struct Invoice {
  std::string tenant_id;
  int64_t from = 0, to = 0;  // Unix seconds, [from, to)
  std::string currency;
  double compute_seconds = 0;  // all statuses: a failed run used the device too
  int64_t requests = 0;        // successful requests (the ones billed per request)
  int64_t failed_requests = 0;
  std::vector<InvoiceLine> lines;
  int64_t total_cents = 0;     // the sum of the rounded lines
};

// Prices a tenant's usage rows (from ReadUsage) with `pricing`: compute by
// the tenant's graduated tiers, and successful requests per thousand.
// Pure function.
Invoice MakeInvoice(const std::vector<UsageRow>& usage, const PricingConfig& pricing,
                    const std::string& tenant_id, int64_t from, int64_t to);

// "table", "json" or "csv".
absl::StatusOr<std::string> FormatInvoice(const Invoice& invoice, const std::string& format);

// Parses "2026-11-27" or "2026-11-27T13:00:00Z" (UTC) to Unix seconds.
absl::StatusOr<int64_t> ParseUtcDate(const std::string& text);
std::string FormatUtc(int64_t unix_seconds);

// One CSV field (RFC 4180 quoting when needed).
std::string CsvField(const std::string& s);

// The finance export: a header, then one line per (day, tenant, model), with
// compute to the nanosecond.
std::string FormatDailyCsv(const std::vector<DailyUsageRow>& rows);

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_INVOICE_H_
