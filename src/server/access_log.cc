#include "fairserve/server/access_log.h"

#include <pthread.h>

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "spdlog/async.h"
#include "spdlog/async_logger.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

// Request ids and model names come from clients: keep them printable and
// short in the plain format.
std::string Clean(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 128)) {
    out += (absl::ascii_isprint(static_cast<unsigned char>(c)) && c != '"' && c != '\\') ? c : '?';
  }
  return out;
}

// Milliseconds to the microsecond, as JSON prints them.
double Micros(double ms) { return std::round(ms * 1000) / 1000; }

}  // namespace

AccessLog::AccessLog(size_t queue_lines, std::vector<std::shared_ptr<spdlog::sinks::sink>> sinks) {
  if (sinks.empty()) sinks = spdlog::default_logger()->sinks();
  pool_ = std::make_shared<spdlog::details::thread_pool>(
      std::max<size_t>(queue_lines, 1), 1,
      [] { pthread_setname_np(pthread_self(), "fs-access-log"); });
  logger_ = std::make_shared<spdlog::async_logger>(
      "access", sinks.begin(), sinks.end(), pool_, spdlog::async_overflow_policy::overrun_oldest);
  logger_->set_level(spdlog::level::info);
}

AccessLog::~AccessLog() {
  // The pool's thread writes what is queued, then exits.
  logger_.reset();
  pool_.reset();
}

void AccessLog::Log(const AccessRecord& r) const {
  Format f = format_.load(std::memory_order_relaxed);
  if (f == Format::kOff) return;
  logger_->info("{}", Render(r, f));
}

uint64_t AccessLog::dropped() const { return pool_->overrun_counter(); }

std::string AccessLog::Render(const AccessRecord& r, Format f) {
  std::string status = absl::AsciiStrToLower(absl::StatusCodeToString(r.code));
  if (f == Format::kJson) {
    nlohmann::ordered_json j = {{"type", "access"},
                                {"tenant", r.tenant_id},
                                {"model", r.model.substr(0, 128)},
                                {"version", r.version},
                                {"id", r.request_id.substr(0, 128)},
                                {"status", status},
                                {"rows", r.rows},
                                {"batch", r.batch_samples},
                                {"queue_ms", Micros(r.queue_ms)},
                                {"compute_ms", Micros(r.compute_ms)},
                                {"total_ms", Micros(r.total_ms)}};
    // Client-supplied strings may not be UTF-8: replace, never throw.
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  return absl::StrFormat(
      "access tenant=%s model=%s version=%s id=%s status=%s rows=%d batch=%d queue_ms=%.3f "
      "compute_ms=%.3f total_ms=%.3f",
      r.tenant_id, Clean(r.model), r.version.empty() ? "-" : r.version,
      r.request_id.empty() ? "-" : Clean(r.request_id), status, r.rows, r.batch_samples,
      r.queue_ms, r.compute_ms, r.total_ms);
}

}  // namespace fairserve
