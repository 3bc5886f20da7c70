#include "fairserve/metering/ledger.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "nlohmann/json.hpp"

#include <filesystem>
#include <future>

#include "fairserve/metering/invoice.h"
#include "metering/batch_records.h"
#include "testing/test_dir.h"

namespace fairserve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using testing_util::Batch;

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing_util::MakeTestDir("ledger");
  }
  void TearDown() override { testing_util::RemoveTestDir(dir_); }
  std::unique_ptr<LedgerWriter> Open(const std::string& name, const std::string& replica) {
    LedgerWriter::Options o;
    o.path = (dir_ / name).string();
    o.replica = replica;
    o.commit_interval = std::chrono::hours(1);  // commits only when the test says
    o.wall_clock = [this] { return now_; };
    auto w = LedgerWriter::Open(o);
    EXPECT_TRUE(w.ok()) << w.status();
    return std::move(*w);
  }
  std::string Path(const std::string& name) { return (dir_ / name).string(); }
  fs::path dir_;
  int64_t now_ = 1'800'000'000;  // 2027-01-15
};

TEST_F(LedgerTest, AggregatesBatchesIntoRowsAndSumsOnRead) {
  auto w = Open("a.sqlite", "r1");
  w->OnBatch(Batch("mlp", {{"acme", 2, 0.5, absl::StatusCode::kOk},
                           {"acme", 1, 0.25, absl::StatusCode::kOk}}));
  w->OnBatch(Batch("mlp", {{"globex", 4, 1.0, absl::StatusCode::kOk},
                           {"acme", 1, 0.125, absl::StatusCode::kInvalidArgument}}));
  ASSERT_TRUE(w->Flush().ok());
  now_ += 3600;
  w->OnBatch(Batch("mlp", {{"acme", 1, 2.0, absl::StatusCode::kOk}}));
  w->Close();
  EXPECT_EQ(w->commits(), 2);

  auto all = ReadUsage({Path("a.sqlite")}, {});
  ASSERT_TRUE(all.ok()) << all.status();
  std::map<std::string, UsageRow> rows;
  for (const UsageRow& r : *all) rows[r.tenant_id + "/" + r.status] = r;
  EXPECT_EQ(rows["acme/ok"].requests, 3);
  EXPECT_EQ(rows["acme/ok"].samples, 4);
  EXPECT_DOUBLE_EQ(rows["acme/ok"].compute_seconds, 2.75);
  EXPECT_EQ(rows["acme/invalid_argument"].requests, 1);
  EXPECT_EQ(rows["globex/ok"].samples, 4);

  // A window that excludes the later hour.
  UsageQuery q;
  q.tenant_id = "acme";
  q.to = 1'800'000'000 + 60;
  auto early = ReadUsage({Path("a.sqlite")}, q);
  ASSERT_TRUE(early.ok());
  double compute = 0;
  for (const UsageRow& r : *early) compute += r.compute_seconds;
  EXPECT_DOUBLE_EQ(compute, 0.875);
}

TEST_F(LedgerTest, ReplicasMergeButACopiedLedgerIsRefused) {
  auto a = Open("a.sqlite", "r1");
  auto b = Open("b.sqlite", "r2");
  a->OnBatch(Batch("mlp", {{"acme", 1, 1.0, absl::StatusCode::kOk}}));
  b->OnBatch(Batch("mlp", {{"acme", 1, 2.0, absl::StatusCode::kOk}}));
  a->Close();
  b->Close();
  auto merged = ReadUsage({Path("a.sqlite"), Path("b.sqlite")}, {});
  ASSERT_TRUE(merged.ok());
  ASSERT_EQ(merged->size(), 1u);
  EXPECT_EQ((*merged)[0].requests, 2);
  EXPECT_DOUBLE_EQ((*merged)[0].compute_seconds, 3.0);

  a.reset();  // closing the last connection checkpoints the WAL into the file
  b.reset();
  fs::copy_file(Path("a.sqlite"), Path("copy.sqlite"));
  auto doubled = ReadUsage({Path("a.sqlite"), Path("copy.sqlite")}, {});
  EXPECT_EQ(doubled.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(doubled.status().message()), HasSubstr("count its usage twice"));

  // The same file named twice (even by another path) is read once.
  auto again = ReadUsage({Path("a.sqlite"), Path("b.sqlite"), Path("./a.sqlite")}, {});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)[0].requests, 2);
}

TEST_F(LedgerTest, CloseFlushesAndReopenKeepsTotals) {
  {
    auto w = Open("a.sqlite", "r1");
    w->OnBatch(Batch("mlp", {{"acme", 1, 1.0, absl::StatusCode::kOk}}));
  }  // destructor closes and flushes
  {
    auto w = Open("a.sqlite", "r1");
    w->OnBatch(Batch("mlp", {{"acme", 1, 1.0, absl::StatusCode::kOk}}));
  }
  auto rows = ReadUsage({Path("a.sqlite")}, {});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].requests, 2);
}

TEST_F(LedgerTest, UnreadableLedgerIsAnError) {
  EXPECT_FALSE(ReadUsage({Path("missing.sqlite")}, {}).ok());
  LedgerWriter::Options o;
  o.path = (dir_ / "no-such-dir" / "x.sqlite").string();
  EXPECT_FALSE(LedgerWriter::Open(o).ok());
}

TEST(InvoiceTest, PricesComputeTiersAndRequestsToTheCent) {
  PricingConfig pricing;  // defaults: 0.0001 per s, 0.20 per 1k requests
  pricing.defaults.tiers = {{1000, 0.00005}};
  std::vector<UsageRow> usage = {
      {0, "r1", "acme", "mlp", "ok", 12345, 20000, 1500.0},
      {0, "r1", "acme", "mlp", "invalid_argument", 5, 5, 0.5},
      {0, "r1", "globex", "mlp", "ok", 99, 99, 9.0},
  };
  Invoice inv = MakeInvoice(usage, pricing, "acme", 0, 100);
  EXPECT_DOUBLE_EQ(inv.compute_seconds, 1500.5);
  EXPECT_EQ(inv.requests, 12345);
  EXPECT_EQ(inv.failed_requests, 5);
  ASSERT_EQ(inv.lines.size(), 3u);
  EXPECT_EQ(inv.lines[0].amount_cents, 10);   // 1000 s x 0.0001 = 0.10
  EXPECT_EQ(inv.lines[1].amount_cents, 3);    // 500.5 s x 0.00005 = 0.025025 -> 0.03
  EXPECT_EQ(inv.lines[2].amount_cents, 247);  // 12.345 x 0.20 = 2.469 -> 2.47
  EXPECT_EQ(inv.total_cents, 260);

  pricing.tenants["acme"] = {0.001, 1.0, {}};
  Invoice over = MakeInvoice(usage, pricing, "acme", 0, 100);
  EXPECT_EQ(over.lines.size(), 2u);
  EXPECT_EQ(over.total_cents, 150 + 1235);  // 1.5005 -> 1.50; 12.345 -> 12.35
}

TEST(InvoiceTest, Formats) {
  PricingConfig pricing;
  Invoice inv = MakeInvoice({{0, "r", "acme", "m", "ok", 1000, 1000, 10.0}}, pricing, "acme",
                            1'800'000'000, 1'800'086'400);
  auto json = FormatInvoice(inv, "json");
  ASSERT_TRUE(json.ok());
  nlohmann::json parsed = nlohmann::json::parse(*json);
  EXPECT_EQ(parsed["total"], 0.2);
  EXPECT_EQ(parsed["total_cents"], 20);
  EXPECT_EQ(parsed["from"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(parsed["lines"].back()["item"], "requests");
  EXPECT_EQ(parsed["lines"].back()["amount_cents"], 20);
  // Names are escaped by the JSON library, whatever they hold.
  Invoice odd = inv;
  odd.tenant_id = "a\"b\\c\n";
  EXPECT_EQ(nlohmann::json::parse(*FormatInvoice(odd, "json"))["tenant_id"], "a\"b\\c\n");
  auto csv = FormatInvoice(inv, "csv");
  EXPECT_THAT(*csv, HasSubstr("acme,2027-01-15T08:00:00Z,2027-01-16T08:00:00Z,total,,,,0.20,USD"));
  auto table = FormatInvoice(inv, "table");
  EXPECT_THAT(*table, HasSubstr("total"));
  EXPECT_FALSE(FormatInvoice(inv, "xml").ok());
}

TEST(InvoiceTest, ParsesDates) {
  EXPECT_EQ(*ParseUtcDate("2027-01-15"), 1'799'971'200);
  EXPECT_EQ(*ParseUtcDate("2027-01-15T08:00:00Z"), 1'800'000'000);
  EXPECT_FALSE(ParseUtcDate("15/01/2027").ok());
}

TEST_F(LedgerTest, ReplyAfterCommitAnswersOnlyOnceTheBatchIsOnDisk) {
  LedgerWriter::Options o;
  o.path = Path("sync.sqlite");
  o.replica = "r1";
  o.commit_interval = std::chrono::hours(1);  // only an answer waiting makes it commit
  o.wall_clock = [this] { return now_; };
  o.durability = Durability::kReplyAfterCommit;
  auto w = LedgerWriter::Open(o);
  ASSERT_TRUE(w.ok()) << w.status();
  std::promise<int64_t> committed_when_answered;
  (*w)->OnBatch(Batch("mlp", {{"acme", 2, 0.5, absl::StatusCode::kOk}}));
  (*w)->AfterRecorded([&] {
    // What a reader of the file sees at the moment the answer goes out.
    auto rows = ReadUsage({Path("sync.sqlite")}, {});
    committed_when_answered.set_value(rows.ok() && !rows->empty() ? (*rows)[0].requests : -1);
  });
  auto answered = committed_when_answered.get_future();
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "the writer did not commit for the waiting answer";
  EXPECT_EQ(answered.get(), 1);
  EXPECT_EQ((*w)->commits(), 1);
}

TEST_F(LedgerTest, AsyncAnswersAtOnce) {
  auto w = Open("async.sqlite", "r1");
  bool answered = false;
  w->OnBatch(Batch("mlp", {{"acme", 2, 0.5, absl::StatusCode::kOk}}));
  w->AfterRecorded([&] { answered = true; });
  EXPECT_TRUE(answered);
  EXPECT_EQ(w->commits(), 0);
}

}  // namespace
}  // namespace fairserve
