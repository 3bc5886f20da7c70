#ifndef FAIRSERVE_SERVER_STATUS_HISTORY_H_
#define FAIRSERVE_SERVER_STATUS_HISTORY_H_

// The status page's last hour, per tenant: requests/s, rejections/s by
// reason, and the tenant's share of compute against its share of the
// weights. Kept in process, in a ring of points, from the same metrics
// /metrics serves (so the charts and Prometheus never disagree), and drawn
// as small inline SVG charts: no script, nothing fetched from anywhere.

#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "fairserve/metering/metrics.h"

namespace fairserve {

class StatusHistory {
 public:
  // `points`: how many samples each series keeps (an hour at one sample
  // every 10 s: 360).
  explicit StatusHistory(size_t points = 360) : points_(points) {}

  // One sample: the registry's families at `t_seconds` (any monotonic
  // clock). Rates are taken between consecutive samples; the first sample
  // only sets the baseline. Tenants no longer in the metrics are dropped.
  // Thread-safe; called from the sampler thread.
  void Record(double t_seconds, const std::vector<CollectedFamily>& families);

  struct Series {
    std::vector<double> requests_per_s;
    std::map<std::string, std::vector<double>> rejections_per_s;  // by reason
    std::vector<double> compute_share;  // of all tenants' compute in the interval, 0..1
    std::vector<double> weight_share;   // of all tenants' weights, 0..1
  };
  // The series of every tenant, oldest point first. Thread-safe.
  std::map<std::string, Series> Get() const;

 private:
  struct Totals {
    double requests = 0, compute = 0, weight = 0;
    std::map<std::string, double> rejected;
  };
  const size_t points_;
  mutable std::mutex mu_;
  double last_t_ = -1;                     // guarded by mu_
  std::map<std::string, Totals> last_;     // guarded by mu_
  std::map<std::string, Series> series_;   // guarded by mu_
};

// The charts' line colours, by line index (the legends use the same).
const char* ChartColour(size_t i);

// One small chart: each line of `lines` (same length, oldest first) scaled
// to the largest value of all of them (at least `min_max`), as an inline
// <svg> with a <title> for screen readers and hover. `chart` names it in a
// data-chart attribute. Colours cycle through a fixed palette; a line whose
// name ends in "(dashed)" is drawn dashed.
std::string SvgChart(const std::string& chart, const std::string& title,
                     const std::vector<std::pair<std::string, std::vector<double>>>& lines,
                     double min_max);

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_STATUS_HISTORY_H_
