// fairctl: the operator's command-line tool for fairserve.

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "fairserve/config/config.h"
#include "fairserve/models/model_repository.h"
#include "fairserve/config/render.h"
#include "fairserve/metering/invoice.h"
#include "fairserve/metering/ledger.h"
#include "fairserve/metering/postgres_usage.h"
#include "fairserve/tenancy/api_key.h"
#include "fairserve/version.h"

namespace {

constexpr const char* kUsage = R"(usage: fairctl COMMAND [ARGS]

commands:
  hash-key KEY        print the stored form of an API key (sha256:<hex>) for api_keys
  new-key             make a random API key; prints the key and its hash
  validate FILE       check a config file; prints every problem, exit 1 if any
  tenants --config FILE
                      table of tenants and their limits
  partitions --config FILE
                      each tenant's memory share and bytes per device, and the shared pool
  k8s render --config FILE --out DIR
                      write DIR/tenant-<id>.yaml per tenant: Namespace (label tenant: <id>),
                      ResourceQuota and LimitRange for namespace-per-tenant isolation
  usage SOURCE [--tenant ID] [--from DATE] [--to DATE]
                      usage per tenant, model and status
  invoice SOURCE --tenant ID [--from DATE] [--to DATE] [--config FILE]
          [--format table|json|csv]
                      price a tenant's usage with the config's pricing (defaults:
                      0.0001 per compute-second, 0.20 per 1000 requests); price
                      tiers apply to the total of every source
  export SOURCE [--from DATE] [--to DATE] [--format csv]
                      for finance: one CSV row per (UTC day, tenant, model)
  db migrate --dsn DSN [--table-prefix P]
                      create or upgrade the fleet usage tables in PostgreSQL
                      (deploy/postgres/); safe to run again and from several hosts
  version             print the version

SOURCE is either the fleet database, --dsn DSN [--table-prefix P] (ledger.sink), or
one or more ledgers, --data-dir DIR [--data-dir DIR2 ...] (one per replica, merged
without double counting).
DSN is a libpq connection string or URI; leave the password out of it and libpq
reads PGPASSWORD or ~/.pgpass. --table-prefix defaults to fairserve_.
DATE is YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC); --from is inclusive, --to exclusive.

exit codes: 0 success, 1 failure, 2 usage error.
)";

int Usage(const std::string& error) {
  std::cerr << "fairctl: " << error << "\n\n" << kUsage;
  return 2;
}

struct LedgerFlags {
  std::vector<std::string> ledgers;
  std::optional<std::string> dsn;
  std::string table_prefix = "fairserve_";
  fairserve::UsageQuery query;
  std::string config, format = "table";
};

// Parses the flags shared by usage and invoice; returns a usage error or "".
std::string ParseLedgerFlags(const std::vector<std::string>& args, LedgerFlags* f) {
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (i + 1 >= args.size()) return a + " needs a value";
    const std::string& v = args[++i];
    if (a == "--data-dir") {
      f->ledgers.push_back(fairserve::LedgerPath(v));
    } else if (a == "--dsn") {
      f->dsn = v;
    } else if (a == "--table-prefix") {
      f->table_prefix = v;
    } else if (a == "--tenant") {
      f->query.tenant_id = v;
    } else if (a == "--from" || a == "--to") {
      auto t = fairserve::ParseUtcDate(v);
      if (!t.ok()) return std::string(t.status().message());
      (a == "--from" ? f->query.from : f->query.to) = *t;
    } else if (a == "--config") {
      f->config = v;
    } else if (a == "--format") {
      f->format = v;
    } else {
      return "unknown option '" + a + "'";
    }
  }
  if (f->ledgers.empty() == !f->dsn.has_value()) {
    return "give either --dsn (the fleet database) or one or more --data-dir";
  }
  return "";
}

fairserve::PostgresOptions Database(const LedgerFlags& f) {
  fairserve::PostgresOptions o;
  o.dsn = *f.dsn;
  o.table_prefix = f.table_prefix;
  return o;
}

int Export(const std::vector<std::string>& args) {
  LedgerFlags f;
  f.format = "csv";
  std::string error = ParseLedgerFlags(args, &f);
  if (!error.empty()) return Usage(error);
  if (f.format != "csv") return Usage("export writes --format csv only");
  if (!f.query.tenant_id.empty()) return Usage("export covers every tenant; drop --tenant");
  absl::StatusOr<std::vector<fairserve::DailyUsageRow>> rows =
      f.dsn ? fairserve::PostgresUsage(Database(f)).Daily(f.query.from, f.query.to)
            : fairserve::ReadDailyUsage(f.ledgers, f.query.from, f.query.to);
  if (!rows.ok()) {
    std::cerr << "fairctl: " << rows.status().message() << "\n";
    return 1;
  }
  std::cout << fairserve::FormatDailyCsv(*rows);
  return 0;
}

int Db(const std::vector<std::string>& args) {
  if (args.size() < 2 || args[1] != "migrate") return Usage("db takes the subcommand 'migrate'");
  LedgerFlags f;
  std::vector<std::string> rest(args.begin() + 1, args.end());
  std::string error = ParseLedgerFlags(rest, &f);
  if (!error.empty() || !f.ledgers.empty() || !f.dsn) {
    return Usage(error.empty() || !f.ledgers.empty() ? "db migrate needs --dsn DSN" : error);
  }
  auto applied = fairserve::MigratePostgres(Database(f));
  if (!applied.ok()) {
    std::cerr << "fairctl: " << applied.status().message() << "\n";
    return 1;
  }
  if (applied->empty()) {
    std::cout << "schema is current (version " << fairserve::PostgresSchemaVersion() << ")\n";
  }
  for (const std::string& name : *applied) std::cout << "applied " << name << "\n";
  return 0;
}

int UsageOrInvoice(const std::string& cmd, const std::vector<std::string>& args) {
  LedgerFlags f;
  std::string error = ParseLedgerFlags(args, &f);
  if (!error.empty()) return Usage(error);
  if (cmd == "invoice" && f.query.tenant_id.empty()) return Usage("invoice needs --tenant ID");
  auto usage = f.dsn ? fairserve::PostgresUsage(Database(f)).Usage(f.query)
                     : fairserve::ReadUsage(f.ledgers, f.query);
  if (!usage.ok()) {
    std::cerr << "fairctl: " << usage.status().message() << "\n";
    return 1;
  }
  if (cmd == "usage") {
    std::cout << absl::StrFormat("%-20s %-20s %-20s %10s %10s %16s\n", "tenant", "model",
                                 "status", "requests", "samples", "compute_s");
    for (const auto& r : *usage) {
      std::cout << absl::StrFormat("%-20s %-20s %-20s %10d %10d %16.6f\n", r.tenant_id,
                                   r.model_name, r.status, r.requests, r.samples,
                                   r.compute_seconds);
    }
    return 0;
  }
  fairserve::PricingConfig pricing;
  if (!f.config.empty()) {
    auto config = fairserve::LoadConfigFile(f.config);
    if (!config.ok()) {
      std::cerr << config.status().message() << "\n";
      return 1;
    }
    pricing = (*config)->pricing;
  }
  fairserve::Invoice invoice =
      fairserve::MakeInvoice(*usage, pricing, f.query.tenant_id, f.query.from, f.query.to);
  auto text = fairserve::FormatInvoice(invoice, f.format);
  if (!text.ok()) return Usage(std::string(text.status().message()));
  std::cout << *text;
  return 0;
}

// tenants, partitions, k8s render: views of a config file.
int ConfigViews(const std::string& cmd, std::vector<std::string> args) {
  if (cmd == "k8s") {
    if (args.size() < 2 || args[1] != "render") return Usage("k8s takes the subcommand 'render'");
    args.erase(args.begin());
  }
  std::string config_path, out_dir;
  for (size_t i = 1; i < args.size(); ++i) {
    if (i + 1 >= args.size()) return Usage(args[i] + " needs a value");
    if (args[i] == "--config") {
      config_path = args[++i];
    } else if (args[i] == "--out" && cmd == "k8s") {
      out_dir = args[++i];
    } else {
      return Usage("unknown option '" + args[i] + "'");
    }
  }
  if (config_path.empty()) return Usage(cmd + " needs --config FILE");
  if (cmd == "k8s" && out_dir.empty()) return Usage("k8s render needs --out DIR");
  auto config = fairserve::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 1;
  }
  if (cmd == "tenants") {
    std::cout << fairserve::RenderTenantTable(**config);
    return 0;
  }
  if (cmd == "partitions") {
    std::cout << fairserve::RenderPartitions(**config);
    return 0;
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  for (const auto& t : (*config)->tenants) {
    std::string path = out_dir + "/" + fairserve::TenantNamespace(t.id) + ".yaml";
    std::ofstream out(path);
    out << fairserve::RenderTenantManifests(t);
    if (!out) {
      std::cerr << "fairctl: cannot write " << path << "\n";
      return 1;
    }
    std::cout << "wrote " << path << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return Usage("missing command");
  const std::string& cmd = args[0];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "version" || cmd == "--version") {
    std::cout << "fairctl " << fairserve::kFairserveVersion << "\n";
    return 0;
  }
  if (cmd == "hash-key") {
    if (args.size() != 2) return Usage("hash-key takes exactly one KEY");
    std::cout << fairserve::HashApiKey(args[1]) << "\n";
    return 0;
  }
  if (cmd == "new-key") {
    if (args.size() != 1) return Usage("new-key takes no arguments");
    std::string key = fairserve::GenerateApiKey();
    std::cout << "key:  " << key << "\nhash: " << fairserve::HashApiKey(key)
              << "\n(give the key to the tenant; put only the hash in api_keys)\n";
    return 0;
  }
  if (cmd == "validate") {
    if (args.size() != 2) return Usage("validate takes exactly one FILE");
    auto config = fairserve::LoadConfigFile(args[1]);
    absl::Status status = config.status();
    if (status.ok()) status = fairserve::CheckConfigModels(**config);
    if (!status.ok()) {
      std::cerr << status.message() << "\n";
      return 1;
    }
    std::cout << args[1] << ": OK (" << (*config)->tenants.size() << " tenants)\n";
    return 0;
  }
  if (cmd == "usage" || cmd == "invoice") return UsageOrInvoice(cmd, args);
  if (cmd == "export") return Export(args);
  if (cmd == "db") return Db(args);
  if (cmd == "tenants" || cmd == "partitions" || cmd == "k8s") return ConfigViews(cmd, args);
  return Usage("unknown command '" + cmd + "'");
}
