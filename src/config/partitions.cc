#include "fairserve/config/partitions.h"

#include <algorithm>

namespace fairserve {

MemoryPartitions::MemoryPartitions(const Config& config, size_t device) {
  budget_ = device < config.devices.size() ? config.devices[device].memory_budget : 0;
  for (const TenantConfig& t : config.tenants) {
    if (uint64_t q = t.MemoryQuota(budget_); q > 0) {
      quotas_[t.id] = q;
      reserved_ += std::min(q, UINT64_MAX - reserved_);
    }
  }
}

std::string MemoryPartitions::PartitionOf(const std::string& owner) const {
  return quotas_.count(owner) ? owner : std::string();
}

uint64_t MemoryPartitions::Capacity(const std::string& partition) const {
  if (!partition.empty()) {
    auto it = quotas_.find(partition);
    return it == quotas_.end() ? 0 : it->second;
  }
  if (budget_ == 0) return 0;
  return budget_ > reserved_ ? budget_ - reserved_ : 1;
}

}  // namespace fairserve
