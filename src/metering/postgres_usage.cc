#include "fairserve/metering/postgres_usage.h"

#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <pqxx/pqxx>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/config/config.h"
#include "spdlog/spdlog.h"

namespace fairserve {

class PgConnection : public pqxx::connection {
 public:
  using pqxx::connection::connection;
};

namespace {

struct Migration {
  const char* name;  // file name in deploy/postgres/, "NNN_what.sql"
  const char* sql;
};

// Generated from deploy/postgres/*.sql by src/CMakeLists.txt, in name order.
constexpr Migration kMigrations[] = {
#include "fairserve/postgres_migrations.inc"
};

int VersionOf(const char* name) {
  int v = 0;
  for (const char* p = name; *p >= '0' && *p <= '9'; ++p) v = v * 10 + (*p - '0');
  return v;
}

// The largest Unix second to_timestamp() takes for our reads (9999-12-31).
constexpr int64_t kMaxSeconds = 253402300799;

absl::Status CheckPrefix(const std::string& prefix) {
  if (!IsValidTablePrefix(prefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("table prefix '", prefix,
                     "' is not usable in table names; use 1 to 40 lowercase letters, digits and "
                     "'_', not starting with a digit"));
  }
  return absl::OkStatus();
}

// The DSN with a connect timeout, unless it sets one itself.
std::string WithConnectTimeout(const std::string& dsn, std::chrono::seconds timeout) {
  if (absl::StrContains(dsn, "connect_timeout")) return dsn;
  const std::string t = std::to_string(std::max<int64_t>(2, timeout.count()));
  if (absl::StartsWith(dsn, "postgres://") || absl::StartsWith(dsn, "postgresql://")) {
    return absl::StrCat(dsn, absl::StrContains(dsn, "?") ? "&" : "?", "connect_timeout=", t);
  }
  return absl::StrCat(dsn, dsn.empty() ? "" : " ", "connect_timeout=", t);
}

absl::Status Unavailable(const std::exception& e, absl::string_view what) {
  std::string message = e.what();
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", message));
}

// Opens a connection with every statement bounded by `options`.
absl::StatusOr<std::unique_ptr<PgConnection>> Open(const PostgresOptions& options) {
  RETURN_IF_ERROR(CheckPrefix(options.table_prefix));
  try {
    auto conn = std::make_unique<PgConnection>(
        WithConnectTimeout(options.dsn, options.connect_timeout));
    pqxx::nontransaction tx(*conn);
    tx.exec0(absl::StrCat("SET statement_timeout = ", options.statement_timeout.count()));
    tx.exec0("SET TIME ZONE 'UTC'");
    return conn;
  } catch (const std::exception& e) {
    return Unavailable(e, "cannot connect to the usage database");
  }
}

// FAILED_PRECONDITION unless the database's schema is this build's.
absl::Status CheckSchema(PgConnection& conn, const std::string& prefix) {
  pqxx::nontransaction tx(conn);
  pqxx::row exists = tx.exec_params1("SELECT to_regclass($1) IS NOT NULL",
                                     absl::StrCat(prefix, "schema_migrations"));
  int version = 0;
  if (exists[0].as<bool>()) {
    pqxx::row v = tx.exec1(absl::StrCat("SELECT COALESCE(MAX(version), 0) FROM ", prefix,
                                        "schema_migrations"));
    version = v[0].as<int>();
  }
  if (version < PostgresSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the usage database's schema is at version ", version, " (tables '", prefix,
        "*'); this build needs version ", PostgresSchemaVersion(),
        ": run `fairctl db migrate --dsn ...`"));
  }
  if (version > PostgresSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the usage database's schema is at version ", version, ", newer than this build's ",
        PostgresSchemaVersion(), "; upgrade fairserve"));
  }
  return absl::OkStatus();
}

}  // namespace

int PostgresSchemaVersion() {
  int v = 0;
  for (const Migration& m : kMigrations) v = std::max(v, VersionOf(m.name));
  return v;
}

absl::StatusOr<std::vector<std::string>> MigratePostgres(const PostgresOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, Open(options));
  const std::string& p = options.table_prefix;
  std::vector<std::string> applied;
  try {
    pqxx::work tx(*conn);
    // Concurrent migrations of the same tables wait for each other.
    tx.exec_params("SELECT pg_advisory_xact_lock(hashtext($1))", p + "schema_migrations");
    tx.exec0(absl::StrCat("CREATE TABLE IF NOT EXISTS ", p,
                          "schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                          "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"));
    pqxx::row current =
        tx.exec1(absl::StrCat("SELECT COALESCE(MAX(version), 0) FROM ", p, "schema_migrations"));
    const int have = current[0].as<int>();
    for (const Migration& m : kMigrations) {
      const int version = VersionOf(m.name);
      if (version <= have) continue;
      tx.exec0(absl::StrReplaceAll(m.sql, {{"{{prefix}}", p}}));
      tx.exec_params0(
          absl::StrCat("INSERT INTO ", p, "schema_migrations (version, name) VALUES ($1, $2)"),
          version, std::string(m.name));
      applied.push_back(m.name);
    }
    tx.commit();
  } catch (const std::exception& e) {
    return Unavailable(e, "migration failed, nothing was changed");
  }
  return applied;
}

// ---------------------------------------------------------------------------
// PostgresUsage

PostgresUsage::PostgresUsage(PostgresOptions options) : options_(std::move(options)) {}
PostgresUsage::~PostgresUsage() = default;

absl::Status PostgresUsage::Connect() {
  if (conn_ && conn_->is_open()) return absl::OkStatus();
  conn_.reset();
  ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, Open(options_));
  const std::string& p = options_.table_prefix;
  try {
    RETURN_IF_ERROR(CheckSchema(*conn, p));
    conn->prepare("usage",
                  absl::StrCat("SELECT tenant_id, model_name, status, SUM(requests)::BIGINT, "
                               "SUM(samples)::BIGINT, SUM(compute_ns)::BIGINT FROM ",
                               p,
                               "usage WHERE bucket_start >= to_timestamp($1) AND bucket_start < "
                               "to_timestamp($2) AND ($3 = '' OR tenant_id = $3) "
                               "GROUP BY tenant_id, model_name, status ORDER BY 1, 2, 3"));
    conn->prepare(
        "daily",
        absl::StrCat(
            "SELECT to_char(date_trunc('day', bucket_start AT TIME ZONE 'UTC'), 'YYYY-MM-DD'), "
            "tenant_id, model_name, SUM(requests)::BIGINT, "
            "COALESCE(SUM(requests) FILTER (WHERE status <> 'ok'), 0)::BIGINT, "
            "SUM(samples)::BIGINT, SUM(compute_ns)::BIGINT FROM ",
            p,
            "usage WHERE bucket_start >= to_timestamp($1) AND bucket_start < to_timestamp($2) "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"));
  } catch (const std::exception& e) {
    return Unavailable(e, "cannot check the usage database's schema or prepare its queries");
  }
  conn_ = std::move(conn);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<UsageRow>> PostgresUsage::Usage(const UsageQuery& query) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(Connect());
  std::vector<UsageRow> out;
  try {
    pqxx::nontransaction tx(*conn_);
    pqxx::result rows = tx.exec_prepared("usage", std::clamp<int64_t>(query.from, 0, kMaxSeconds),
                                          std::clamp<int64_t>(query.to, 0, kMaxSeconds),
                                          query.tenant_id);
    for (const pqxx::row& r : rows) {
      UsageRow u;
      u.tenant_id = r[0].as<std::string>();
      u.model_name = r[1].as<std::string>();
      u.status = r[2].as<std::string>();
      u.requests = r[3].as<int64_t>();
      u.samples = r[4].as<int64_t>();
      u.compute_ns = r[5].as<int64_t>();
      u.compute_seconds = static_cast<double>(u.compute_ns) / 1e9;
      out.push_back(std::move(u));
    }
  } catch (const std::exception& e) {
    conn_.reset();
    return Unavailable(e, "usage database read failed");
  }
  return out;
}

absl::StatusOr<std::vector<DailyUsageRow>> PostgresUsage::Daily(int64_t from, int64_t to) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(Connect());
  std::vector<DailyUsageRow> out;
  try {
    pqxx::nontransaction tx(*conn_);
    pqxx::result rows = tx.exec_prepared("daily", std::clamp<int64_t>(from, 0, kMaxSeconds),
                                          std::clamp<int64_t>(to, 0, kMaxSeconds));
    for (const pqxx::row& r : rows) {
      DailyUsageRow d;
      d.day = r[0].as<std::string>();
      d.tenant_id = r[1].as<std::string>();
      d.model_name = r[2].as<std::string>();
      d.requests = r[3].as<int64_t>();
      d.failed_requests = r[4].as<int64_t>();
      d.samples = r[5].as<int64_t>();
      d.compute_ns = r[6].as<int64_t>();
      out.push_back(std::move(d));
    }
  } catch (const std::exception& e) {
    conn_.reset();
    return Unavailable(e, "usage database read failed");
  }
  return out;
}

// ---------------------------------------------------------------------------
// UsageShipper

UsageShipper::UsageShipper(LedgerWriter& ledger, Options options)
    : ledger_(ledger), options_(std::move(options)) {
  if (Registry* r = options_.registry) {
    rows_counter_ = &r->AddCounter("fairserve_usage_sink_rows_shipped_total",
                                   "Usage rows written to the fleet usage database")
                         .Add({});
    windows_counter_ = &r->AddCounter("fairserve_usage_sink_windows_shipped_total",
                                      "Ledger commit windows acknowledged by the usage database")
                            .Add({});
    errors_counter_ = &r->AddCounter("fairserve_usage_sink_errors_total",
                                     "Failed shipping attempts (the rows wait in the ledger's "
                                     "outbox and are sent again)")
                           .Add({});
    backlog_ = &r->AddGauge("fairserve_usage_sink_backlog_windows",
                            "Committed ledger windows not yet in the usage database")
                    .Add({});
    lag_ = &r->AddGauge("fairserve_usage_sink_lag_seconds",
                        "Age of the oldest committed usage not yet in the usage database "
                        "(0 when none is waiting)")
                .Add({});
    up_ = &r->AddGauge("fairserve_usage_sink_up",
                       "1 while the usage database accepts this replica's usage, else 0")
              .Add({});
  }
}

UsageShipper::~UsageShipper() { Stop(std::chrono::milliseconds(0)); }

void UsageShipper::Start() {
  thread_ = std::thread([this] { Run(); });
}

void UsageShipper::Stop(std::chrono::milliseconds final_wait) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (final_wait.count() <= 0) return;
  // The ledger has flushed its last window by now (the daemon closes it
  // first): one bounded attempt to ship it before exiting.
  auto deadline = std::chrono::steady_clock::now() + final_wait;
  while (std::chrono::steady_clock::now() < deadline) {
    absl::Status s = ShipAll();
    if (s.ok()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  spdlog::warn("usage sink: stopping with unshipped usage; it stays in the ledger's outbox and "
               "ships after the next start");
}

absl::Status UsageShipper::Connect() {
  if (conn_ && conn_->is_open()) return absl::OkStatus();
  conn_.reset();
  ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, Open(options_.db));
  const std::string& p = options_.db.table_prefix;
  try {
    RETURN_IF_ERROR(CheckSchema(*conn, p));
    pqxx::nontransaction tx(*conn);
    tx.exec0(
        "CREATE TEMP TABLE IF NOT EXISTS fairserve_ship (ledger_id TEXT, window_id BIGINT, "
        "bucket_start BIGINT, tenant_id TEXT, model_name TEXT, model_version TEXT, "
        "status TEXT, replica TEXT, requests BIGINT, samples BIGINT, compute_ns BIGINT, "
        "committed_ms BIGINT) ON COMMIT DELETE ROWS");
    // Where the database says this ledger got to: windows up to there are in
    // (they were shipped in order, each batch with this row), so a lost
    // local acknowledgement costs no resend.
    pqxx::result r = tx.exec_params(
        absl::StrCat("SELECT last_window FROM ", p, "ledgers WHERE ledger_id = $1"),
        ledger_.ledger_id());
    conn->prepare(
        "ship",
        absl::StrCat(
            "INSERT INTO ", p,
            "usage (ledger_id, window_id, bucket_start, tenant_id, model_name, model_version, "
            "status, replica, requests, samples, compute_ns, committed_at) "
            "SELECT ledger_id, window_id, to_timestamp(bucket_start), tenant_id, model_name, "
            "model_version, status, replica, requests, samples, compute_ns, "
            "to_timestamp(committed_ms / 1000.0) FROM fairserve_ship ON CONFLICT DO NOTHING"));
    conn->prepare(
        "progress",
        absl::StrCat("INSERT INTO ", p,
                     "ledgers (ledger_id, replica, last_window) VALUES ($1, $2, $3) "
                     "ON CONFLICT (ledger_id) DO UPDATE SET last_window = GREATEST(",
                     p, "ledgers.last_window, excluded.last_window), replica = excluded.replica, "
                     "last_shipped = now()"));
    ASSIGN_OR_RETURN(acked_, ledger_.AckedWindow());
    if (!r.empty() && r[0][0].as<int64_t>() > acked_) {
      acked_ = r[0][0].as<int64_t>();
      RETURN_IF_ERROR(ledger_.AckOutbox(acked_));
    }
  } catch (const std::exception& e) {
    return Unavailable(e, "usage database setup failed");
  }
  conn_ = std::move(conn);
  return absl::OkStatus();
}

absl::Status UsageShipper::ShipBatch(bool* shipped) {
  *shipped = false;
  RETURN_IF_ERROR(Connect());
  ASSIGN_OR_RETURN(std::vector<OutboxRow> rows, ledger_.ReadOutbox(acked_, options_.batch_rows));
  if (rows.empty()) return absl::OkStatus();
  const int64_t last = rows.back().window;
  int64_t windows = 0;
  try {
    pqxx::work tx(*conn_);
    {
      pqxx::stream_to copy(tx, "fairserve_ship",
                           std::vector<std::string>{"ledger_id", "window_id", "bucket_start",
                                                    "tenant_id", "model_name", "model_version",
                                                    "status", "replica", "requests", "samples",
                                                    "compute_ns", "committed_ms"});
      int64_t previous = -1;
      for (const OutboxRow& r : rows) {
        if (r.window != previous) ++windows;
        previous = r.window;
        copy << std::make_tuple(ledger_.ledger_id(), r.window, r.bucket_start, r.tenant_id,
                                r.model_name, r.model_version, r.status, ledger_.replica(),
                                r.requests, r.samples, r.compute_ns, r.committed_at);
      }
      copy.complete();
    }
    tx.exec_prepared0("ship");
    tx.exec_prepared0("progress", ledger_.ledger_id(), ledger_.replica(), last);
    tx.commit();
  } catch (const std::exception& e) {
    // Whatever happened (including a commit whose outcome is unknown), the
    // rows stay in the outbox; sending them again cannot count them twice.
    conn_.reset();
    return Unavailable(e, "shipping usage failed");
  }
  acked_ = last;
  rows_shipped_.fetch_add(static_cast<int64_t>(rows.size()));
  if (rows_counter_) rows_counter_->Increment(static_cast<double>(rows.size()));
  if (windows_counter_) windows_counter_->Increment(static_cast<double>(windows));
  *shipped = true;
  // A failed acknowledgement only means these windows are read and sent
  // again later, as no-ops.
  return ledger_.AckOutbox(last);
}

absl::Status UsageShipper::ShipAll() {
  bool shipped = true;
  absl::Status s;
  while (shipped && s.ok()) s = ShipBatch(&shipped);
  UpdateBacklog();
  if (up_) up_->Set(s.ok() ? 1 : 0);
  return s;
}

void UsageShipper::UpdateBacklog() {
  if (!backlog_ && !lag_) return;
  absl::StatusOr<LedgerWriter::OutboxState> state = ledger_.Outbox();
  if (!state.ok()) return;
  if (backlog_) {
    backlog_->Set(static_cast<double>(std::max<int64_t>(0, state->last_window - state->acked_window)));
  }
  if (lag_) {
    int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    lag_->Set(state->oldest_unacked_ms == 0 ? 0
                                            : std::max<int64_t>(0, now_ms - state->oldest_unacked_ms) /
                                                  1000.0);
  }
}

void UsageShipper::Run() {
  pthread_setname_np(pthread_self(), "fs-usage-sink");
  std::chrono::milliseconds wait = options_.flush_interval;
  bool failing = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, wait, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    absl::Status s = ShipAll();
    if (!s.ok()) {
      if (errors_counter_) errors_counter_->Increment();
      if (!failing) {
        spdlog::error("usage sink: {} (usage waits in the local ledger; retrying)",
                      std::string(s.message()));
      }
      failing = true;
      // Back off while the database is away: up to 10 s between attempts.
      wait = std::min<std::chrono::milliseconds>(std::max(wait * 2, options_.flush_interval),
                                                 std::chrono::seconds(10));
    } else {
      if (failing) spdlog::info("usage sink: shipping again; backlog drained");
      failing = false;
      wait = options_.flush_interval;
    }
    lock.lock();
  }
}

}  // namespace fairserve
