#include "fairserve/server/admin_service.h"

#include "absl/strings/str_cat.h"
#include "fairserve/common/status_macros.h"
#include "fairserve/metering/invoice.h"
#include "fairserve/server/inference_service.h"
#include "fairserve/tenancy/api_key.h"

namespace fairserve {
namespace {

absl::string_view Metadata(const grpc::ServerContext* ctx, absl::string_view key) {
  auto it = ctx->client_metadata().find(grpc::string_ref(key.data(), key.size()));
  if (it == ctx->client_metadata().end()) return {};
  return absl::string_view(it->second.data(), it->second.size());
}

}  // namespace

absl::StatusOr<AdminService::Caller> AdminService::Authenticate(
    const grpc::ServerContext* ctx) const {
  std::string peer(PeerHost(ctx->peer()));
  RETURN_IF_ERROR(deps_.auth_throttle->Check(peer));
  Caller caller;
  caller.registry = deps_.tenants->Get();
  absl::string_view key = ExtractApiKey(Metadata(ctx, "authorization"), Metadata(ctx, "x-api-key"));
  if (caller.registry->IsAdmin(key)) {
    caller.admin = true;
    return caller;
  }
  if (const TenantConfig* t = caller.registry->Authenticate(key)) {
    caller.tenant_id = t->id;
    return caller;
  }
  deps_.auth_throttle->RecordFailure(peer);
  return absl::UnauthenticatedError(
      "missing or invalid API key; send an admin key (server.admin_api_keys) or a tenant key "
      "as 'authorization: Bearer <key>'");
}

absl::StatusOr<std::string> AdminService::TargetTenant(const Caller& caller,
                                                       const std::string& asked,
                                                       bool required) const {
  if (!caller.admin) {
    if (!asked.empty() && asked != caller.tenant_id) {
      return absl::PermissionDeniedError("a tenant key may only read its own tenant's usage");
    }
    return caller.tenant_id;
  }
  if (asked.empty() && required) return absl::InvalidArgumentError("tenant_id is required");
  return asked;
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
  auto caller = Authenticate(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto tenant = TargetTenant(*caller, req->tenant_id(), /*required=*/false);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  auto query = Query(*tenant, req->from(), req->to());
  if (!query.ok()) return ToGrpcStatus(query.status());
  deps_.ledger->Flush().IgnoreError();  // include the open commit window
  auto rows = ReadUsage({deps_.ledger_path}, *query);
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
  auto caller = Authenticate(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  auto tenant = TargetTenant(*caller, req->tenant_id(), /*required=*/true);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  auto query = Query(*tenant, req->from(), req->to());
  if (!query.ok()) return ToGrpcStatus(query.status());
  deps_.ledger->Flush().IgnoreError();
  auto rows = ReadUsage({deps_.ledger_path}, *query);
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
  auto caller = Authenticate(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (!caller->admin) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "ListTenants needs an admin key");
  }
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
    if (auto state = deps_.admission->Find(t.id)) {
      info->set_inflight(state->inflight().load());
      info->set_queued(state->queued()->load());
    }
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::Reload(grpc::ServerContext* ctx, const admin::v1::ReloadRequest*,
                                  admin::v1::ReloadResponse* resp) {
  auto caller = Authenticate(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  if (!caller->admin) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "Reload needs an admin key");
  }
  absl::Status s = deps_.reload();
  if (!s.ok()) return ToGrpcStatus(s);
  resp->set_tenants(static_cast<int32_t>(deps_.tenants->Get()->config().tenants.size()));
  return grpc::Status::OK;
}

}  // namespace fairserve
