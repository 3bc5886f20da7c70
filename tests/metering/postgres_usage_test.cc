// The fleet usage sink against a real PostgreSQL server on loopback.

#include "fairserve/metering/postgres_usage.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>

#include "metering/batch_records.h"
#include "testing/postgres_server.h"
#include "testing/test_dir.h"

namespace fairserve {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing_util::PostgresServer;

BatchRecord Batch(const std::string& model, const std::string& version,
                  std::vector<std::tuple<std::string, int64_t, double, absl::StatusCode>> items) {
  return testing_util::Batch(model, std::move(items), version);
}

// (tenant, model, status) -> (requests, samples, compute_ns)
using Totals = std::map<std::tuple<std::string, std::string, std::string>,
                        std::tuple<int64_t, int64_t, int64_t>>;
Totals Sum(const std::vector<UsageRow>& rows) {
  Totals t;
  for (const UsageRow& r : rows) {
    auto& [requests, samples, ns] = t[{r.tenant_id, r.model_name, r.status}];
    requests += r.requests;
    samples += r.samples;
    ns += r.compute_ns;
  }
  return t;
}

class PostgresUsageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new PostgresServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(server_->started()) << server_->error();
    // Each test has its own tables.
    std::random_device rd;
    db_.dsn = server_->dsn();
    db_.table_prefix = "t" + std::to_string(rd() % 1000000) + "_";
    dir_ = testing_util::MakeTestDir("pg");
  }
  void TearDown() override {
    testing_util::RemoveTestDir(dir_);
    if (!server_->started()) server_->Start();
  }

  std::unique_ptr<LedgerWriter> Open(const std::string& name, bool outbox = true) {
    LedgerWriter::Options o;
    o.path = (dir_ / name).string();
    o.replica = "replica-" + name;
    o.commit_interval = std::chrono::hours(1);  // commits only when the test says
    o.wall_clock = [this] { return now_; };
    o.outbox = outbox;
    auto w = LedgerWriter::Open(o);
    EXPECT_TRUE(w.ok()) << w.status();
    return std::move(*w);
  }
  UsageShipper::Options ShipperOptions() {
    UsageShipper::Options o;
    o.db = db_;
    o.batch_rows = 3;  // several batches per round
    return o;
  }
  void Migrate() {
    auto applied = MigratePostgres(db_);
    ASSERT_TRUE(applied.ok()) << applied.status();
  }
  // Three windows of usage in `w`, with awkward fractions of seconds.
  void Serve(LedgerWriter& w) {
    w.OnBatch(Batch("add_one", "1", {{"acme", 2, 0.000123456789, absl::StatusCode::kOk},
                                     {"globex", 1, 0.1, absl::StatusCode::kOk}}));
    ASSERT_TRUE(w.Flush().ok());
    w.OnBatch(Batch("add_one", "2", {{"acme", 1, 1.0 / 3, absl::StatusCode::kOk}}));
    w.OnBatch(Batch("mlp", "1", {{"acme", 4, 0.25, absl::StatusCode::kInvalidArgument}}));
    ASSERT_TRUE(w.Flush().ok());
    now_ += 60;  // the next minute
    w.OnBatch(Batch("mlp", "1", {{"globex", 8, 2.0 / 7, absl::StatusCode::kOk}}));
    ASSERT_TRUE(w.Flush().ok());
  }

  static PostgresServer* server_;
  PostgresOptions db_;
  fs::path dir_;
  int64_t now_ = 1'800'000'000;
};

PostgresServer* PostgresUsageTest::server_ = nullptr;

TEST_F(PostgresUsageTest, MigrationsApplyOnceAndReadsNeedThem) {
  PostgresUsage fleet(db_);
  auto before = fleet.Usage({});
  EXPECT_EQ(before.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(before.status().message()), HasSubstr("fairctl db migrate"));
  auto applied = MigratePostgres(db_);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_THAT(*applied, ElementsAre("001_usage.sql"));
  auto again = MigratePostgres(db_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->empty());
  EXPECT_TRUE(fleet.Usage({}).ok());
  EXPECT_EQ(server_->Query("SELECT COUNT(*) FROM " + db_.table_prefix + "schema_migrations"),
            "1");
}

TEST_F(PostgresUsageTest, BadPrefixIsRefusedBeforeAnySql) {
  db_.table_prefix = "x; DROP TABLE y; --";
  auto applied = MigratePostgres(db_);
  EXPECT_EQ(applied.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PostgresUsageTest, ShipsEveryWindowOnceToTheNanosecond) {
  Migrate();
  auto w = Open("a.sqlite");
  Serve(*w);
  UsageShipper shipper(*w, ShipperOptions());
  ASSERT_TRUE(shipper.ShipAll().ok());
  PostgresUsage fleet(db_);
  auto shipped = fleet.Usage({});
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  auto local = w->Usage({});
  ASSERT_TRUE(local.ok());
  EXPECT_EQ(Sum(*shipped), Sum(*local));
  EXPECT_EQ(std::get<2>(Sum(*shipped)[{"acme", "add_one", "ok"}]),
            123457 + 333333333);  // each request's time rounded once, then summed exactly
  // Versions are kept apart in the database.
  EXPECT_EQ(server_->Query("SELECT model_version, SUM(requests) FROM " + db_.table_prefix +
                           "usage WHERE model_name = 'add_one' AND tenant_id = 'acme' "
                           "GROUP BY 1 ORDER BY 1"),
            "1|1\n2|1");
  // Shipped windows leave the outbox; a second round ships nothing.
  auto state = w->Outbox();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->acked_window, state->last_window);
  EXPECT_EQ(state->oldest_unacked_ms, 0);
  int64_t rows = shipper.rows_shipped();
  ASSERT_TRUE(shipper.ShipAll().ok());
  EXPECT_EQ(shipper.rows_shipped(), rows);
  EXPECT_EQ(server_->Query("SELECT last_window FROM " + db_.table_prefix + "ledgers"),
            std::to_string(state->last_window));
}

// A crash after the database committed a batch but before the ledger
// recorded the acknowledgement: the same windows are sent again. Simulated
// with a copy of the ledger file taken before shipping.
TEST_F(PostgresUsageTest, WindowsSentAgainAfterALostAcknowledgementCountNothingTwice) {
  Migrate();
  {
    auto w = Open("a.sqlite");
    Serve(*w);
  }
  fs::copy_file(dir_ / "a.sqlite", dir_ / "copy.sqlite");
  PostgresUsage fleet(db_);
  Totals expected;
  {
    auto w = Open("a.sqlite");
    UsageShipper shipper(*w, ShipperOptions());
    ASSERT_TRUE(shipper.ShipAll().ok());
    expected = Sum(*w->Usage({}));
  }
  // The copy has the same ledger id and its windows unacknowledged. Its
  // shipper learns from the database where the ledger got to; to force a
  // real resend, that progress row is removed first.
  server_->Query("DELETE FROM " + db_.table_prefix + "ledgers");
  LedgerWriter::Options o;
  o.path = (dir_ / "copy.sqlite").string();
  o.replica = "replica-a.sqlite";
  o.commit_interval = std::chrono::hours(1);
  o.outbox = true;
  auto copy = LedgerWriter::Open(o);
  ASSERT_TRUE(copy.ok()) << copy.status();
  UsageShipper again(**copy, ShipperOptions());
  ASSERT_TRUE(again.ShipAll().ok());
  EXPECT_GT(again.rows_shipped(), 0);  // really sent again
  auto shipped = fleet.Usage({});
  ASSERT_TRUE(shipped.ok());
  EXPECT_EQ(Sum(*shipped), expected);
}

TEST_F(PostgresUsageTest, DatabaseDownLosesNothingAndTheBacklogDrains) {
  Migrate();
  Registry registry;
  auto w = Open("a.sqlite");
  UsageShipper::Options options = ShipperOptions();
  options.registry = &registry;
  UsageShipper shipper(*w, options);
  w->OnBatch(Batch("add_one", "1", {{"acme", 1, 0.5, absl::StatusCode::kOk}}));
  ASSERT_TRUE(w->Flush().ok());
  ASSERT_TRUE(shipper.ShipAll().ok());

  server_->Stop();
  Serve(*w);
  absl::Status down = shipper.ShipAll();
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable);
  auto state = w->Outbox();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->last_window - state->acked_window, 3);
  std::string text = SerializeText(registry.Collect());
  EXPECT_THAT(text, HasSubstr("fairserve_usage_sink_backlog_windows 3"));
  EXPECT_THAT(text, HasSubstr("fairserve_usage_sink_up 0"));

  ASSERT_TRUE(server_->Start()) << server_->error();
  ASSERT_TRUE(shipper.ShipAll().ok());
  PostgresUsage fleet(db_);
  auto shipped = fleet.Usage({});
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  EXPECT_EQ(Sum(*shipped), Sum(*w->Usage({})));
  text = SerializeText(registry.Collect());
  EXPECT_THAT(text, HasSubstr("fairserve_usage_sink_backlog_windows 0"));
  EXPECT_THAT(text, HasSubstr("fairserve_usage_sink_up 1"));
}

TEST_F(PostgresUsageTest, HistoryBeforeTheSinkShipsOnce) {
  Migrate();
  {
    auto w = Open("a.sqlite", /*outbox=*/false);
    Serve(*w);
  }
  Totals expected;
  {
    auto w = Open("a.sqlite");  // the sink is configured now: history is window 0
    w->OnBatch(Batch("add_one", "1", {{"acme", 1, 0.5, absl::StatusCode::kOk}}));
    ASSERT_TRUE(w->Flush().ok());
    UsageShipper shipper(*w, ShipperOptions());
    ASSERT_TRUE(shipper.ShipAll().ok());
    expected = Sum(*w->Usage({}));
  }
  {
    auto w = Open("a.sqlite");  // opened again: no second backfill
    UsageShipper shipper(*w, ShipperOptions());
    ASSERT_TRUE(shipper.ShipAll().ok());
    EXPECT_EQ(shipper.rows_shipped(), 0);
  }
  PostgresUsage fleet(db_);
  EXPECT_EQ(Sum(*fleet.Usage({})), expected);
}

TEST_F(PostgresUsageTest, TurningTheSinkOffKeepsRecordingSoNothingIsMissedLater) {
  Migrate();
  {
    auto w = Open("a.sqlite");
    UsageShipper shipper(*w, ShipperOptions());
    w->OnBatch(Batch("add_one", "1", {{"acme", 1, 0.5, absl::StatusCode::kOk}}));
    ASSERT_TRUE(w->Flush().ok());
    ASSERT_TRUE(shipper.ShipAll().ok());
  }
  {
    auto w = Open("a.sqlite", /*outbox=*/false);  // sink removed from the config
    Serve(*w);
  }
  auto w = Open("a.sqlite");  // and configured again
  UsageShipper shipper(*w, ShipperOptions());
  ASSERT_TRUE(shipper.ShipAll().ok());
  PostgresUsage fleet(db_);
  EXPECT_EQ(Sum(*fleet.Usage({})), Sum(*w->Usage({})));
}

TEST_F(PostgresUsageTest, TwoLedgersSumAndTheDailyExportSplitsByDay) {
  Migrate();
  auto a = Open("a.sqlite");
  auto b = Open("b.sqlite");
  Serve(*a);
  now_ += 86400;  // b's usage is a day later
  Serve(*b);
  UsageShipper sa(*a, ShipperOptions());
  UsageShipper sb(*b, ShipperOptions());
  ASSERT_TRUE(sa.ShipAll().ok());
  ASSERT_TRUE(sb.ShipAll().ok());
  PostgresUsage fleet(db_);
  std::vector<UsageRow> both = *a->Usage({});
  std::vector<UsageRow> of_b = *b->Usage({});
  both.insert(both.end(), of_b.begin(), of_b.end());
  EXPECT_EQ(Sum(*fleet.Usage({})), Sum(both));
  UsageQuery acme;
  acme.tenant_id = "acme";
  auto only_acme = fleet.Usage(acme);
  ASSERT_TRUE(only_acme.ok());
  EXPECT_FALSE(only_acme->empty());
  for (const UsageRow& r : *only_acme) EXPECT_EQ(r.tenant_id, "acme");

  auto daily = fleet.Daily(0, INT64_MAX);
  ASSERT_TRUE(daily.ok()) << daily.status();
  std::map<std::string, int64_t> requests_per_day;
  int64_t failed = 0;
  for (const DailyUsageRow& d : *daily) {
    requests_per_day[d.day] += d.requests;
    failed += d.failed_requests;
  }
  // 1'800'000'000 is 2027-01-15 08:00 UTC.
  EXPECT_EQ(requests_per_day, (std::map<std::string, int64_t>{{"2027-01-15", 5},
                                                              {"2027-01-16", 5}}));
  EXPECT_EQ(failed, 2);
}

}  // namespace
}  // namespace fairserve
