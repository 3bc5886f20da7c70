#include "fairserve/common/units.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fairserve {
namespace {

struct Unit {
  const char* suffix;
  double factor;
};

constexpr Unit kUnits[] = {
    {"KiB", 1024.0},         {"MiB", 1024.0 * 1024},   {"GiB", 1024.0 * 1024 * 1024},
    {"TiB", 1099511627776.0}, {"KB", 1e3},              {"MB", 1e6},
    {"GB", 1e9},              {"TB", 1e12},             {"B", 1.0},
};

}  // namespace

absl::StatusOr<uint64_t> ParseByteSize(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  double factor = 1.0;
  for (const Unit& unit : kUnits) {
    if (absl::EndsWith(s, unit.suffix)) {
      factor = unit.factor;
      s.remove_suffix(std::char_traits<char>::length(unit.suffix));
      s = absl::StripAsciiWhitespace(s);
      break;
    }
  }
  double value = 0;
  if (s.empty() || !absl::SimpleAtod(s, &value) || !std::isfinite(value) || value < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' is not a byte size; write e.g. 1073741824, 512MiB or 2GiB"));
  }
  double bytes = value * factor;
  if (bytes >= 18446744073709551615.0) {
    return absl::InvalidArgumentError(absl::StrCat("byte size '", text, "' is too large"));
  }
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string FormatBytes(uint64_t bytes) {
  constexpr const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int i = 0;
  while (v >= 1024.0 && i < 4) {
    v /= 1024.0;
    ++i;
  }
  if (i == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat("%.1f %s", v, kNames[i]);
}

}  // namespace fairserve
