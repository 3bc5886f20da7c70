#ifndef FAIRSERVE_SERVER_STATUS_PAGE_H_
#define FAIRSERVE_SERVER_STATUS_PAGE_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "fairserve/metering/ledger.h"
#include "fairserve/metering/server_metrics.h"
#include "fairserve/models/model_cache.h"
#include "fairserve/server/runtime.h"
#include "fairserve/server/status_history.h"
#include "fairserve/tenancy/authenticator.h"

namespace fairserve {

// What the status page shows for one tenant.
struct TenantStatus {
  std::string id;
  double weight = 1;
  double rate_limit = 0;      // requests/s; 0 = unlimited
  double requests_total = 0;  // all requests so far (for the rate)
  int64_t queued = 0;
  int64_t inflight = 0;
  int64_t max_inflight = 0;
  uint64_t memory_used = 0;
  uint64_t memory_quota = 0;
  double compute_seconds = 0;  // this month, from the ledger
  int64_t cost_cents = 0;      // this month, at the configured prices
};

struct ModelStatus {
  std::string name, version, state, owner;
  uint64_t bytes = 0;
};

struct StatusSnapshot {
  std::string version;
  std::string currency;
  std::string period;  // "2026-11"
  double uptime_s = 0;
  std::vector<TenantStatus> tenants;
  std::vector<ModelStatus> models;
  // The last hour's charts, by tenant (empty until two samples were taken).
  std::map<std::string, StatusHistory::Series> history;
  double sample_interval_s = 10;
};

// What the status page reads. Not owned.
struct StatusPageDeps {
  const Runtime* runtime = nullptr;
  const Authenticator* authenticator = nullptr;
  const ModelCache* models = nullptr;
  const ServerMetrics* metrics = nullptr;
  LedgerWriter* ledger = nullptr;
  const StatusHistory* history = nullptr;  // null: no charts
  std::chrono::steady_clock::time_point started;
};

// /status: a self-contained HTML page (no external assets) that refreshes
// itself every 5 s. Remembers the previous snapshot's request totals to show
// each tenant's request rate between refreshes. Thread-safe; runs on the
// HTTP server's threads.
class StatusPage {
 public:
  StatusPage() = default;
  explicit StatusPage(StatusPageDeps deps) : deps_(deps) {}

  // The HTTP answer (code, body) for a client at `remote_addr` sending
  // `authorization`, enforcing server.status_page: 404 when off, 403 for a
  // non-loopback client in loopback mode, 401/403/429 in admin mode as the
  // Authenticator decides.
  std::pair<int, std::string> Respond(const std::string& remote_addr,
                                      const std::string& authorization);
  std::string Render(const StatusSnapshot& snapshot);

 private:
  StatusPageDeps deps_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_time_;
  std::map<std::string, double> last_totals_;
};

std::string HtmlEscape(const std::string& s);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_STATUS_PAGE_H_
