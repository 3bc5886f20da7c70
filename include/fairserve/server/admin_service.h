#ifndef FAIRSERVE_SERVER_ADMIN_SERVICE_H_
#define FAIRSERVE_SERVER_ADMIN_SERVICE_H_

#include <functional>
#include <string>

#include "fairserve/admission/admission.h"
#include "fairserve/common/snapshot.h"
#include "fairserve/metering/ledger.h"
#include "fairserve/tenancy/auth_throttle.h"
#include "fairserve/tenancy/tenant_registry.h"
#include "fairserve/admin/v1/admin.grpc.pb.h"

namespace fairserve {

struct AdminServiceDeps {
  Snapshot<TenantRegistry>* tenants = nullptr;
  LedgerWriter* ledger = nullptr;
  std::string ledger_path;
  Admission* admission = nullptr;
  AuthThrottle* auth_throttle = nullptr;
  std::function<absl::Status()> reload;
};

// fairserve.admin.v1.Admin. Synchronous gRPC service: its calls read the
// SQLite ledger, so they run on gRPC's sync thread pool, never on the
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
  // Who is calling: an admin, or a tenant (which may only see itself).
  struct Caller {
    std::shared_ptr<const TenantRegistry> registry;
    bool admin = false;
    std::string tenant_id;
  };
  absl::StatusOr<Caller> Authenticate(const grpc::ServerContext* ctx) const;
  // The tenant a usage/invoice request is about, checked against the caller.
  absl::StatusOr<std::string> TargetTenant(const Caller& caller, const std::string& asked,
                                           bool required) const;
  absl::StatusOr<UsageQuery> Query(const std::string& tenant, const std::string& from,
                                   const std::string& to) const;

  AdminServiceDeps deps_;
};

}  // namespace fairserve

#endif  // FAIRSERVE_SERVER_ADMIN_SERVICE_H_
