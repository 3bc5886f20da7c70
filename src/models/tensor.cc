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

bool SplitRows(const std::vector<int64_t>& shape, absl::string_view bytes,
               const std::vector<int64_t>& part_rows, std::vector<std::string>* parts) {
  int64_t rows = 0;
  for (int64_t r : part_rows) {
    if (r < 0 || __builtin_add_overflow(rows, r, &rows)) return false;
  }
  if (shape.empty() || shape[0] != rows) return false;
  if (rows == 0) {
    if (!bytes.empty()) return false;
    parts->resize(parts->size() + part_rows.size());
    return true;
  }
  if (bytes.size() % static_cast<uint64_t>(rows) != 0) return false;
  const size_t row_bytes = bytes.size() / static_cast<uint64_t>(rows);
  size_t offset = 0;
  for (int64_t r : part_rows) {
    const size_t n = static_cast<size_t>(r) * row_bytes;
    parts->emplace_back(bytes.substr(offset, n));
    offset += n;
  }
  return true;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace fairserve
