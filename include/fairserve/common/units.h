#ifndef FAIRSERVE_COMMON_UNITS_H_
#define FAIRSERVE_COMMON_UNITS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fairserve {

// Parses a byte size: a plain integer ("1048576") or a number with a unit
// ("512MiB", "2GiB", "1.5GB", "64KiB"). Binary (KiB, MiB, GiB, TiB) and decimal
// (KB, MB, GB, TB) units are both accepted; "B" alone means bytes.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text);

// Formats bytes for people: "512.0 MiB".
std::string FormatBytes(uint64_t bytes);

}  // namespace fairserve

#endif  // FAIRSERVE_COMMON_UNITS_H_
