#include "fairserve/server/access_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/sinks/ostream_sink.h"
#include "testing/process_util.h"

namespace fairserve {
namespace {

using ::testing::HasSubstr;

TEST(AccessLogTest, PlainAndJson) {
  AccessRecord r{"acme", "mlp", "1", "req\"7\n", absl::StatusCode::kOk, 2, 8, 0.5, 1.25, 2.0};
  EXPECT_EQ(AccessLog::Render(r, AccessLog::Format::kPlain),
            "access tenant=acme model=mlp version=1 id=req?7? status=ok rows=2 batch=8 "
            "queue_ms=0.500 compute_ms=1.250 total_ms=2.000");
  // JSON from the JSON library: escaped, not cleaned, and parseable.
  std::string line = AccessLog::Render(r, AccessLog::Format::kJson);
  EXPECT_EQ(line,
            "{\"type\":\"access\",\"tenant\":\"acme\",\"model\":\"mlp\",\"version\":\"1\","
            "\"id\":\"req\\\"7\\n\",\"status\":\"ok\",\"rows\":2,\"batch\":8,\"queue_ms\":0.5,"
            "\"compute_ms\":1.25,\"total_ms\":2.0}");
  nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["id"], "req\"7\n");
  // Bytes that are not UTF-8 are replaced, never a throw.
  r.request_id = "bad\xff\xfe";
  j = nlohmann::json::parse(AccessLog::Render(r, AccessLog::Format::kJson));
  EXPECT_THAT(j["id"].get<std::string>(), HasSubstr("bad"));
  r.code = absl::StatusCode::kResourceExhausted;
  EXPECT_THAT(AccessLog::Render(r, AccessLog::Format::kPlain), HasSubstr("status=resource_exhausted"));
}

// The plain format's milliseconds are printf's %.3f, digit for digit,
// rounding included.
TEST(AccessLogTest, PlainMillisecondsAreThoseOfPrintf) {
  for (double ms : {0.0, 0.0005, 0.0015, 0.0004999, 1e-9, 2.675, 1234.5675, 99999.9995,
                    123456789.125, 3e15}) {
    AccessRecord r{"t", "m", "1", "id", absl::StatusCode::kOk, 1, 1, ms, ms, ms};
    const std::string want = absl::StrFormat("%.3f", ms);
    EXPECT_THAT(AccessLog::Render(r, AccessLog::Format::kPlain),
                ::testing::EndsWith(absl::StrCat(" queue_ms=", want, " compute_ms=", want,
                                                 " total_ms=", want)))
        << ms;
  }
}

AccessRecord Record(const std::string& tenant, const std::string& id) {
  AccessRecord r;
  r.tenant_id = tenant;
  r.model = "add_one";
  r.version = "1";
  r.request_id = id;
  return r;
}

TEST(AccessLogTest, NeverLosesALineWhenNotOverloaded) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  uint64_t dropped = 0;
  {
    AccessLog log(4096, {sink});
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&log, t] {
        for (int i = 0; i < 1000; ++i) {
          log.Log(Record("tenant-" + std::to_string(t), std::to_string(i)));
        }
      });
    }
    for (std::thread& th : threads) th.join();
    dropped = log.dropped();
  }  // destruction writes every queued line
  EXPECT_EQ(dropped, 0u);
  EXPECT_EQ(testing_util::CountOccurrences(out.str(), "access tenant="), 4000);
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(testing_util::CountOccurrences(out.str(), "tenant=tenant-" + std::to_string(t) + " "), 1000);
  }
}

// A client may send a model name or request id of any length up to the
// message limit: lines, in both formats, keep their first 128 bytes.
TEST(AccessLogTest, ClientStringsAreCutTo128Bytes) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  const std::string id = std::string(128, 'a') + std::string(1 << 20, 'Z');
  const std::string model = std::string(128, 'm') + std::string(300, 'W');
  {
    AccessLog log(16, {sink});
    AccessRecord r = Record("acme", id);
    r.model = model;
    log.Log(r);
    log.SetFormat(AccessLog::Format::kJson);
    log.Log(r);
  }
  const std::string text = out.str();
  EXPECT_EQ(text.find('Z'), std::string::npos);
  EXPECT_EQ(text.find('W'), std::string::npos);
  EXPECT_THAT(text, HasSubstr(" model=" + std::string(128, 'm') + " version=1 id=" +
                              std::string(128, 'a') + " status=ok"));
  const std::string json = text.substr(text.find('{'), text.rfind('}') - text.find('{') + 1);
  nlohmann::json j = nlohmann::json::parse(json);
  EXPECT_EQ(j["id"], std::string(128, 'a'));
  EXPECT_EQ(j["model"], std::string(128, 'm'));
}

// What the writer renders is the record as logged, every field of it: the
// queued copy drops nothing.
TEST(AccessLogTest, AWrittenLineIsTheRecordAsLogged) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_pattern("%v");
  const AccessRecord r{"acme", "mlp", "7", "req-9", absl::StatusCode::kDeadlineExceeded,
                       3, 12, 1.5, 2.25, 4.125};
  {
    AccessLog log(16, {sink});
    log.SetFormat(AccessLog::Format::kJson);
    log.Log(r);
    log.SetFormat(AccessLog::Format::kPlain);
    log.Log(r);
  }
  EXPECT_EQ(out.str(), AccessLog::Render(r, AccessLog::Format::kJson) + "\n" +
                           AccessLog::Render(r, AccessLog::Format::kPlain) + "\n");
}

// Under load the writer wakes once per gathering window, not per line, and
// each sink is flushed once per chunk: 200 lines logged within one window
// reach the sink in one or two chunks, all of them, in order per caller.
TEST(AccessLogTest, WritesInChunksNotLineByLine) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  uint64_t chunks = 0;
  {
    // A gathering window no test outlasts: only destruction ends it.
    AccessLog log(4096, {sink}, std::chrono::hours(1));
    for (int i = 0; i < 200; ++i) log.Log(Record("acme", std::to_string(i)));
    chunks = log.chunks();
    EXPECT_EQ(chunks, 0u);  // still gathering: nothing was written per line
  }
  EXPECT_EQ(testing_util::CountOccurrences(out.str(), "access tenant=acme"), 200);
  EXPECT_LT(out.str().find(" id=0 "), out.str().find(" id=199 "));
}

// The default sink is standard error, in the process log's pattern.
TEST(AccessLogTest, DefaultSinkIsStandardErrorInTheProcessLogPattern) {
  ::testing::internal::CaptureStderr();
  {
    AccessLog log(64);
    log.Log(Record("acme", "one"));
    log.Log(Record("acme", "two"));
  }
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(testing_util::CountOccurrences(err, "] [access] [info] access tenant=acme model=add_one"), 2);
  EXPECT_EQ(err.back(), '\n');
}

// A sink slower than the callers: 1 ms per line.
class SlowSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  int lines = 0;

 protected:
  void sink_it_(const spdlog::details::log_msg&) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ++lines;
  }
  void flush_() override {}
};

TEST(AccessLogTest, OverloadDropsAndCountsInsteadOfSlowingCallers) {
  auto sink = std::make_shared<SlowSink>();
  uint64_t dropped = 0;
  {
    AccessLog log(16, {sink});
    for (int i = 0; i < 500; ++i) log.Log(Record("acme", std::to_string(i)));
    dropped = log.dropped();
  }
  // A caller that waited for room (a blocking queue) would drop nothing.
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(static_cast<uint64_t>(sink->lines) + dropped, 500u);
}

TEST(AccessLogTest, OffWritesNothing) {
  std::ostringstream out;
  {
    AccessLog log(64, {std::make_shared<spdlog::sinks::ostream_sink_mt>(out)});
    log.SetFormat(AccessLog::Format::kOff);
    log.Log(Record("acme", "1"));
  }
  EXPECT_EQ(out.str(), "");
}

}  // namespace
}  // namespace fairserve
