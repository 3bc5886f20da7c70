// Fleet billing: real daemons shipping usage to one real PostgreSQL server
// on loopback. Every request a client saw answered OK is in the database
// exactly once, whatever happens to the database or the daemons, and every
// replica answers the same invoice.

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "fairserve/admin/v1/admin.grpc.pb.h"
#include "fairserve/metering/invoice.h"
#include "fairserve/metering/ledger.h"
#include "absl/strings/str_format.h"
#include "fairserve/tenancy/api_key.h"
#include "integration/daemon_process.h"
#include "testing/postgres_server.h"
#include "testing/process_util.h"

namespace fairserve {
namespace {

using namespace testing_util;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr char kAdminKey[] = "admin-key";

// Runs fairctl; its exit code and output.
CommandRun Fairctl(const std::string& args) {
  return RunCommand(std::string(FAIRCTL_BIN) + " " + args);
}

// Calls from several threads through several replicas until stopped,
// counting the OK answers per tenant.
class Load {
 public:
  Load(std::vector<const DaemonProcess*> replicas, int threads_per_replica) {
    for (const DaemonProcess* d : replicas) {
      for (int i = 0; i < threads_per_replica; ++i) {
        threads_.emplace_back([this, d, i] {
          Client client(*d);
          const char* key = i % 2 ? kAcmeKey : kGlobexKey;
          std::atomic<int64_t>& ok = i % 2 ? acme_ok_ : globex_ok_;
          while (!stop_) {
            if (client.Infer(key).ok()) ok.fetch_add(1);
          }
        });
      }
    }
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int64_t acme_ok() const { return acme_ok_; }
  int64_t globex_ok() const { return globex_ok_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> acme_ok_{0}, globex_ok_{0};
  std::vector<std::thread> threads_;
};

class FleetBillingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pg_ = new PostgresServer(); }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(pg_->started()) << pg_->error();
    std::random_device rd;
    prefix_ = "f" + std::to_string(rd() % 1000000) + "_";
    auto [code, out] = Fairctl(Db("db migrate"));
    ASSERT_EQ(code, 0) << out;
    EXPECT_THAT(out, HasSubstr("applied 001_usage.sql"));
  }
  void TearDown() override {
    if (!pg_->started()) pg_->Start();
  }

  // fairctl arguments naming this test's tables.
  std::string Db(const std::string& command) const {
    return command + " --dsn '" + pg_->dsn() + "' --table-prefix " + prefix_;
  }
  // A replica's config: admin key, its own replica id, the sink, pricing
  // with a tier (compute above 2 ms is cheaper).
  std::string Config(const std::string& replica, const std::string& data_dir = "data") const {
    std::string config = TestConfigYaml(
        "", "ledger: {sink: {type: postgres, dsn: \"" + pg_->dsn() + "\", table_prefix: " +
                prefix_ + ", flush_interval_ms: 50}}\n"
                "pricing:\n  per_1k_requests: 1.0\n  per_compute_second: 1000\n"
                "  tiers: [{above_compute_seconds: 0.002, per_compute_second: 10}]\n");
    config.replace(config.find("data_dir: data"), 14,
                   "data_dir: " + data_dir + ", replica_id: " + replica +
                       ", admin_api_keys: [\"" + HashApiKey(kAdminKey) + "\"]");
    return config;
  }
  // requests (status ok) and compute ns in the database for `tenant`.
  std::pair<int64_t, int64_t> Shipped(const std::string& tenant) const {
    std::string out = pg_->Query(
        "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(compute_ns), 0) FROM " + prefix_ +
        "usage WHERE tenant_id = '" + tenant + "' AND status = 'ok'");
    size_t bar = out.find('|');
    if (bar == std::string::npos) return {-1, -1};
    return {std::stoll(out.substr(0, bar)), std::stoll(out.substr(bar + 1))};
  }
  // The same from local ledgers.
  static std::pair<int64_t, int64_t> Local(const std::vector<std::string>& dirs,
                                           const std::string& tenant) {
    std::vector<std::string> paths;
    for (const std::string& d : dirs) paths.push_back(LedgerPath(d));
    auto rows = ReadUsage(paths, UsageQuery{tenant, 0, INT64_MAX});
    EXPECT_TRUE(rows.ok()) << rows.status();
    std::pair<int64_t, int64_t> t{0, 0};
    for (const UsageRow& r : *rows) {
      if (r.status != "ok") continue;
      t.first += r.requests;
      t.second += r.compute_ns;
    }
    return t;
  }
  static admin::v1::GetInvoiceResponse Invoice(const DaemonProcess& d, const std::string& tenant) {
    auto stub = admin::v1::Admin::NewStub(
        grpc::CreateChannel(d.grpc_address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    SetTestDeadline(&ctx);
    ctx.AddMetadata("x-api-key", kAdminKey);
    admin::v1::GetInvoiceRequest req;
    req.set_tenant_id(tenant);
    admin::v1::GetInvoiceResponse resp;
    grpc::Status s = stub->GetInvoice(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  static PostgresServer* pg_;
  std::string prefix_;
};

PostgresServer* FleetBillingTest::pg_ = nullptr;

TEST_F(FleetBillingTest, TwoReplicasOneDatabaseEveryRequestOnce) {
  DaemonProcess a(Config("replica-a"));
  DaemonProcess b(Config("replica-b"));
  ASSERT_TRUE(a.serving()) << a.Log();
  ASSERT_TRUE(b.serving()) << b.Log();
  Load load({&a, &b}, 2);
  ASSERT_TRUE(WaitFor([&] { return load.acme_ok() > 800 && load.globex_ok() > 800; }, 60));
  load.Stop();
  const int64_t acme = load.acme_ok(), globex = load.globex_ok();
  ASSERT_TRUE(WaitFor([&] { return Shipped("acme").first == acme; })) << Shipped("acme").first;
  ASSERT_TRUE(WaitFor([&] { return Shipped("globex").first == globex; }));

  // Either replica answers the same fleet invoice, tiers on the fleet total.
  admin::v1::GetInvoiceResponse from_a = Invoice(a, "acme"), from_b = Invoice(b, "acme");
  EXPECT_EQ(from_a.SerializeAsString(), from_b.SerializeAsString());
  EXPECT_EQ(from_a.requests(), acme);
  EXPECT_NEAR(from_a.compute_seconds(), Shipped("acme").second / 1e9, 1e-6);

  ASSERT_EQ(a.Stop(SIGTERM), 0);
  ASSERT_EQ(b.Stop(SIGTERM), 0);
  // The tiers priced the fleet's total, not each replica's share.
  auto config = ParseConfig(Config("x"), "x.yaml", "/tmp");
  ASSERT_TRUE(config.ok()) << config.status();
  const PricingConfig& pricing = (*config)->pricing;
  auto invoice_of = [&](const std::vector<std::string>& dirs) {
    std::vector<std::string> paths;
    for (const std::string& d : dirs) paths.push_back(LedgerPath(d));
    return MakeInvoice(*ReadUsage(paths, {"acme", 0, INT64_MAX}), pricing, "acme", 0, INT64_MAX)
        .total_cents;
  };
  const int64_t fleet = invoice_of({a.dir() + "/data", b.dir() + "/data"});
  EXPECT_EQ(from_a.total_cents(), fleet);
  EXPECT_NE(fleet, invoice_of({a.dir() + "/data"}) + invoice_of({b.dir() + "/data"}));
  // The database equals the two local ledgers, to the request and the
  // nanosecond, and the clients' OK counts.
  const std::vector<std::string> dirs = {a.dir() + "/data", b.dir() + "/data"};
  EXPECT_EQ(Shipped("acme"), Local(dirs, "acme"));
  EXPECT_EQ(Shipped("globex"), Local(dirs, "globex"));
  EXPECT_EQ(Local(dirs, "acme").first, acme);
  // Both ledgers shipped; the fleet tools read the same totals.
  EXPECT_EQ(pg_->Query("SELECT COUNT(*) FROM " + prefix_ + "ledgers"), "2");
  auto [code, csv] = Fairctl(Db("export --format csv"));
  ASSERT_EQ(code, 0) << csv;
  EXPECT_THAT(csv, HasSubstr("day,tenant_id,model_name,requests,failed_requests,samples,"
                             "compute_seconds\n"));
  EXPECT_THAT(csv, HasSubstr(",acme,add_one," + std::to_string(acme) + ",0,"));
  auto [icode, invoice] = Fairctl(Db("invoice --tenant acme --format csv --config " +
                                     a.dir() + "/config.yaml"));
  ASSERT_EQ(icode, 0) << invoice;
  EXPECT_THAT(invoice, HasSubstr(absl::StrFormat(
                           "%d.%02d", from_a.total_cents() / 100, from_a.total_cents() % 100)));
}

TEST_F(FleetBillingTest, DatabaseDownTenSecondsUnderLoadLosesAndDoublesNothing) {
  DaemonProcess a(Config("replica-a"));
  DaemonProcess b(Config("replica-b"));
  ASSERT_TRUE(a.serving()) << a.Log();
  ASSERT_TRUE(b.serving()) << b.Log();
  Load load({&a, &b}, 2);
  ASSERT_TRUE(WaitFor([&] { return Shipped("acme").first > 100; }));
  pg_->Stop();
  // Serving goes on; usage waits in the local ledgers and is reported.
  ASSERT_TRUE(WaitFor([&] { return Metric(a, "fairserve_usage_sink_up") == 0; }));
  std::this_thread::sleep_for(std::chrono::seconds(10));
  EXPECT_GT(Metric(a, "fairserve_usage_sink_backlog_windows"), 0);
  EXPECT_GT(Metric(b, "fairserve_usage_sink_lag_seconds"), 5);
  const int64_t acme_during = load.acme_ok();
  ASSERT_TRUE(pg_->Start()) << pg_->error();
  load.Stop();
  EXPECT_GT(load.acme_ok(), acme_during);  // still served while the database was away
  const int64_t acme = load.acme_ok(), globex = load.globex_ok();
  ASSERT_TRUE(WaitFor([&] { return Shipped("acme").first == acme; }, 40))
      << Shipped("acme").first << " of " << acme;
  ASSERT_TRUE(WaitFor([&] { return Shipped("globex").first == globex; }, 40));
  ASSERT_TRUE(WaitFor([&] { return Metric(a, "fairserve_usage_sink_backlog_windows") == 0; }));
  EXPECT_EQ(Metric(a, "fairserve_usage_sink_up"), 1);
  ASSERT_EQ(a.Stop(SIGTERM), 0);
  ASSERT_EQ(b.Stop(SIGTERM), 0);
  const std::vector<std::string> dirs = {a.dir() + "/data", b.dir() + "/data"};
  EXPECT_EQ(Shipped("acme"), Local(dirs, "acme"));
  EXPECT_EQ(Shipped("globex"), Local(dirs, "globex"));
}

TEST_F(FleetBillingTest, KillNineWhileShippingThenRestartDoublesNothing) {
  char tmpl[] = "/tmp/fairserve-kill-XXXXXX";
  const std::string data = mkdtemp(tmpl);
  std::mt19937 rng(std::random_device{}());
  for (int kill = 0; kill < 3; ++kill) {
    DaemonProcess d(Config("replica-a", data));
    ASSERT_TRUE(d.serving()) << d.Log();
    Load load({&d}, 2);
    ASSERT_TRUE(WaitFor([&] { return load.acme_ok() > 50; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 1000));
    d.Stop(SIGKILL);
  }
  // Restarted, the replica ships what the kills left in its outbox.
  DaemonProcess d(Config("replica-a", data));
  ASSERT_TRUE(d.serving()) << d.Log();
  ASSERT_EQ(d.Stop(SIGTERM), 0);
  EXPECT_EQ(Shipped("acme"), Local({data}, "acme"));
  EXPECT_EQ(Shipped("globex"), Local({data}, "globex"));
  EXPECT_GT(Shipped("acme").first, 150);
  std::error_code ec;
  fs::remove_all(data, ec);
}

TEST_F(FleetBillingTest, ReplicaStartsAndServesWithoutTheDatabase) {
  pg_->Stop();
  DaemonProcess a(Config("replica-a"));
  ASSERT_TRUE(a.serving()) << a.Log();
  EXPECT_EQ(Client(a).Succeeded(kAcmeKey, 20), 20);
  ASSERT_TRUE(WaitFor([&] { return Metric(a, "fairserve_usage_sink_up") == 0; }));
  // Invoices need the fleet database: UNAVAILABLE, not a partial answer.
  auto stub = admin::v1::Admin::NewStub(
      grpc::CreateChannel(a.grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  SetTestDeadline(&ctx);
  ctx.AddMetadata("x-api-key", kAdminKey);
  admin::v1::GetInvoiceRequest req;
  req.set_tenant_id("acme");
  admin::v1::GetInvoiceResponse resp;
  grpc::Status s = stub->GetInvoice(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("usage database"));
  ASSERT_TRUE(pg_->Start()) << pg_->error();
  ASSERT_TRUE(WaitFor([&] { return Shipped("acme").first == 20; }, 30));
}

}  // namespace
}  // namespace fairserve
