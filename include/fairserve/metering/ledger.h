#ifndef FAIRSERVE_METERING_LEDGER_H_
#define FAIRSERVE_METERING_LEDGER_H_

// The usage ledger: the billing source of truth. Every completed batch's
// per-request usage is aggregated in memory into rows of
// (minute bucket, replica, tenant, model, status) and appended to SQLite
// (WAL, synchronous=FULL) by a background thread in one transaction at most
// every commit interval (100 ms). A crash loses at most the rows of the last
// window; a row is never counted twice because each window is one atomic
// transaction that adds to the stored totals.

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
#include "absl/status/statusor.h"
#include "fairserve/metering/metrics.h"
#include "fairserve/scheduling/request.h"

struct sqlite3;

namespace fairserve {

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
};

struct UsageQuery {
  std::string tenant_id;  // empty = all
  int64_t from = 0;       // Unix seconds, inclusive
  int64_t to = INT64_MAX; // Unix seconds, exclusive
};

// Where the wall-clock time of a batch comes from (injected for tests).
using WallClock = std::function<int64_t()>;  // Unix seconds

class LedgerWriter final : public BatchObserver {
 public:
  struct Options {
    std::string path;          // SQLite file, created with its schema if missing
    std::string replica = "";  // tags rows so several replicas' ledgers merge
    std::chrono::milliseconds commit_interval{100};
    WallClock wall_clock;      // default: system clock
    Registry* registry = nullptr;  // optional: ledger metrics
  };

  static absl::StatusOr<std::unique_ptr<LedgerWriter>> Open(Options options);
  ~LedgerWriter() override;

  // BatchObserver: adds the batch's items to the pending window. Quick: a
  // mutex and a map update; no I/O.
  void OnBatch(const BatchRecord& record) override;

  // Commits everything pending now and stops the writer thread (SIGTERM).
  void Close();
  // Commits everything pending now (tests, shutdown).
  absl::Status Flush();

  // This replica's usage over `query`: the committed rows plus the open
  // commit window, each row counted exactly once, without forcing a commit
  // (no fsync per read). Summed per (tenant, model, status). The one read
  // used by the admin usage RPCs and the status page. Thread-safe; holds
  // off the next commit for the duration of one indexed read.
  absl::StatusOr<std::vector<UsageRow>> Usage(const UsageQuery& query);

  int64_t commits() const;

 private:
  using Key = std::tuple<int64_t, std::string, std::string, std::string>;  // bucket, tenant, model, status
  LedgerWriter(Options options, sqlite3* db);
  void Run();

  const Options options_;
  sqlite3* db_;
  // Takes pending_ and writes it to the database as one step; serializes
  // commits (writer thread, Flush, Close) and Usage().
  absl::Status CommitPending();
  std::mutex write_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, UsageRow> pending_ ABSL_GUARDED_BY(mu_);
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

// The ledger file inside a data directory.
std::string LedgerPath(const std::string& data_dir);

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_LEDGER_H_
