#include "fairserve/models/tensor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace fairserve {

bool ElementCount(const std::vector<int64_t>& shape, int64_t* count) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return false;
  }
  *count = n;
  return true;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace fairserve
