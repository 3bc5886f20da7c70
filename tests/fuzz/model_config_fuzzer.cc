// Fuzzes the model config parser (a model repository's config.yaml): OK or
// INVALID_ARGUMENT, never a crash or an exception.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fairserve/models/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto config = fairserve::ParseModelConfig(text, "fuzz/config.yaml", "fuzz");
  if (!config.ok() && config.status().code() != absl::StatusCode::kInvalidArgument) {
    std::fprintf(stderr, "unexpected status: %s\n", config.status().ToString().c_str());
    std::abort();
  }
  return 0;
}
