#ifndef FAIRSERVE_CONFIG_PARTITIONS_H_
#define FAIRSERVE_CONFIG_PARTITIONS_H_

#include <cstdint>
#include <map>
#include <string>

#include "fairserve/config/config.h"

namespace fairserve {

// How a device's memory budget is split, as a plain value computed from a
// config: a strict partition for every tenant with a quota
// (TenantConfig::MemoryQuota: memory_limit or memory_share_percent), and
// the shared pool ("") with the rest. The model cache, the status page and
// `fairctl partitions` all read it; nothing else computes partitions.
class MemoryPartitions {
 public:
  MemoryPartitions() = default;
  // The partitions of `config.devices[device]` (device 0 when absent).
  explicit MemoryPartitions(const Config& config, size_t device = 0);

  // The device budget; 0 = unlimited.
  uint64_t budget() const { return budget_; }
  // Tenant -> quota bytes, for tenants that have one.
  const std::map<std::string, uint64_t>& quotas() const { return quotas_; }
  // The sum of the quotas (saturating).
  uint64_t reserved() const { return reserved_; }

  // Where a model owned by `owner` lives: the owner's partition when it has
  // a quota, else the shared pool ("").
  std::string PartitionOf(const std::string& owner) const;
  // Bytes `partition` may hold; 0 = unlimited (no budget). REQUIRES:
  // `partition` is "" or a tenant of quotas(). The shared pool
  // gets the budget minus every quota; were the quotas over the budget (a
  // validated config refuses that), it gets 1 byte: nothing fits.
  uint64_t Capacity(const std::string& partition) const;

 private:
  uint64_t budget_ = 0;
  uint64_t reserved_ = 0;
  std::map<std::string, uint64_t> quotas_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_CONFIG_PARTITIONS_H_
