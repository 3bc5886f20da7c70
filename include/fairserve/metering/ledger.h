#ifndef FAIRSERVE_METERING_LEDGER_H_
#define FAIRSERVE_METERING_LEDGER_H_

// The usage ledger: the billing source of truth. Every completed batch's
// per-request usage is aggregated in memory into rows of
// (minute bucket, replica, tenant, model, status) and appended to SQLite
// (WAL, synchronous=FULL) by a background thread in one transaction at most
// every commit interval (100 ms). A crash loses at most the rows of the last
// window (with Durability::kReplyAfterCommit, only rows whose answers had
// not left yet); a row is never counted twice because each window is one
// atomic transaction that adds to the stored totals.
//
// With a usage sink (ledger.sink), each commit also appends its rows, per
// model version, to an outbox under the window's sequence number, in the same
// transaction. The sink's shipper reads the outbox in window order, ships it,
// then acknowledges; acknowledged windows leave the outbox. Window numbers
// and the ledger's random id are kept in the file, so they survive restarts:
// (ledger id, window) names a window's rows forever, which is what makes a
// re-sent window a no-op downstream.

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include <functional>
#include "absl/status/statusor.h"
#include "fairserve/metering/metrics.h"
#include "fairserve/scheduling/request.h"

struct sqlite3;

namespace fairserve {

struct UsageQuery {
  std::string tenant_id;  // empty = all
  int64_t from = 0;       // Unix seconds, inclusive
  int64_t to = INT64_MAX; // Unix seconds, exclusive
};

// One aggregated ledger row.
struct UsageRow {
  int64_t bucket_start = 0;  // Unix seconds, start of the minute
  std::string replica;
  std::string tenant_id;
  std::string model_name;
  std::string status;  // "ok", "invalid_argument", ...
  int64_t requests = 0;
  int64_t samples = 0;
  double compute_seconds = 0;
  // The same time in whole nanoseconds, summed as integers (each request's
  // time rounded once), so totals compare exactly across ledgers and the
  // fleet database. Zero in rows written before the column existed.
  int64_t compute_ns = 0;
};

// One row of a committed window, as the outbox keeps it for a usage sink.
struct OutboxRow {
  int64_t window = 0;        // the commit's sequence number in this ledger
  int64_t committed_at = 0;  // Unix milliseconds of the commit
  int64_t bucket_start = 0;
  std::string tenant_id;
  std::string model_name;
  std::string model_version;
  std::string status;
  int64_t requests = 0;
  int64_t samples = 0;
  int64_t compute_ns = 0;
};

// Where usage is read from for invoices: this replica's ledger, or the
// fleet's database when a sink is configured.
class UsageSource {
 public:
  virtual ~UsageSource() = default;
  // Sums per (tenant, model, status) over the query window.
  virtual absl::StatusOr<std::vector<UsageRow>> Usage(const UsageQuery& query) = 0;
};

// Where the wall-clock time of a batch comes from (injected for tests).
using WallClock = std::function<int64_t()>;  // Unix seconds

// When a batch's answers may leave (ledger.durability).
enum class Durability {
  // At once: the batch is in the ledger's memory; a kill -9 loses at most
  // the open window (commit_interval) of answered usage.
  kAsync,
  // After the group commit holding the batch is on disk: no answered
  // request is ever unbilled. Commits run back to back while batches wait,
  // so each waits for at most about one commit (an fsync) plus the one in
  // progress.
  kReplyAfterCommit,
};

class LedgerWriter final : public BatchObserver, public UsageSource, public ReplyGate {
 public:
  struct Options {
    std::string path;          // SQLite file, created with its schema if missing
    std::string replica = "";  // tags rows so several replicas' ledgers merge
    std::chrono::milliseconds commit_interval{100};
    WallClock wall_clock;      // default: system clock
    Registry* registry = nullptr;  // optional: ledger metrics
    // Keep an outbox for a usage sink. The first open with it set also puts
    // everything the ledger already holds into the outbox, as window 0, so
    // a sink enabled mid-month still receives the whole history once.
    bool outbox = false;
    Durability durability = Durability::kAsync;
  };

  static absl::StatusOr<std::unique_ptr<LedgerWriter>> Open(Options options);
  ~LedgerWriter() override;

  // BatchObserver: adds the batch's items to the pending window. Quick: a
  // mutex and a map update; no I/O.
  void OnBatch(const BatchRecord& record) override;

  // ReplyGate. kAsync: runs `send` at once, on the caller's thread.
  // kReplyAfterCommit: runs it on the writer thread, right after the first
  // commit that starts after this call (which holds, or follows, the
  // caller's batch) is on disk. While commits fail, answers wait with their
  // rows; they go out with the first commit that succeeds.
  void AfterRecorded(std::function<void()> send) override;

  // Commits everything pending now and stops the writer thread (SIGTERM).
  void Close();
  // Commits everything pending now (tests, shutdown).
  absl::Status Flush();

  // This replica's usage over `query`: the committed rows plus the open
  // commit window, each row counted exactly once, without forcing a commit
  // (no fsync per read). Summed per (tenant, model, status). The one read
  // used by the admin usage RPCs and the status page. Thread-safe; holds
  // off the next commit for the duration of one indexed read.
  absl::StatusOr<std::vector<UsageRow>> Usage(const UsageQuery& query) override;

  int64_t commits() const;

  // This ledger file's random id (hex), made when the file was created.
  const std::string& ledger_id() const { return ledger_id_; }
  const std::string& replica() const { return options_.replica; }

  // The outbox (Options::outbox). Called by the sink's shipper thread; each
  // holds off the next commit for one indexed read or write.
  //
  // Rows of the windows after `after_window`, in window order: whole
  // windows, as many as fit in `max_rows` but at least one.
  absl::StatusOr<std::vector<OutboxRow>> ReadOutbox(int64_t after_window, int64_t max_rows);
  // Records that every window up to `window` is shipped and drops them.
  absl::Status AckOutbox(int64_t window);
  // The last acknowledged window (-1: none yet).
  absl::StatusOr<int64_t> AckedWindow();
  struct OutboxState {
    int64_t last_window = -1;       // the newest committed window
    int64_t acked_window = -1;      // the newest shipped one
    int64_t oldest_unacked_ms = 0;  // commit time of the oldest unshipped row; 0: none
  };
  absl::StatusOr<OutboxState> Outbox();

 private:
  // bucket, tenant, model, version, status
  using Key = std::tuple<int64_t, std::string, std::string, std::string, std::string>;
  struct PendingRow {
    UsageRow usage;
    std::string model_version;
  };
  LedgerWriter(Options options, sqlite3* db, std::string ledger_id);
  void Run();

  const Options options_;
  sqlite3* db_;
  // Takes pending_ and writes it to the database as one step; serializes
  // commits (writer thread, Flush, Close) and Usage().
  absl::Status CommitPending();
  // The commit itself; `answers` receives the answers it releases.
  absl::Status CommitRows(std::vector<std::function<void()>>* answers);
  std::mutex write_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, PendingRow> pending_ ABSL_GUARDED_BY(mu_);
  // kReplyAfterCommit: answers waiting for the next commit.
  std::vector<std::function<void()>> after_commit_ ABSL_GUARDED_BY(mu_);
  int64_t last_window_ = 0;  // the newest committed window; by write_mu_
  const std::string ledger_id_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
  Counter* commit_counter_ = nullptr;
  Counter* error_counter_ = nullptr;
  Histogram* commit_seconds_ = nullptr;
};

// Reads ledgers back (fairctl, the admin service). Several files (one per
// replica) are merged; rows are summed, never double counted, because each
// replica writes its own rows.

// Sums per (tenant, model, status) over the query window.
absl::StatusOr<std::vector<UsageRow>> ReadUsage(const std::vector<std::string>& ledger_paths,
                                                const UsageQuery& query);

// One row of the finance export: a (day, tenant, model) total.
struct DailyUsageRow {
  std::string day;  // YYYY-MM-DD, UTC
  std::string tenant_id;
  std::string model_name;
  int64_t requests = 0;
  int64_t failed_requests = 0;  // status other than ok
  int64_t samples = 0;
  int64_t compute_ns = 0;
};

// Per (UTC day, tenant, model) over [from, to), merged over the files like
// ReadUsage.
absl::StatusOr<std::vector<DailyUsageRow>> ReadDailyUsage(const std::vector<std::string>& paths,
                                                          int64_t from, int64_t to);

// The ledger file inside a data directory.
std::string LedgerPath(const std::string& data_dir);

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_LEDGER_H_
