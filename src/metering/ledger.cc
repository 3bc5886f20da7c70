#include "fairserve/metering/ledger.h"

#include <pthread.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <cmath>

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
CREATE TABLE IF NOT EXISTS ledger_meta (
  key   TEXT PRIMARY KEY,
  value NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
  window_id     INTEGER NOT NULL,
  committed_at  INTEGER NOT NULL,
  bucket_start  INTEGER NOT NULL,
  tenant_id     TEXT    NOT NULL,
  model_name    TEXT    NOT NULL,
  model_version TEXT    NOT NULL,
  status        TEXT    NOT NULL,
  requests      INTEGER NOT NULL,
  samples       INTEGER NOT NULL,
  compute_ns    INTEGER NOT NULL,
  PRIMARY KEY (window_id, bucket_start, tenant_id, model_name, model_version, status)
);
)sql";

// Ledgers written before compute_ns existed get the column (their old rows
// read 0 there; compute_seconds still has their time).
constexpr const char* kAddComputeNs =
    "ALTER TABLE usage ADD COLUMN compute_ns INTEGER NOT NULL DEFAULT 0;";

// The first open with an outbox puts the whole history in as window 0.
constexpr const char* kBackfillOutbox = R"sql(
INSERT INTO outbox (window_id, committed_at, bucket_start, tenant_id, model_name, model_version,
                    status, requests, samples, compute_ns)
SELECT 0, ?1, bucket_start, tenant_id, model_name, '', status, requests, samples,
       CASE WHEN compute_ns > 0 THEN compute_ns
            ELSE CAST(round(compute_seconds * 1e9) AS INTEGER) END
FROM usage;
)sql";

constexpr const char* kInsertOutbox = R"sql(
INSERT INTO outbox (window_id, committed_at, bucket_start, tenant_id, model_name, model_version,
                    status, requests, samples, compute_ns)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10);
)sql";

constexpr const char* kUpsert = R"sql(
INSERT INTO usage (bucket_start, replica, tenant_id, model_name, status, requests, samples,
                   compute_seconds, compute_ns)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (bucket_start, replica, tenant_id, model_name, status) DO UPDATE SET
  requests = requests + excluded.requests,
  samples = samples + excluded.samples,
  compute_seconds = compute_seconds + excluded.compute_seconds,
  compute_ns = compute_ns + excluded.compute_ns;
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

int64_t SystemMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A prepared statement, finalized when it goes out of scope.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  bool ok() const { return stmt_ != nullptr; }
  sqlite3_stmt* get() { return stmt_; }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.c_str(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  // Runs a statement that returns no rows; resets it for the next use.
  absl::Status Run(const char* what) {
    int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    return rc == SQLITE_DONE ? absl::OkStatus() : SqlError(db_, what);
  }
  std::string Text(int i) {
    const unsigned char* t = sqlite3_column_text(stmt_, i);
    return std::string(t ? reinterpret_cast<const char*>(t) : "");
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

absl::StatusOr<std::string> MetaText(sqlite3* db, const char* key) {
  Statement st(db, "SELECT value FROM ledger_meta WHERE key = ?1;");
  if (!st.ok()) return SqlError(db, "ledger: read meta");
  st.Bind(1, std::string(key));
  if (sqlite3_step(st.get()) == SQLITE_ROW) return st.Text(0);
  return std::string();
}

absl::StatusOr<int64_t> MetaInt(sqlite3* db, const char* key, int64_t absent) {
  Statement st(db, "SELECT value FROM ledger_meta WHERE key = ?1;");
  if (!st.ok()) return SqlError(db, "ledger: read meta");
  st.Bind(1, std::string(key));
  if (sqlite3_step(st.get()) == SQLITE_ROW) return sqlite3_column_int64(st.get(), 0);
  return absent;
}

absl::Status SetMeta(sqlite3* db, const char* key, int64_t value) {
  Statement st(db, "INSERT OR REPLACE INTO ledger_meta (key, value) VALUES (?1, ?2);");
  if (!st.ok()) return SqlError(db, "ledger: write meta");
  st.Bind(1, std::string(key));
  st.Bind(2, value);
  return st.Run("ledger: write meta");
}

std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string out;
  static const char* kHex = "0123456789abcdef";
  for (int i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xff;
    out += kHex[v >> 4];
    out += kHex[v & 15];
  }
  return out;
}

bool HasColumn(sqlite3* db, const char* table, const char* column) {
  Statement st(db, absl::StrCat("PRAGMA table_info(", table, ");").c_str());
  while (st.ok() && sqlite3_step(st.get()) == SQLITE_ROW) {
    if (st.Text(1) == column) return true;
  }
  return false;
}

// Schema migration, the ledger's id, and (first time with an outbox) the
// backfill of the history into the outbox; one transaction.
absl::StatusOr<std::string> PrepareLedger(sqlite3* db, bool* outbox) {
  RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE;"));
  auto body = [&]() -> absl::StatusOr<std::string> {
    if (!HasColumn(db, "usage", "compute_ns")) RETURN_IF_ERROR(Exec(db, kAddComputeNs));
    ASSIGN_OR_RETURN(std::string id, MetaText(db, "ledger_id"));
    if (id.empty()) {
      id = RandomHex(16);
      Statement st(db, "INSERT INTO ledger_meta (key, value) VALUES ('ledger_id', ?1);");
      st.Bind(1, id);
      RETURN_IF_ERROR(st.Run("ledger: write id"));
    }
    ASSIGN_OR_RETURN(int64_t enabled, MetaInt(db, "outbox_enabled", 0));
    if (enabled != 0 && !*outbox) {
      // Once shipped, always recorded: windows committed while the sink is
      // off wait in the outbox, so turning it on again loses nothing.
      spdlog::warn("usage ledger: this ledger has shipped to a usage sink before; its outbox "
                   "keeps recording until the sink is configured again");
      *outbox = true;
    }
    if (*outbox && enabled == 0) {
      Statement st(db, kBackfillOutbox);
      if (!st.ok()) return SqlError(db, "ledger: backfill outbox");
      st.Bind(1, SystemMillis());
      RETURN_IF_ERROR(st.Run("ledger: backfill outbox"));
      RETURN_IF_ERROR(SetMeta(db, "outbox_enabled", 1));
      ASSIGN_OR_RETURN(int64_t last, MetaInt(db, "last_window", 0));
      RETURN_IF_ERROR(SetMeta(db, "last_window", std::max<int64_t>(last, 0)));
    }
    return id;
  };
  absl::StatusOr<std::string> id = body();
  if (!id.ok()) {
    Exec(db, "ROLLBACK;").IgnoreError();
    return id.status();
  }
  RETURN_IF_ERROR(Exec(db, "COMMIT;"));
  return id;
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
  absl::StatusOr<std::string> id = PrepareLedger(db, &options.outbox);
  if (!id.ok()) {
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat(options.path, ": ", id.status().message()));
  }
  absl::StatusOr<int64_t> last = MetaInt(db, "last_window", 0);
  if (!last.ok()) {
    sqlite3_close(db);
    return last.status();
  }
  if (!options.wall_clock) options.wall_clock = SystemSeconds;
  auto writer =
      std::unique_ptr<LedgerWriter>(new LedgerWriter(std::move(options), db, std::move(*id)));
  writer->last_window_ = *last;
  return writer;
}

LedgerWriter::LedgerWriter(Options options, sqlite3* db, std::string ledger_id)
    : options_(std::move(options)), db_(db), ledger_id_(std::move(ledger_id)) {
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
    PendingRow& pending =
        pending_[Key{bucket, item.tenant_id, record.model_name, record.model_version, status}];
    UsageRow& row = pending.usage;
    if (row.requests == 0) {
      row.bucket_start = bucket;
      row.replica = options_.replica;
      row.tenant_id = item.tenant_id;
      row.model_name = record.model_name;
      row.status = status;
      pending.model_version = record.model_version;
    }
    row.requests += 1;
    row.samples += item.samples;
    row.compute_seconds += item.compute_seconds;
    row.compute_ns += std::llround(item.compute_seconds * 1e9);
  }
}

void LedgerWriter::AfterRecorded(std::function<void()> send) {
  if (options_.durability == Durability::kAsync) {
    send();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    after_commit_.push_back(std::move(send));
  }
  cv_.notify_one();
}

absl::Status LedgerWriter::CommitPending() {
  std::vector<std::function<void()>> answers;
  absl::Status status = CommitRows(&answers);
  // Answers go out after the commit, outside the locks.
  for (std::function<void()>& send : answers) send();
  return status;
}

absl::Status LedgerWriter::CommitRows(std::vector<std::function<void()>>* answers) {
  // The window leaves pending_ and reaches the database under write_mu_, so
  // Usage() (which holds it too) sees each row in exactly one of the two.
  std::lock_guard<std::mutex> write_lock(write_mu_);
  std::map<Key, PendingRow> rows;
  std::vector<std::function<void()>> waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rows.swap(pending_);
    waiting.swap(after_commit_);
  }
  if (rows.empty()) {
    // The rows of every waiting answer were in an earlier commit, which has
    // finished (commits are serialized by write_mu_).
    *answers = std::move(waiting);
    return absl::OkStatus();
  }
  auto start = std::chrono::steady_clock::now();
  const int64_t window = last_window_ + 1;
  absl::Status status = Exec(db_, "BEGIN IMMEDIATE;");
  if (status.ok()) {
    Statement upsert(db_, kUpsert);
    Statement outbox(db_, kInsertOutbox);
    if (!upsert.ok() || !outbox.ok()) status = SqlError(db_, "ledger: prepare");
    const int64_t now_ms = SystemMillis();
    for (auto it = rows.begin(); status.ok() && it != rows.end(); ++it) {
      const UsageRow& r = it->second.usage;
      upsert.Bind(1, r.bucket_start);
      upsert.Bind(2, r.replica);
      upsert.Bind(3, r.tenant_id);
      upsert.Bind(4, r.model_name);
      upsert.Bind(5, r.status);
      upsert.Bind(6, r.requests);
      upsert.Bind(7, r.samples);
      sqlite3_bind_double(upsert.get(), 8, r.compute_seconds);
      upsert.Bind(9, r.compute_ns);
      status = upsert.Run("ledger: insert");
      if (!status.ok() || !options_.outbox) continue;
      outbox.Bind(1, window);
      outbox.Bind(2, now_ms);
      outbox.Bind(3, r.bucket_start);
      outbox.Bind(4, r.tenant_id);
      outbox.Bind(5, r.model_name);
      outbox.Bind(6, it->second.model_version);
      outbox.Bind(7, r.status);
      outbox.Bind(8, r.requests);
      outbox.Bind(9, r.samples);
      outbox.Bind(10, r.compute_ns);
      status = outbox.Run("ledger: outbox insert");
    }
  }
  if (status.ok() && options_.outbox) status = SetMeta(db_, "last_window", window);
  if (status.ok()) status = Exec(db_, "COMMIT;");
  if (!status.ok()) {
    Exec(db_, "ROLLBACK;").IgnoreError();
    if (error_counter_) error_counter_->Increment();
    // Keep the rows: they go out with the next window, and their answers
    // wait with them.
    std::lock_guard<std::mutex> lock(mu_);
    waiting.insert(waiting.end(), std::make_move_iterator(after_commit_.begin()),
                   std::make_move_iterator(after_commit_.end()));
    after_commit_ = std::move(waiting);
    for (auto& [key, row] : rows) {
      PendingRow& dst = pending_[key];
      if (dst.usage.requests == 0) {
        dst = row;
      } else {
        dst.usage.requests += row.usage.requests;
        dst.usage.samples += row.usage.samples;
        dst.usage.compute_seconds += row.usage.compute_seconds;
        dst.usage.compute_ns += row.usage.compute_ns;
      }
    }
    return status;
  }
  if (options_.outbox) last_window_ = window;
  if (commit_counter_) commit_counter_->Increment();
  if (commit_seconds_) {
    commit_seconds_->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++commits_;
  *answers = std::move(waiting);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<OutboxRow>> LedgerWriter::ReadOutbox(int64_t after_window,
                                                                int64_t max_rows) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  // Whole windows: find the last one that still fits.
  Statement windows(db_,
                    "SELECT window_id, COUNT(*) FROM outbox WHERE window_id > ?1 "
                    "GROUP BY window_id ORDER BY window_id LIMIT 10000;");
  if (!windows.ok()) return SqlError(db_, "ledger: read outbox");
  windows.Bind(1, after_window);
  int64_t upto = after_window;
  int64_t rows = 0;
  while (sqlite3_step(windows.get()) == SQLITE_ROW) {
    int64_t n = sqlite3_column_int64(windows.get(), 1);
    if (rows > 0 && rows + n > max_rows) break;
    upto = sqlite3_column_int64(windows.get(), 0);
    rows += n;
  }
  std::vector<OutboxRow> out;
  if (upto == after_window) return out;
  Statement read(db_,
                 "SELECT window_id, committed_at, bucket_start, tenant_id, model_name, "
                 "model_version, status, requests, samples, compute_ns FROM outbox "
                 "WHERE window_id > ?1 AND window_id <= ?2 ORDER BY window_id;");
  if (!read.ok()) return SqlError(db_, "ledger: read outbox");
  read.Bind(1, after_window);
  read.Bind(2, upto);
  out.reserve(rows);
  while (sqlite3_step(read.get()) == SQLITE_ROW) {
    sqlite3_stmt* st = read.get();
    OutboxRow r;
    r.window = sqlite3_column_int64(st, 0);
    r.committed_at = sqlite3_column_int64(st, 1);
    r.bucket_start = sqlite3_column_int64(st, 2);
    r.tenant_id = read.Text(3);
    r.model_name = read.Text(4);
    r.model_version = read.Text(5);
    r.status = read.Text(6);
    r.requests = sqlite3_column_int64(st, 7);
    r.samples = sqlite3_column_int64(st, 8);
    r.compute_ns = sqlite3_column_int64(st, 9);
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status LedgerWriter::AckOutbox(int64_t window) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE;"));
  Statement drop(db_, "DELETE FROM outbox WHERE window_id <= ?1;");
  absl::Status status = drop.ok() ? absl::OkStatus() : SqlError(db_, "ledger: ack");
  if (status.ok()) {
    drop.Bind(1, window);
    status = drop.Run("ledger: ack");
  }
  absl::StatusOr<int64_t> acked = MetaInt(db_, "acked_window", -1);
  if (status.ok()) status = acked.status();
  if (status.ok()) status = SetMeta(db_, "acked_window", std::max(*acked, window));
  if (status.ok()) status = Exec(db_, "COMMIT;");
  if (!status.ok()) Exec(db_, "ROLLBACK;").IgnoreError();
  return status;
}

absl::StatusOr<int64_t> LedgerWriter::AckedWindow() {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  return MetaInt(db_, "acked_window", -1);
}

absl::StatusOr<LedgerWriter::OutboxState> LedgerWriter::Outbox() {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  OutboxState state;
  state.last_window = options_.outbox ? last_window_ : -1;
  ASSIGN_OR_RETURN(state.acked_window, MetaInt(db_, "acked_window", -1));
  Statement oldest(db_, "SELECT MIN(committed_at) FROM outbox;");
  if (!oldest.ok()) return SqlError(db_, "ledger: read outbox");
  if (sqlite3_step(oldest.get()) == SQLITE_ROW) {
    state.oldest_unacked_ms = sqlite3_column_int64(oldest.get(), 0);
  }
  return state;
}

void LedgerWriter::Run() {
  pthread_setname_np(pthread_self(), "fs-ledger");
  std::unique_lock<std::mutex> lock(mu_);
  bool failing = false;
  const bool sync = options_.durability == Durability::kReplyAfterCommit;
  while (!stopping_) {
    if (sync) {
      // Commit as soon as an answer waits: batches that arrive during a
      // commit go together in the next one (group commit). While commits
      // fail, retry at the commit interval rather than spinning.
      cv_.wait_for(lock, options_.commit_interval,
                   [this, failing] { return stopping_ || (!after_commit_.empty() && !failing); });
    } else {
      cv_.wait_for(lock, options_.commit_interval, [this] { return stopping_; });
    }
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
  for (const auto& [key, pending] : pending_) {
    const UsageRow& r = pending.usage;
    if (r.bucket_start < query.from || r.bucket_start >= query.to) continue;
    if (!query.tenant_id.empty() && r.tenant_id != query.tenant_id) continue;
    UsageRow& row = sums[{r.tenant_id, r.model_name, r.status}];
    row.tenant_id = r.tenant_id;
    row.model_name = r.model_name;
    row.status = r.status;
    row.requests += r.requests;
    row.samples += r.samples;
    row.compute_seconds += r.compute_seconds;
    row.compute_ns += r.compute_ns;
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

namespace {

// Opens each ledger file read-only, once even when named twice (by any
// path), and runs `read` on it with its path. Stops at the first error.
absl::Status ForEachLedger(const std::vector<std::string>& paths,
                           const std::function<absl::Status(sqlite3*, const std::string&)>& read) {
  std::set<std::string> seen;
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
    absl::Status s = read(db, path);
    sqlite3_close(db);
    RETURN_IF_ERROR(s);
  }
  return absl::OkStatus();
}

// Nanoseconds of a row: compute_ns, or from compute_seconds in rows (and
// ledgers) from before that column.
std::string ComputeNsColumn(sqlite3* db) {
  return HasColumn(db, "usage", "compute_ns")
             ? "CASE WHEN compute_ns > 0 THEN compute_ns ELSE "
               "CAST(round(compute_seconds * 1e9) AS INTEGER) END"
             : "CAST(round(compute_seconds * 1e9) AS INTEGER)";
}

}  // namespace

absl::StatusOr<std::vector<UsageRow>> ReadUsage(const std::vector<std::string>& paths,
                                                const UsageQuery& query) {
  std::map<std::tuple<std::string, std::string, std::string>, UsageRow> sums;
  std::map<std::string, std::string> replica_source;  // replica -> the file it came from
  RETURN_IF_ERROR(ForEachLedger(paths, [&](sqlite3* db, const std::string& path) {
    const std::string sql = absl::StrCat(
        "SELECT tenant_id, model_name, status, SUM(requests), SUM(samples), "
        "SUM(compute_seconds), replica, SUM(", ComputeNsColumn(db),
        ") FROM usage WHERE bucket_start >= ?1 AND bucket_start < ?2 "
        "AND (?3 = '' OR tenant_id = ?3) GROUP BY tenant_id, model_name, status, replica");
    Statement st(db, sql.c_str());
    if (!st.ok()) return SqlError(db, absl::StrCat(path, ": not a fairserve usage ledger"));
    st.Bind(1, query.from);
    st.Bind(2, query.to);
    st.Bind(3, query.tenant_id);
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      std::string replica = st.Text(6);
      auto [it, fresh] = replica_source.emplace(replica, path);
      if (!fresh && it->second != path) {
        return absl::InvalidArgumentError(absl::StrCat(
            "replica '", replica, "' has rows in both ", it->second, " and ", path,
            "; one is a copy of the other, and summing both would count its usage twice"));
      }
      UsageRow& row = sums[{st.Text(0), st.Text(1), st.Text(2)}];
      row.tenant_id = st.Text(0);
      row.model_name = st.Text(1);
      row.status = st.Text(2);
      row.requests += sqlite3_column_int64(st.get(), 3);
      row.samples += sqlite3_column_int64(st.get(), 4);
      row.compute_seconds += sqlite3_column_double(st.get(), 5);
      row.compute_ns += sqlite3_column_int64(st.get(), 7);
    }
    return absl::OkStatus();
  }));
  std::vector<UsageRow> out;
  for (auto& [key, row] : sums) out.push_back(std::move(row));
  return out;
}

absl::StatusOr<std::vector<DailyUsageRow>> ReadDailyUsage(const std::vector<std::string>& paths,
                                                          int64_t from, int64_t to) {
  // ReadUsage's checks (a replica in two files) first, so a merge that
  // would double count is refused.
  RETURN_IF_ERROR(ReadUsage(paths, UsageQuery{"", from, to}).status());
  std::map<std::tuple<std::string, std::string, std::string>, DailyUsageRow> sums;
  RETURN_IF_ERROR(ForEachLedger(paths, [&](sqlite3* db, const std::string& path) {
    const std::string sql = absl::StrCat(
        "SELECT strftime('%Y-%m-%d', bucket_start, 'unixepoch'), tenant_id, model_name, "
        "SUM(requests), SUM(CASE WHEN status <> 'ok' THEN requests ELSE 0 END), SUM(samples), "
        "SUM(", ComputeNsColumn(db), ") FROM usage WHERE bucket_start >= ?1 AND bucket_start < ?2 "
        "GROUP BY 1, 2, 3");
    Statement st(db, sql.c_str());
    if (!st.ok()) return SqlError(db, absl::StrCat(path, ": not a fairserve usage ledger"));
    st.Bind(1, from);
    st.Bind(2, to);
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      DailyUsageRow& d = sums[{st.Text(0), st.Text(1), st.Text(2)}];
      d.day = st.Text(0);
      d.tenant_id = st.Text(1);
      d.model_name = st.Text(2);
      d.requests += sqlite3_column_int64(st.get(), 3);
      d.failed_requests += sqlite3_column_int64(st.get(), 4);
      d.samples += sqlite3_column_int64(st.get(), 5);
      d.compute_ns += sqlite3_column_int64(st.get(), 6);
    }
    return absl::OkStatus();
  }));
  std::vector<DailyUsageRow> out;
  for (auto& [key, row] : sums) out.push_back(std::move(row));
  return out;
}

}  // namespace fairserve
