#include "fairserve/server/admin_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/metering/invoice.h"
#include "fairserve/server/grpc_auth.h"
#include "fairserve/server/inference_service.h"
#include "fairserve/tenancy/api_key.h"

namespace fairserve {
absl::StatusOr<std::string> AdminService::TargetTenant(const Principal& caller,
                                                       const std::string& asked,
                                                       bool required) const {
  if (!caller.admin) {
    if (!asked.empty() && asked != caller.tenant->id) {
      return absl::PermissionDeniedError("a tenant key may only read its own tenant's usage");
    }
    return caller.tenant->id;
  }
  if (asked.empty() && required) return absl::InvalidArgumentError("tenant_id is required");
  return asked;
}

absl::Status AdminService::LimitTenantRead(grpc::ServerContext* ctx, const Principal& caller) {
  if (caller.admin) return absl::OkStatus();
  TokenBucket* bucket;
  {
    std::lock_guard<std::mutex> lock(buckets_mu_);
    std::unique_ptr<TokenBucket>& b = buckets_[caller.tenant->id];
    if (!b) b = std::make_unique<TokenBucket>(deps_.tenant_reads_per_second, deps_.tenant_read_burst);
    bucket = b.get();
  }
  TokenBucket::Decision d = bucket->TryAcquire(deps_.clock->Now());
  if (d.allowed) return absl::OkStatus();
  auto ms = std::max<int64_t>(1, std::chrono::ceil<std::chrono::milliseconds>(d.retry_after).count());
  ctx->AddTrailingMetadata("retry-after-ms", std::to_string(ms));
  return absl::ResourceExhaustedError(absl::StrCat(
      "tenant '", caller.tenant->id, "' reads its usage too often (at most ",
      deps_.tenant_reads_per_second, " per second); retry after ", ms, " ms"));
}

absl::StatusOr<UsageQuery> AdminService::Query(const std::string& tenant, const std::string& from,
                                               const std::string& to) const {
  UsageQuery q;
  q.tenant_id = tenant;
  if (!from.empty()) {
    ASSIGN_OR_RETURN(q.from, ParseUtcDate(from));
  }
  if (!to.empty()) {
    ASSIGN_OR_RETURN(q.to, ParseUtcDate(to));
  }
  return q;
}

grpc::Status AdminService::GetUsage(grpc::ServerContext* ctx,
                                    const admin::v1::GetUsageRequest* req,
                                    admin::v1::GetUsageResponse* resp) {
  std::shared_ptr<const RuntimeSnapshot> runtime = deps_.runtime->Get();
  auto caller = AuthenticateGrpcCall(*deps_.authenticator, runtime->tenants, ctx, CallerKind::kAny);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::Status limited = LimitTenantRead(ctx, *caller);
  if (!limited.ok()) return ToGrpcStatus(limited);
  auto tenant = TargetTenant(*caller, req->tenant_id(), /*required=*/false);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  auto query = Query(*tenant, req->from(), req->to());
  if (!query.ok()) return ToGrpcStatus(query.status());
  auto rows = deps_.usage->Usage(*query);
  if (!rows.ok()) return ToGrpcStatus(rows.status());
  for (const UsageRow& r : *rows) {
    auto* out = resp->add_rows();
    out->set_tenant_id(r.tenant_id);
    out->set_model_name(r.model_name);
    out->set_status(r.status);
    out->set_requests(r.requests);
    out->set_samples(r.samples);
    out->set_compute_seconds(r.compute_seconds);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::GetInvoice(grpc::ServerContext* ctx,
                                      const admin::v1::GetInvoiceRequest* req,
                                      admin::v1::GetInvoiceResponse* resp) {
  std::shared_ptr<const RuntimeSnapshot> runtime = deps_.runtime->Get();
  auto caller = AuthenticateGrpcCall(*deps_.authenticator, runtime->tenants, ctx, CallerKind::kAny);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::Status limited = LimitTenantRead(ctx, *caller);
  if (!limited.ok()) return ToGrpcStatus(limited);
  auto tenant = TargetTenant(*caller, req->tenant_id(), /*required=*/true);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  auto query = Query(*tenant, req->from(), req->to());
  if (!query.ok()) return ToGrpcStatus(query.status());
  auto rows = deps_.usage->Usage(*query);
  if (!rows.ok()) return ToGrpcStatus(rows.status());
  Invoice inv = MakeInvoice(*rows, caller->registry->config().pricing, *tenant, query->from,
                            query->to);
  resp->set_tenant_id(inv.tenant_id);
  resp->set_from(FormatUtc(inv.from));
  resp->set_to(FormatUtc(inv.to));
  resp->set_currency(inv.currency);
  resp->set_compute_seconds(inv.compute_seconds);
  resp->set_requests(inv.requests);
  resp->set_failed_requests(inv.failed_requests);
  for (const InvoiceLine& l : inv.lines) {
    auto* line = resp->add_lines();
    line->set_item(l.item);
    line->set_quantity(l.quantity);
    line->set_unit(l.unit);
    line->set_unit_price(l.unit_price);
    line->set_amount_cents(l.amount_cents);
  }
  resp->set_total_cents(inv.total_cents);
  return grpc::Status::OK;
}

grpc::Status AdminService::ListTenants(grpc::ServerContext* ctx,
                                       const admin::v1::ListTenantsRequest*,
                                       admin::v1::ListTenantsResponse* resp) {
  std::shared_ptr<const RuntimeSnapshot> runtime = deps_.runtime->Get();
  auto caller = AuthenticateGrpcCall(*deps_.authenticator, runtime->tenants, ctx,
                                     CallerKind::kAdmin, "ListTenants");
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  for (const TenantConfig& t : caller->registry->config().tenants) {
    auto* info = resp->add_tenants();
    info->set_id(t.id);
    info->set_weight(t.weight);
    info->set_requests_per_second(t.rate_limit.requests_per_second);
    info->set_burst(t.rate_limit.burst);
    info->set_max_inflight(t.max_inflight);
    info->set_max_queue(t.max_queue);
    info->set_memory_limit(t.memory_limit);
    for (const std::string& m : t.models) info->add_models(m);
    if (auto state = runtime->admission->Find(t.id)) {
      info->set_inflight(state->inflight().load());
      info->set_queued(state->waiting().load());
    }
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::Reload(grpc::ServerContext* ctx, const admin::v1::ReloadRequest*,
                                  admin::v1::ReloadResponse* resp) {
  std::shared_ptr<const RuntimeSnapshot> runtime = deps_.runtime->Get();
  auto caller = AuthenticateGrpcCall(*deps_.authenticator, runtime->tenants, ctx,
                                     CallerKind::kAdmin, "Reload");
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::Status s = deps_.reload();
  if (!s.ok()) return ToGrpcStatus(s);
  resp->set_tenants(static_cast<int32_t>(deps_.runtime->Get()->config().tenants.size()));
  return grpc::Status::OK;
}

}  // namespace fairserve
