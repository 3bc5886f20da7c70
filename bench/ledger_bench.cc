// What billing costs, against a real PostgreSQL server on loopback:
// 1. rows per second one replica ships to the fleet database (UsageShipper);
// 2. the daemon's CPU per served add_one request with the sink on vs off
//    (target: the sink adds <= 2%);
// 3. the latency reply_after_commit adds over async on add_one and
//    mlp_large (p50/p99, sequential and 8 outstanding).
// Every comparison is interleaved in one run, `--reps` times; medians and
// ranges are printed.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>
#include <thread>

#include "bench_util.h"
#include "fairserve/metering/postgres_usage.h"
#include "testing/postgres_server.h"

namespace fs = fairserve::bench;
using fairserve::Durability;
using fairserve::LedgerWriter;
using fairserve::UsageShipper;

namespace {

// Process CPU seconds (user + system) of `pid`.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds of `pid`'s threads named `name` (/proc/<pid>/task/*/comm), from
// schedstat's nanosecond run time (stat's ticks are 10 ms, too coarse here).
double ThreadCpuSeconds(pid_t pid, const std::string& name) {
  double total = 0;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string n;
    std::getline(comm, n);
    if (n != name) continue;
    std::ifstream in(task.path() / "schedstat");
    double ns = 0;
    in >> ns;
    total += ns / 1e9;
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  const fs::BenchFlags flags = fs::ParseBenchFlags(argc, argv, {});
  const std::string& models = flags.models;
  const int reps = flags.reps, calls = flags.calls;
  std::string bin = std::filesystem::path(argv[0]).parent_path() / "fairserve";
  fairserve::testing_util::PostgresServer pg;
  if (!pg.started()) {
    std::fprintf(stderr, "PostgreSQL did not start: %s\n", pg.error().c_str());
    return 1;
  }
  fairserve::PostgresOptions db;
  db.dsn = pg.dsn();
  if (auto m = fairserve::MigratePostgres(db); !m.ok()) {
    std::fprintf(stderr, "%s\n", std::string(m.status().message()).c_str());
    return 1;
  }
  char tmpl[] = "/tmp/fairserve-ledger-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);

  // 1. Shipping: 200 windows of 50 rows each, batches of 5000 rows.
  std::vector<double> rows_per_s;
  for (int r = 0; r < reps; ++r) {
    LedgerWriter::Options o;
    o.path = dir + "/ship-" + std::to_string(r) + ".sqlite";
    o.replica = "bench-" + std::to_string(r);
    o.commit_interval = std::chrono::hours(1);
    o.outbox = true;
    auto ledger = LedgerWriter::Open(o);
    if (!ledger.ok()) return 1;
    for (int w = 0; w < 200; ++w) {
      for (int t = 0; t < 50; ++t) {
        fairserve::BatchRecord rec;
        rec.model_name = "model-" + std::to_string(t % 5);
        rec.model_version = "1";
        fairserve::BatchItem item;
        item.tenant_id = "tenant-" + std::to_string(t / 5);
        item.samples = 1;
        item.compute_seconds = 0.001;
        rec.items.push_back(item);
        (*ledger)->OnBatch(rec);
      }
      if (!(*ledger)->Flush().ok()) return 1;
    }
    UsageShipper::Options so;
    so.db = db;
    UsageShipper shipper(**ledger, so);
    auto t0 = fs::Clock::now();
    if (absl::Status s = shipper.ShipAll(); !s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
      return 1;
    }
    double seconds = std::chrono::duration<double>(fs::Clock::now() - t0).count();
    rows_per_s.push_back(static_cast<double>(shipper.rows_shipped()) / seconds);
  }
  std::printf("shipping 10000 rows (200 windows) in batches of 5000, %d runs\n", reps);
  fs::ReportRange("  rows/s one replica ships", rows_per_s, "rows/s");

  // 2 and 3: daemons, interleaved.
  const std::string sink = "ledger: {sink: {type: postgres, dsn: \"" + pg.dsn() +
                           "\", flush_interval_ms: 1000}}\n";
  auto start = [&](const std::string& name, const std::string& extra) {
    std::filesystem::create_directories(dir + "/" + name);
    return fs::StartDaemon(bin, dir + "/" + name, fs::BenchConfig(models, "", extra));
  };
  fs::Daemon off = start("sink-off", "");
  fs::Daemon on = start("sink-on", sink);
  fs::Daemon sync = start("sync", "ledger: {durability: reply_after_commit}\n");
  if (off.port <= 0 || on.port <= 0 || sync.port <= 0) return 1;
  const int cpu_calls = calls * 20;
  std::vector<double> cpu_off, cpu_on, cpu_ratio, shipper_us, ledger_off_us, ledger_on_us,
      added_pct;
  struct Latency {
    std::vector<fs::Stats> async_seq, sync_seq, async_8, sync_8, async_mlp, sync_mlp;
  } lat;
  for (int r = 0; r < reps; ++r) {
    for (auto [d, out, ledger] : {std::tuple{&off, &cpu_off, &ledger_off_us},
                                  std::tuple{&on, &cpu_on, &ledger_on_us}}) {
      auto add_one = [port = d->port] { return fs::Checked(fs::AddOneCaller(port)); };
      fs::TimeConcurrent(add_one, 8, calls);  // warm-up
      double before = CpuSeconds(d->pid);
      double ledger_before = ThreadCpuSeconds(d->pid, "fs-ledger");
      double ship_before = ThreadCpuSeconds(d->pid, "fs-usage-sink");
      if (fs::TimeConcurrent(add_one, 8, cpu_calls).size() != static_cast<size_t>(cpu_calls)) {
        return 1;
      }
      // Let the shipper ship what this run committed.
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      out->push_back((CpuSeconds(d->pid) - before) / cpu_calls * 1e6);
      ledger->push_back((ThreadCpuSeconds(d->pid, "fs-ledger") - ledger_before) / cpu_calls * 1e6);
      if (d == &on) {
        shipper_us.push_back((ThreadCpuSeconds(d->pid, "fs-usage-sink") - ship_before) /
                             cpu_calls * 1e6);
      }
    }
    cpu_ratio.push_back(cpu_on.back() / cpu_off.back());
    // What the sink adds: the shipper thread, plus the ledger thread's extra
    // work (outbox rows), against the whole CPU of a request without it.
    added_pct.push_back(100.0 * (shipper_us.back() + ledger_on_us.back() - ledger_off_us.back()) /
                        cpu_off.back());

    lat.async_seq.push_back(fs::Summarize(fs::TimeCalls(fs::AddOneCaller(off.port), calls)));
    lat.sync_seq.push_back(fs::Summarize(fs::TimeCalls(fs::AddOneCaller(sync.port), calls)));
    lat.async_8.push_back(fs::Summarize(
        fs::TimeConcurrent([&] { return fs::Checked(fs::AddOneCaller(off.port)); }, 8, calls * 4)));
    lat.sync_8.push_back(fs::Summarize(
        fs::TimeConcurrent([&] { return fs::Checked(fs::AddOneCaller(sync.port)); }, 8, calls * 4)));
    lat.async_mlp.push_back(fs::Summarize(fs::TimeCalls(fs::ModelCaller(off.port, "mlp_large", 1024), calls / 4)));
    lat.sync_mlp.push_back(fs::Summarize(fs::TimeCalls(fs::ModelCaller(sync.port, "mlp_large", 1024), calls / 4)));
  }
  fs::StopDaemon(off);
  fs::StopDaemon(on);
  fs::StopDaemon(sync);
  std::filesystem::remove_all(dir);

  std::printf("daemon CPU per served add_one request, 8 closed-loop clients, %d calls x %d runs\n",
              cpu_calls, reps);
  fs::ReportRange("  sink off", cpu_off, "us");
  fs::ReportRange("  sink on (PostgreSQL)", cpu_on, "us");
  fs::ReportRange("  on / off (whole process; noisy)", cpu_ratio, "x");
  fs::ReportRange("  usage-sink thread per request", shipper_us, "us");
  fs::ReportRange("  ledger thread per request, sink off", ledger_off_us, "us");
  fs::ReportRange("  ledger thread per request, sink on (outbox rows)", ledger_on_us, "us");
  fs::ReportRange("  added by the sink (sink thread + extra ledger work) / request CPU", added_pct, "%");
  std::printf("  target: <= 2%%\n");
  std::printf("latency, ledger.durability async vs reply_after_commit (%d runs)\n", reps);
  fs::Report("  add_one sequential, async", lat.async_seq);
  fs::Report("  add_one sequential, reply_after_commit", lat.sync_seq);
  fs::Report("  add_one 8 outstanding, async", lat.async_8);
  fs::Report("  add_one 8 outstanding, reply_after_commit", lat.sync_8);
  fs::Report("  mlp_large 1 row sequential, async", lat.async_mlp);
  fs::Report("  mlp_large 1 row sequential, reply_after_commit", lat.sync_mlp);
  return 0;
}
