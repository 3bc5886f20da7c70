// Fuzzes the daemon's config parser with arbitrary text: it must answer OK
// or INVALID_ARGUMENT (with file:line:col messages), never crash, hang or
// throw.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fairserve/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto config = fairserve::ParseConfig(text, "fuzz.yaml", "/nonexistent");
  if (!config.ok() && config.status().code() != absl::StatusCode::kInvalidArgument) {
    std::fprintf(stderr, "unexpected status: %s\n", config.status().ToString().c_str());
    std::abort();
  }
  return 0;
}
