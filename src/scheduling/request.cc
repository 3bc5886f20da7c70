#include "fairserve/scheduling/request.h"

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

}  // namespace fairserve
