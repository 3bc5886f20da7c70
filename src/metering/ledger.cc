#include "fairserve/metering/ledger.h"

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/metering/server_metrics.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS usage (
  bucket_start    INTEGER NOT NULL,
  replica         TEXT    NOT NULL,
  tenant_id       TEXT    NOT NULL,
  model_name      TEXT    NOT NULL,
  status          TEXT    NOT NULL,
  requests        INTEGER NOT NULL,
  samples         INTEGER NOT NULL,
  compute_seconds REAL    NOT NULL,
  PRIMARY KEY (bucket_start, replica, tenant_id, model_name, status)
);
CREATE INDEX IF NOT EXISTS usage_by_tenant ON usage (tenant_id, bucket_start);
)sql";

constexpr const char* kUpsert = R"sql(
INSERT INTO usage (bucket_start, replica, tenant_id, model_name, status, requests, samples,
                   compute_seconds)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (bucket_start, replica, tenant_id, model_name, status) DO UPDATE SET
  requests = requests + excluded.requests,
  samples = samples + excluded.samples,
  compute_seconds = compute_seconds + excluded.compute_seconds;
)sql";

absl::Status SqlError(sqlite3* db, const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", db ? sqlite3_errmsg(db) : "no database"));
}

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return absl::UnavailableError(absl::StrCat("ledger: ", msg, " (in: ", sql, ")"));
  }
  return absl::OkStatus();
}

int64_t SystemSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string LedgerPath(const std::string& data_dir) { return data_dir + "/usage.sqlite"; }

absl::StatusOr<std::unique_ptr<LedgerWriter>> LedgerWriter::Open(Options options) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(options.path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    absl::Status s = SqlError(db, absl::StrCat("cannot open usage ledger ", options.path));
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;", kSchema}) {
    absl::Status s = Exec(db, sql);
    if (!s.ok()) {
      sqlite3_close(db);
      return absl::UnavailableError(absl::StrCat(options.path, ": ", s.message()));
    }
  }
  if (!options.wall_clock) options.wall_clock = SystemSeconds;
  return std::unique_ptr<LedgerWriter>(new LedgerWriter(std::move(options), db));
}

LedgerWriter::LedgerWriter(Options options, sqlite3* db) : options_(std::move(options)), db_(db) {
  if (options_.registry) {
    commit_counter_ = &options_.registry
                           ->AddCounter("fairserve_ledger_commits_total",
                                        "Group commits written to the usage ledger")
                           .Add({});
    error_counter_ = &options_.registry
                          ->AddCounter("fairserve_ledger_write_errors_total",
                                       "Ledger commits that failed (their rows are retried)")
                          .Add({});
    commit_seconds_ = &options_.registry
                           ->AddHistogram("fairserve_ledger_commit_seconds",
                                          "Time to write one group commit",
                                          ExponentialBounds(0.0001, 2, 16))
                           .Add({});
  }
  thread_ = std::thread([this] { Run(); });
}

LedgerWriter::~LedgerWriter() {
  Close();
  sqlite3_close(db_);
}

void LedgerWriter::OnBatch(const BatchRecord& record) {
  if (record.items.empty()) return;
  int64_t bucket = options_.wall_clock() / 60 * 60;
  std::lock_guard<std::mutex> lock(mu_);
  for (const BatchItem& item : record.items) {
    std::string status = ServerMetrics::StatusLabel(item.code);
    UsageRow& row = pending_[Key{bucket, item.tenant_id, record.model_name, status}];
    if (row.requests == 0) {
      row.bucket_start = bucket;
      row.replica = options_.replica;
      row.tenant_id = item.tenant_id;
      row.model_name = record.model_name;
      row.status = status;
    }
    row.requests += 1;
    row.samples += item.samples;
    row.compute_seconds += item.compute_seconds;
  }
}

absl::Status LedgerWriter::CommitPending() {
  // The window leaves pending_ and reaches the database under write_mu_, so
  // Usage() (which holds it too) sees each row in exactly one of the two.
  std::lock_guard<std::mutex> write_lock(write_mu_);
  std::map<Key, UsageRow> rows;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rows.swap(pending_);
  }
  if (rows.empty()) return absl::OkStatus();
  auto start = std::chrono::steady_clock::now();
  absl::Status status = Exec(db_, "BEGIN IMMEDIATE;");
  sqlite3_stmt* stmt = nullptr;
  if (status.ok() && sqlite3_prepare_v2(db_, kUpsert, -1, &stmt, nullptr) != SQLITE_OK) {
    status = SqlError(db_, "ledger: prepare");
  }
  for (auto it = rows.begin(); status.ok() && it != rows.end(); ++it) {
    const UsageRow& r = it->second;
    sqlite3_bind_int64(stmt, 1, r.bucket_start);
    sqlite3_bind_text(stmt, 2, r.replica.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 3, r.tenant_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 4, r.model_name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 5, r.status.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 6, r.requests);
    sqlite3_bind_int64(stmt, 7, r.samples);
    sqlite3_bind_double(stmt, 8, r.compute_seconds);
    if (sqlite3_step(stmt) != SQLITE_DONE) status = SqlError(db_, "ledger: insert");
    sqlite3_reset(stmt);
  }
  sqlite3_finalize(stmt);
  if (status.ok()) status = Exec(db_, "COMMIT;");
  if (!status.ok()) {
    Exec(db_, "ROLLBACK;").IgnoreError();
    if (error_counter_) error_counter_->Increment();
    // Keep the rows: they go out with the next window.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, row] : rows) {
      UsageRow& dst = pending_[key];
      if (dst.requests == 0) {
        dst = row;
      } else {
        dst.requests += row.requests;
        dst.samples += row.samples;
        dst.compute_seconds += row.compute_seconds;
      }
    }
    return status;
  }
  if (commit_counter_) commit_counter_->Increment();
  if (commit_seconds_) {
    commit_seconds_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++commits_;
  return absl::OkStatus();
}

void LedgerWriter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  bool failing = false;
  while (!stopping_) {
    cv_.wait_for(lock, options_.commit_interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    absl::Status s = CommitPending();
    if (!s.ok() && !failing) spdlog::error("usage ledger write failed (will retry): {}", std::string(s.message()));
    if (s.ok() && failing) spdlog::info("usage ledger writes recovered");
    failing = !s.ok();
    lock.lock();
  }
}

absl::Status LedgerWriter::Flush() { return CommitPending(); }

absl::StatusOr<std::vector<UsageRow>> LedgerWriter::Usage(const UsageQuery& query) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  absl::StatusOr<std::vector<UsageRow>> committed = ReadUsage({options_.path}, query);
  if (!committed.ok()) return committed.status();
  std::map<std::tuple<std::string, std::string, std::string>, UsageRow> sums;
  for (UsageRow& r : *committed) sums[{r.tenant_id, r.model_name, r.status}] = std::move(r);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, r] : pending_) {
    if (r.bucket_start < query.from || r.bucket_start >= query.to) continue;
    if (!query.tenant_id.empty() && r.tenant_id != query.tenant_id) continue;
    UsageRow& row = sums[{r.tenant_id, r.model_name, r.status}];
    row.tenant_id = r.tenant_id;
    row.model_name = r.model_name;
    row.status = r.status;
    row.requests += r.requests;
    row.samples += r.samples;
    row.compute_seconds += r.compute_seconds;
  }
  std::vector<UsageRow> out;
  out.reserve(sums.size());
  for (auto& [key, row] : sums) out.push_back(std::move(row));
  return out;
}

void LedgerWriter::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  absl::Status s = Flush();
  if (!s.ok()) spdlog::error("usage ledger: final flush failed: {}", std::string(s.message()));
}

int64_t LedgerWriter::commits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return commits_;
}

absl::StatusOr<std::vector<UsageRow>> ReadUsage(const std::vector<std::string>& paths,
                                                const UsageQuery& query) {
  std::map<std::tuple<std::string, std::string, std::string>, UsageRow> sums;
  std::map<std::string, std::string> replica_source;  // replica -> the file it came from
  std::set<std::string> seen;                          // the same file named twice is read once
  for (const std::string& path : paths) {
    std::error_code ec;
    std::string canonical = std::filesystem::weakly_canonical(path, ec).string();
    if (!seen.insert(ec ? path : canonical).second) continue;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      absl::Status s = SqlError(db, absl::StrCat("cannot open usage ledger ", path));
      sqlite3_close(db);
      return s;
    }
    sqlite3_busy_timeout(db, 5000);
    const char* sql =
        "SELECT tenant_id, model_name, status, SUM(requests), SUM(samples), "
        "SUM(compute_seconds), replica FROM usage WHERE bucket_start >= ?1 AND bucket_start < ?2 "
        "AND (?3 = '' OR tenant_id = ?3) GROUP BY tenant_id, model_name, status, replica";
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) {
      absl::Status s = SqlError(db, absl::StrCat(path, ": not a fairserve usage ledger"));
      sqlite3_close(db);
      return s;
    }
    sqlite3_bind_int64(stmt, 1, query.from);
    sqlite3_bind_int64(stmt, 2, query.to);
    sqlite3_bind_text(stmt, 3, query.tenant_id.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      auto text = [stmt](int i) {
        const unsigned char* t = sqlite3_column_text(stmt, i);
        return std::string(t ? reinterpret_cast<const char*>(t) : "");
      };
      std::string replica = text(6);
      auto [it, fresh] = replica_source.emplace(replica, path);
      if (!fresh && it->second != path) {
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return absl::InvalidArgumentError(absl::StrCat(
            "replica '", replica, "' has rows in both ", it->second, " and ", path,
            "; one is a copy of the other, and summing both would count its usage twice"));
      }
      UsageRow& row = sums[{text(0), text(1), text(2)}];
      row.tenant_id = text(0);
      row.model_name = text(1);
      row.status = text(2);
      row.requests += sqlite3_column_int64(stmt, 3);
      row.samples += sqlite3_column_int64(stmt, 4);
      row.compute_seconds += sqlite3_column_double(stmt, 5);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
  std::vector<UsageRow> out;
  for (auto& [key, row] : sums) out.push_back(std::move(row));
  return out;
}

}  // namespace fairserve
