#include "fairserve/server/status_page.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "fairserve/tenancy/api_key.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;

// Who may open /status, before anything is read for the page.
class StatusPageAccessTest : public ::testing::Test {
 protected:
  void Configure(StatusPageMode mode) {
    auto config = std::make_shared<Config>();
    config->server.status_page = mode;
    config->server.admin_api_key_hashes = {HashApiKey("admin-key")};
    TenantConfig acme;
    acme.id = "acme";
    acme.api_key_hashes = {HashApiKey("acme-key")};
    config->tenants = {acme};
    Admission admission(clock_);
    runtime_.Set(std::make_shared<RuntimeSnapshot>(
        RuntimeSnapshot{std::make_shared<TenantRegistry>(config),
                        admission.BuildTable(*config, nullptr)}));
  }
  std::pair<int, std::string> Get(const std::string& addr, const std::string& auth) {
    StatusPageDeps deps;
    deps.runtime = &runtime_;
    deps.authenticator = &authenticator_;
    StatusPage page(deps);
    return page.Respond(addr, auth);
  }

  FakeClock clock_;
  AuthThrottle throttle_{clock_, {5, 20, 100}};
  Runtime runtime_;
  Authenticator authenticator_{throttle_};
};

TEST_F(StatusPageAccessTest, LoopbackModeRefusesOtherClients) {
  Configure(StatusPageMode::kLoopback);
  for (const char* addr : {"10.0.0.5", "192.168.1.2", "::ffff:10.1.1.1", "2001:db8::1"}) {
    auto [code, body] = Get(addr, "Bearer admin-key");  // even with an admin key
    EXPECT_EQ(code, 403) << addr;
    EXPECT_THAT(body, HasSubstr("only served to loopback clients")) << addr;
  }
}

TEST_F(StatusPageAccessTest, OffIsNotFound) {
  Configure(StatusPageMode::kOff);
  EXPECT_EQ(Get("127.0.0.1", "").first, 404);
}

TEST_F(StatusPageAccessTest, AdminModeNeedsAnAdminKeyFromAnyAddress) {
  Configure(StatusPageMode::kAdmin);
  EXPECT_EQ(Get("10.0.0.5", "").first, 401);
  EXPECT_EQ(Get("127.0.0.1", "").first, 401);  // loopback is not enough either
  auto [code, body] = Get("10.0.0.5", "Bearer acme-key");
  EXPECT_EQ(code, 403);
  EXPECT_THAT(body, HasSubstr("needs an admin key"));
  EXPECT_EQ(Get("10.0.0.5", "Bearer wrong").first, 401);
}

// The charts' series from the metrics: rates between samples, shares of
// compute and of the weights.
std::vector<CollectedFamily> Families(double acme_requests, double globex_requests,
                                      double acme_compute, double globex_compute,
                                      double acme_rate_limited) {
  CollectedFamily requests = CounterFamily("tenant_requests_total", "");
  AddSample(&requests, {{"tenant_id", "acme"}, {"status", "ok"}}, acme_requests);
  AddSample(&requests, {{"tenant_id", "globex"}, {"status", "ok"}}, globex_requests);
  CollectedFamily compute = CounterFamily("tenant_gpu_compute_seconds_total", "");
  AddSample(&compute, {{"tenant_id", "acme"}, {"model_name", "m"}}, acme_compute);
  AddSample(&compute, {{"tenant_id", "globex"}, {"model_name", "m"}}, globex_compute);
  CollectedFamily rejected = CounterFamily("fairserve_rejected_requests_total", "");
  AddSample(&rejected, {{"tenant_id", "acme"}, {"reason", "rate_limit"}}, acme_rate_limited);
  AddSample(&rejected, {{"tenant_id", "globex"}, {"reason", "rate_limit"}}, 0);
  CollectedFamily weight = GaugeFamily("fairserve_tenant_weight", "");
  AddSample(&weight, {{"tenant_id", "acme"}}, 3);
  AddSample(&weight, {{"tenant_id", "globex"}}, 1);
  return {requests, compute, rejected, weight};
}

TEST(StatusHistoryTest, RatesAndSharesFromTheMetrics) {
  StatusHistory history(3);
  history.Record(100, Families(10, 0, 1.0, 0.0, 0));
  EXPECT_TRUE(history.Get().empty() || history.Get().at("acme").requests_per_s.empty())
      << "the first sample only sets the baseline";
  history.Record(110, Families(60, 20, 4.0, 1.0, 30));  // 10 s later
  auto series = history.Get();
  ASSERT_EQ(series.size(), 2u);
  EXPECT_THAT(series["acme"].requests_per_s, ::testing::ElementsAre(5.0));
  EXPECT_THAT(series["globex"].requests_per_s, ::testing::ElementsAre(2.0));
  EXPECT_THAT(series["acme"].rejections_per_s["rate_limit"], ::testing::ElementsAre(3.0));
  EXPECT_THAT(series["acme"].compute_share, ::testing::ElementsAre(0.75));  // 3 of 4 s
  EXPECT_THAT(series["acme"].weight_share, ::testing::ElementsAre(0.75));   // 3 of 4
  EXPECT_THAT(series["globex"].compute_share, ::testing::ElementsAre(0.25));
  // The ring keeps the last `points`.
  for (int i = 2; i <= 5; ++i) history.Record(100 + 10 * i, Families(60, 20, 4.0, 1.0, 30));
  EXPECT_EQ(history.Get()["acme"].requests_per_s.size(), 3u);
  EXPECT_THAT(history.Get()["acme"].requests_per_s, ::testing::Each(0.0));
  // A tenant that left the metrics (removed on reload) leaves the charts.
  std::vector<CollectedFamily> only_acme = Families(60, 20, 4.0, 1.0, 30);
  for (CollectedFamily& f : only_acme) {
    f.metric.erase(std::remove_if(f.metric.begin(), f.metric.end(),
                                  [](const prometheus::ClientMetric& m) {
                                    for (const auto& l : m.label) {
                                      if (l.value == "globex") return true;
                                    }
                                    return false;
                                  }),
                   f.metric.end());
  }
  history.Record(200, only_acme);
  EXPECT_EQ(history.Get().count("globex"), 0u);
}

TEST(StatusHistoryTest, SvgChartScalesAndEscapes) {
  std::string svg = SvgChart("requests", "a<b", {{"x", {0, 5, 10}}, {"y (dashed)", {10}}}, 1.0);
  EXPECT_THAT(svg, HasSubstr("<svg class=\"chart\" data-chart=\"requests\""));
  EXPECT_THAT(svg, HasSubstr("<title>a&lt;b (max 10)</title>"));
  // Three points across the width, the largest at the top; the newest at the right.
  EXPECT_THAT(svg, HasSubstr("points=\"0.0,34.0 90.0,18.0 180.0,2.0\""));
  EXPECT_THAT(svg, HasSubstr("stroke-dasharray=\"3 2\" points=\"180.0,2.0\""));
  EXPECT_EQ(svg.find("<script"), std::string::npos);
}

TEST(StatusHistoryTest, PageShowsChartsPerTenant) {
  StatusSnapshot snap;
  snap.tenants.push_back(TenantStatus{"acme"});
  StatusHistory::Series s;
  s.requests_per_s = {1, 2};
  s.rejections_per_s["rate_limit"] = {0, 4};
  s.rejections_per_s["max_queue"] = {0, 0};
  s.compute_share = {0.5, 0.25};
  s.weight_share = {0.5, 0.5};
  snap.history["acme"] = s;
  std::string html = StatusPage().Render(snap);
  EXPECT_THAT(html, HasSubstr("<tr data-tenant-charts=\"acme\">"));
  EXPECT_THAT(html, HasSubstr("data-chart=\"requests\""));
  EXPECT_THAT(html, HasSubstr("data-series=\"rate_limit\""));
  EXPECT_EQ(html.find("data-series=\"max_queue\""), std::string::npos) << "reasons never seen";
  EXPECT_THAT(html, HasSubstr("compute 25%"));
  EXPECT_THAT(html, HasSubstr("weight 50%"));
}

}  // namespace
}  // namespace fairserve
