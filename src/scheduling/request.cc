#include "fairserve/scheduling/request.h"

#include <algorithm>

namespace fairserve {

bool InferenceRequest::BatchableWith(const InferenceRequest& other) const {
  if (servable != other.servable || !servable->config.batched()) return false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& a = inputs[i].shape;
    const auto& b = other.inputs[i].shape;
    if (a.size() != b.size() || !std::equal(a.begin() + 1, a.end(), b.begin() + 1)) return false;
  }
  return true;
}

int64_t InferenceRequest::BatchLimit() const {
  int64_t limit = servable->config.batched() ? servable->config.max_batch_size : 1;
  if (max_batch_size > 0) limit = std::min(limit, max_batch_size);
  return std::max<int64_t>(limit, 1);
}

}  // namespace fairserve
