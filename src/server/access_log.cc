#include "fairserve/server/access_log.h"

#include <pthread.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "spdlog/details/console_globals.h"
#include "spdlog/details/null_mutex.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

// Request ids and model names come from clients, at any length up to the
// message limit: a line keeps their first kClientChars bytes.
constexpr size_t kClientChars = 128;

// Keeps them printable too in the plain format. Appends `s` so cleaned to
// *out.
void AppendClean(const std::string& s, std::string* out) {
  const size_t n = std::min(s.size(), kClientChars);
  for (size_t i = 0; i < n; ++i) {
    const char c = s[i];
    out->push_back(
        (absl::ascii_isprint(static_cast<unsigned char>(c)) && c != '"' && c != '\\') ? c : '?');
  }
}

// Milliseconds to the microsecond, as JSON prints them.
double Micros(double ms) { return std::round(ms * 1000) / 1000; }

// Appends `ms` with 3 decimals, as printf's %.3f writes it.
void AppendMillis(double ms, std::string* out) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), ms, std::chars_format::fixed, 3);
  if (ec != std::errc()) {  // beyond 10^60 ms: not a duration this server measures
    out->append("nan");
    return;
  }
  out->append(buf, end);
}

}  // namespace

namespace {

// Standard error, written a chunk at a time: lines are formatted into a
// buffer as they come and flush() writes the buffer with one fwrite and
// fflush, holding spdlog's console mutex (which the process logger's
// stderr sink holds for each of its lines), so the two never interleave.
// Only the access log's writer thread uses it.
class ChunkedStderrSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override { formatter_->format(msg, buffer_); }
  void flush_() override {
    if (buffer_.size() == 0) return;
    {
      std::lock_guard<std::mutex> lock(spdlog::details::console_mutex::mutex());
      std::fwrite(buffer_.data(), 1, buffer_.size(), stderr);
      std::fflush(stderr);
    }
    buffer_.clear();
  }

 private:
  spdlog::memory_buf_t buffer_;
};

}  // namespace

AccessLog::AccessLog(size_t queue_lines, std::vector<std::shared_ptr<spdlog::sinks::sink>> sinks,
                     std::chrono::milliseconds gather)
    : capacity_(std::max<size_t>(queue_lines, 1)), gather_(gather),
      sinks_(sinks.empty() ? std::vector<std::shared_ptr<spdlog::sinks::sink>>{
                                 std::make_shared<ChunkedStderrSink>()}
                           : std::move(sinks)) {
  writer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "fs-access-log");
    WriterLoop();
  });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  writer_.join();  // writes what is pending, then exits
}

void AccessLog::Log(AccessRecord r) {
  Format f = format_.load(std::memory_order_relaxed);
  if (f == Format::kOff) return;
  // The client's strings are cut here, not only when written: a queued
  // record stays small whatever the client sent.
  if (r.model.size() > kClientChars) r.model.resize(kClientChars);
  if (r.request_id.size() > kClientChars) r.request_id.resize(kClientChars);
  Line line{std::chrono::system_clock::now(), f, std::move(r)};
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.size() >= capacity_) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    wake = pending_.empty();
    pending_.push_back(std::move(line));
  }
  if (wake) cv_.notify_one();
}

void AccessLog::WriterLoop() {
  std::vector<Line> chunk;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    // Gather: the lines of the next `gather_` go out with this one.
    if (!stopping_) cv_.wait_for(lock, gather_, [this] { return stopping_; });
    chunk.swap(pending_);
    const bool last = stopping_;
    lock.unlock();
    if (!chunk.empty()) Write(chunk);
    chunk.clear();
    lock.lock();
    if (last && pending_.empty()) break;
  }
}

void AccessLog::Write(const std::vector<Line>& lines) {
  std::vector<std::string> texts;
  texts.reserve(lines.size());
  for (const Line& line : lines) texts.push_back(Render(line.record, line.format));
  for (const auto& sink : sinks_) {
    for (size_t i = 0; i < lines.size(); ++i) {
      spdlog::details::log_msg msg(lines[i].time, spdlog::source_loc{}, "access",
                                   spdlog::level::info, texts[i]);
      sink->log(msg);
    }
    sink->flush();
  }
  chunks_.fetch_add(1, std::memory_order_relaxed);
}

std::string AccessLog::Render(const AccessRecord& r, Format f) {
  std::string status = absl::AsciiStrToLower(absl::StatusCodeToString(r.code));
  if (f == Format::kJson) {
    nlohmann::ordered_json j = {{"type", "access"},
                                {"tenant", r.tenant_id},
                                {"model", r.model.substr(0, kClientChars)},
                                {"version", r.version},
                                {"id", r.request_id.substr(0, kClientChars)},
                                {"status", status},
                                {"rows", r.rows},
                                {"batch", r.batch_samples},
                                {"queue_ms", Micros(r.queue_ms)},
                                {"compute_ms", Micros(r.compute_ms)},
                                {"total_ms", Micros(r.total_ms)}};
    // Client-supplied strings may not be UTF-8: replace, never throw.
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  std::string out = absl::StrCat("access tenant=", r.tenant_id, " model=");
  AppendClean(r.model, &out);
  absl::StrAppend(&out, " version=", r.version.empty() ? "-" : r.version, " id=");
  if (r.request_id.empty()) {
    out.push_back('-');
  } else {
    AppendClean(r.request_id, &out);
  }
  absl::StrAppend(&out, " status=", status, " rows=", r.rows, " batch=", r.batch_samples,
                  " queue_ms=");
  AppendMillis(r.queue_ms, &out);
  out.append(" compute_ms=");
  AppendMillis(r.compute_ms, &out);
  out.append(" total_ms=");
  AppendMillis(r.total_ms, &out);
  return out;
}

}  // namespace fairserve
