#ifndef FAIRSERVE_SERVER_ADMISSION_METRICS_H_
#define FAIRSERVE_SERVER_ADMISSION_METRICS_H_

#include <vector>

#include "fairserve/admission/admission.h"
#include "fairserve/metering/metrics.h"

namespace fairserve {

// Admission's per-tenant counters as metric families, read at scrape time so
// the rejection path itself touches only its tenant's atomics:
// fairserve_rejected_requests_total{tenant_id,reason},
// fairserve_queue_depth{tenant_id}, fairserve_inflight_requests{tenant_id}.
std::vector<CollectedFamily> CollectAdmissionMetrics(const Admission& admission);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_ADMISSION_METRICS_H_
