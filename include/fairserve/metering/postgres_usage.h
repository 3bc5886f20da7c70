#ifndef FAIRSERVE_METERING_POSTGRES_USAGE_H_
#define FAIRSERVE_METERING_POSTGRES_USAGE_H_

// The fleet's usage in one PostgreSQL database (ledger.sink type postgres).
//
// Each replica's local SQLite ledger stays the durable write-ahead record.
// A UsageShipper thread per replica copies the ledger's committed windows,
// in window order, into <prefix>usage. The rows of one window carry the
// ledger's id and the window's number, which the ledger never reuses, and
// these are in the table's primary key: a window that is shipped again
// (after a timeout, a crash between the database's commit and the local
// acknowledgement, or a restart) adds nothing. So every committed request
// reaches the database exactly once, however often it is sent.
//
// PostgresUsage reads the fleet's totals back (GetUsage, GetInvoice, fairctl).
// Schema changes are the numbered files of deploy/postgres/, compiled in and
// applied in order by MigratePostgres (fairctl db migrate).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "fairserve/metering/ledger.h"
#include "fairserve/metering/metrics.h"

namespace fairserve {

class PgConnection;  // a pqxx::connection (postgres_usage.cc)

struct PostgresOptions {
  std::string dsn;  // libpq connection string or URI
  std::string table_prefix = "fairserve_";
  // Every statement is cancelled after this long, so a stuck database never
  // holds a caller longer than this.
  std::chrono::milliseconds statement_timeout{10000};
  std::chrono::seconds connect_timeout{5};
};

// The schema version this build reads and writes.
int PostgresSchemaVersion();

// Applies the migrations the database lacks, in order, each in its own
// transaction under an advisory lock (replicas and operators may run it at
// once). Returns the names of the ones applied (empty: already current).
absl::StatusOr<std::vector<std::string>> MigratePostgres(const PostgresOptions& options);

// Reads the fleet's usage. One connection, opened on first use and again
// after a failure; calls are serialized on it. Blocks the caller for one
// query (at most statement_timeout): call it from the admin service's
// synchronous threads or a CLI, never from inference or worker threads.
class PostgresUsage final : public UsageSource {
 public:
  explicit PostgresUsage(PostgresOptions options);
  ~PostgresUsage() override;

  // UNAVAILABLE when the database cannot be reached, FAILED_PRECONDITION
  // when its schema is not this build's (run fairctl db migrate).
  absl::StatusOr<std::vector<UsageRow>> Usage(const UsageQuery& query) override;
  // Per (UTC day, tenant, model) over [from, to).
  absl::StatusOr<std::vector<DailyUsageRow>> Daily(int64_t from, int64_t to);

 private:
  absl::Status Connect();
  const PostgresOptions options_;
  std::mutex mu_;
  std::unique_ptr<PgConnection> conn_;
};

// Ships one ledger's outbox to PostgreSQL on its own thread.
//
// Every flush_interval: read the committed windows after the last
// acknowledged one (whole windows, about batch_rows rows), write them in one
// transaction (COPY into a temporary table, then INSERT ... ON CONFLICT DO
// NOTHING, and the ledger's progress row), commit, then acknowledge them in
// the local ledger. While the database is down the windows wait in the
// ledger's outbox; shipping resumes from the last acknowledged window, and
// the connection is retried with backoff (up to 10 s). Never touches a
// worker or gRPC thread: the batch path only writes the local ledger.
//
// Metrics: fairserve_usage_sink_rows_shipped_total,
// fairserve_usage_sink_windows_shipped_total, fairserve_usage_sink_errors_total,
// fairserve_usage_sink_backlog_windows, fairserve_usage_sink_lag_seconds,
// fairserve_usage_sink_up.
class UsageShipper {
 public:
  struct Options {
    PostgresOptions db;
    int64_t batch_rows = 5000;
    std::chrono::milliseconds flush_interval{1000};
    Registry* registry = nullptr;  // optional
  };

  // `ledger` must have been opened with an outbox and outlive the shipper.
  UsageShipper(LedgerWriter& ledger, Options options);
  ~UsageShipper();

  // Starts the background thread.
  void Start();
  // Stops the thread after one last attempt to ship everything committed,
  // bounded by `final_wait` (what is left ships after the next start).
  void Stop(std::chrono::milliseconds final_wait);

  // One shipping round on the calling thread: every committed window, in
  // batches. Tests and Stop() use it.
  absl::Status ShipAll();

  int64_t rows_shipped() const { return rows_shipped_.load(); }

 private:
  void Run();
  absl::Status Connect();
  // Ships one batch; *shipped is set to false when the outbox was empty.
  absl::Status ShipBatch(bool* shipped);
  void UpdateBacklog();

  LedgerWriter& ledger_;
  const Options options_;
  std::unique_ptr<PgConnection> conn_;  // shipper thread only (or ShipAll's caller)
  int64_t acked_ = -1;                      // the last window known shipped
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
  std::atomic<int64_t> rows_shipped_{0};
  Counter* rows_counter_ = nullptr;
  Counter* windows_counter_ = nullptr;
  Counter* errors_counter_ = nullptr;
  Gauge* backlog_ = nullptr;
  Gauge* lag_ = nullptr;
  Gauge* up_ = nullptr;
};

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_POSTGRES_USAGE_H_
