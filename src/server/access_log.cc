#include "fairserve/server/access_log.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace fairserve {
namespace {

// Request ids come from clients: keep them printable and short.
std::string Clean(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 128)) {
    out += (absl::ascii_isprint(static_cast<unsigned char>(c)) && c != '"' && c != '\\') ? c : '?';
  }
  return out;
}

}  // namespace

std::string AccessLog::Render(const AccessRecord& r, Format f) {
  std::string status = absl::AsciiStrToLower(absl::StatusCodeToString(r.code));
  if (f == Format::kJson) {
    return absl::StrFormat(
        "{\"type\":\"access\",\"tenant\":\"%s\",\"model\":\"%s\",\"version\":\"%s\","
        "\"id\":\"%s\",\"status\":\"%s\",\"rows\":%d,\"batch\":%d,\"queue_ms\":%.3f,"
        "\"compute_ms\":%.3f,\"total_ms\":%.3f}",
        r.tenant_id, Clean(r.model), r.version, Clean(r.request_id), status, r.rows,
        r.batch_samples, r.queue_ms, r.compute_ms, r.total_ms);
  }
  return absl::StrFormat(
      "access tenant=%s model=%s version=%s id=%s status=%s rows=%d batch=%d queue_ms=%.3f "
      "compute_ms=%.3f total_ms=%.3f",
      r.tenant_id, Clean(r.model), r.version.empty() ? "-" : r.version,
      r.request_id.empty() ? "-" : Clean(r.request_id), status, r.rows, r.batch_samples,
      r.queue_ms, r.compute_ms, r.total_ms);
}

void AccessLog::Log(const AccessRecord& r) const {
  Format f = format_.load(std::memory_order_relaxed);
  if (f == Format::kOff) return;
  spdlog::info("{}", Render(r, f));
}

}  // namespace fairserve
