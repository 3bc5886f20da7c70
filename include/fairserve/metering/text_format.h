#ifndef FAIRSERVE_METERING_TEXT_FORMAT_H_
#define FAIRSERVE_METERING_TEXT_FORMAT_H_

#include <string>
#include <vector>

#include "fairserve/metering/metrics.h"

namespace fairserve {

// The Prometheus text exposition format, version 0.0.4: HELP and TYPE lines,
// label values escaped (\\, \", \n), NaN / +Inf / -Inf spelled as Prometheus
// expects, histograms as _bucket{le=...} (cumulative, ending in +Inf), _sum
// and _count. Pure function.
std::string SerializeText(const std::vector<CollectedFamily>& families);

// A sample value as Prometheus writes it.
std::string FormatValue(double v);
std::string EscapeLabelValue(const std::string& v);

}  // namespace fairserve

#endif  // FAIRSERVE_METERING_TEXT_FORMAT_H_
