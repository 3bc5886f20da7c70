#include "fairserve/models/executor.h"

#include <utility>

namespace fairserve {

absl::StatusOr<std::vector<SplitOutput>> Executor::RunSplit(const std::vector<BatchInput>& inputs,
                                                            const std::vector<int64_t>& part_rows,
                                                            RunTiming* timing) {
  absl::StatusOr<std::vector<Tensor>> whole = RunTimed(inputs, timing);
  if (!whole.ok()) return whole.status();
  std::vector<SplitOutput> out(whole->size());
  for (size_t i = 0; i < whole->size(); ++i) {
    Tensor& t = (*whole)[i];
    out[i].dtype = t.dtype;
    out[i].shape = std::move(t.shape);
    if (part_rows.empty()) {
      out[i].parts.push_back(std::move(t.bytes));
    } else {
      out[i].parts.reserve(part_rows.size());
      SplitRows(out[i].shape, t.bytes, part_rows, &out[i].parts);
    }
  }
  return out;
}

}  // namespace fairserve
