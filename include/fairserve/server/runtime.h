#ifndef FAIRSERVE_SERVER_RUNTIME_H_
#define FAIRSERVE_SERVER_RUNTIME_H_

#include <memory>

#include "fairserve/admission/admission.h"
#include "fairserve/common/snapshot.h"
#include "fairserve/config/config.h"
#include "fairserve/tenancy/tenant_registry.h"

namespace fairserve {

// Everything a reload replaces, published as one value: the validated
// config (prices included), the tenant registry built from it (keys,
// certificates, model visibility) and the admission table for it. The
// daemon builds a new one per accepted reload and swaps it in with a single
// atomic store (Snapshot<RuntimeSnapshot>::Set), so a call that takes one
// snapshot (InferCall::Start, each admin RPC, each status page) sees keys,
// limits and prices of the same config, never a mix. Snapshots still held
// by calls in flight stay valid; each is freed when its last holder lets go.
struct RuntimeSnapshot {
  std::shared_ptr<const TenantRegistry> tenants;
  std::shared_ptr<const AdmissionTable> admission;

  const Config& config() const { return tenants->config(); }
};

using Runtime = Snapshot<RuntimeSnapshot>;

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_RUNTIME_H_
