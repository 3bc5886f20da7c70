#ifndef FAIRSERVE_SERVER_ADMIN_SERVICE_H_
#define FAIRSERVE_SERVER_ADMIN_SERVICE_H_

#include <functional>
#include <string>

#include <map>
#include <memory>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "fairserve/admission/admission.h"
#include "fairserve/admission/token_bucket.h"
#include "fairserve/common/snapshot.h"
#include "fairserve/metering/ledger.h"
#include "fairserve/tenancy/authenticator.h"
#include "fairserve/server/runtime.h"
#include "fairserve/tenancy/tenant_registry.h"
#include "fairserve/admin/v1/admin.grpc.pb.h"

namespace fairserve {

struct AdminServiceDeps {
  const Runtime* runtime = nullptr;
  // Where GetUsage/GetInvoice read: this replica's ledger, or the fleet's
  // database when ledger.sink is set (every replica then answers the same).
  UsageSource* usage = nullptr;
  const Authenticator* authenticator = nullptr;
  Clock* clock = nullptr;
  std::function<absl::Status()> reload;
  // GetUsage/GetInvoice calls one tenant key may make per second (and in a
  // burst); admins are not limited.
  double tenant_reads_per_second = 2;
  double tenant_read_burst = 10;
};

// fairserve.admin.v1.Admin. Synchronous gRPC service: its calls read the
// SQLite ledger or the fleet's PostgreSQL database (each query bounded by
// its statement timeout), so they run on gRPC's sync thread pool, never on the
// callback threads that serve inference.
class AdminService final : public fairserve::admin::v1::Admin::Service {
 public:
  explicit AdminService(AdminServiceDeps deps) : deps_(deps) {}

  grpc::Status GetUsage(grpc::ServerContext* ctx, const admin::v1::GetUsageRequest* req,
                        admin::v1::GetUsageResponse* resp) override;
  grpc::Status GetInvoice(grpc::ServerContext* ctx, const admin::v1::GetInvoiceRequest* req,
                          admin::v1::GetInvoiceResponse* resp) override;
  grpc::Status ListTenants(grpc::ServerContext* ctx, const admin::v1::ListTenantsRequest* req,
                           admin::v1::ListTenantsResponse* resp) override;
  grpc::Status Reload(grpc::ServerContext* ctx, const admin::v1::ReloadRequest* req,
                      admin::v1::ReloadResponse* resp) override;

 private:
  // The tenant a usage/invoice request is about, checked against the caller
  // (an admin, or a tenant, which may only see itself).
  absl::StatusOr<std::string> TargetTenant(const Principal& caller, const std::string& asked,
                                           bool required) const;
  absl::StatusOr<UsageQuery> Query(const std::string& tenant, const std::string& from,
                                   const std::string& to) const;
  // A tenant's usage reads are rate limited (each reads the ledger); OK for
  // admins. RESOURCE_EXHAUSTED adds a retry-after-ms trailer.
  absl::Status LimitTenantRead(grpc::ServerContext* ctx, const Principal& caller);

  AdminServiceDeps deps_;
  std::mutex buckets_mu_;
  std::map<std::string, std::unique_ptr<TokenBucket>> buckets_ ABSL_GUARDED_BY(buckets_mu_);
};

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_ADMIN_SERVICE_H_
