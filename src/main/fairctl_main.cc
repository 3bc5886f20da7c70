// fairctl: the operator's command-line tool for fairserve.

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
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

constexpr const char* kFooter = R"(SOURCE is either the fleet database, --dsn DSN [--table-prefix P] (ledger.sink), or
one or more ledgers, --data-dir DIR [--data-dir DIR2 ...] (one per replica, merged
without double counting).
DSN is a libpq connection string or URI; leave the password out of it and libpq
reads PGPASSWORD or ~/.pgpass. --table-prefix defaults to fairserve_.
DATE is YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC); --from is inclusive, --to exclusive.
Options take --flag value or --flag=value.

exit codes: 0 success, 1 failure, 2 usage error.)";

// A usage error found after parsing: one line, then exit 2.
int UsageError(const std::string& error) {
  std::cerr << "fairctl: " << error << "\nRun with --help for more information.\n";
  return 2;
}

int Failure(const absl::Status& status) {
  std::cerr << "fairctl: " << status.message() << "\n";
  return 1;
}

// What usage, invoice, export and db migrate read: a SOURCE, a period, and
// for invoices the pricing and output format.
struct LedgerFlags {
  std::vector<std::string> data_dirs;
  std::string dsn;
  std::string table_prefix = "fairserve_";
  std::string tenant, from, to;
  std::string config, format = "table";
};

// A DATE as ParseUtcDate reads it; the error names the problem.
const CLI::Validator kDate(
    [](std::string& text) {
      absl::StatusOr<int64_t> t = fairserve::ParseUtcDate(text);
      return t.ok() ? std::string() : std::string(t.status().message());
    },
    "DATE");

void AddSource(CLI::App* cmd, LedgerFlags* f) {
  cmd->add_option("--data-dir", f->data_dirs, "a replica's data directory (repeatable)")
      ->type_name("DIR")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--dsn", f->dsn, "the fleet database (libpq connection string or URI)");
  cmd->add_option("--table-prefix", f->table_prefix, "table name prefix of ledger.sink");
}

void AddPeriod(CLI::App* cmd, LedgerFlags* f) {
  cmd->add_option("--from", f->from, "first instant (inclusive)")->check(kDate);
  cmd->add_option("--to", f->to, "end (exclusive)")->check(kDate);
}

// The usage query of the flags, checked; a usage error otherwise.
std::string Query(const LedgerFlags& f, fairserve::UsageQuery* q) {
  if (f.data_dirs.empty() == f.dsn.empty()) {
    return "give either --dsn (the fleet database) or one or more --data-dir";
  }
  q->tenant_id = f.tenant;
  if (!f.from.empty()) q->from = *fairserve::ParseUtcDate(f.from);
  if (!f.to.empty()) q->to = *fairserve::ParseUtcDate(f.to);
  return "";
}

std::vector<std::string> Ledgers(const LedgerFlags& f) {
  std::vector<std::string> out;
  for (const std::string& d : f.data_dirs) out.push_back(fairserve::LedgerPath(d));
  return out;
}

fairserve::PostgresOptions Database(const LedgerFlags& f) {
  fairserve::PostgresOptions o;
  o.dsn = f.dsn;
  o.table_prefix = f.table_prefix;
  return o;
}

int Export(const LedgerFlags& f) {
  fairserve::UsageQuery q;
  if (std::string e = Query(f, &q); !e.empty()) return UsageError(e);
  absl::StatusOr<std::vector<fairserve::DailyUsageRow>> rows =
      !f.dsn.empty() ? fairserve::PostgresUsage(Database(f)).Daily(q.from, q.to)
                     : fairserve::ReadDailyUsage(Ledgers(f), q.from, q.to);
  if (!rows.ok()) return Failure(rows.status());
  std::cout << fairserve::FormatDailyCsv(*rows);
  return 0;
}

int Migrate(const LedgerFlags& f) {
  auto applied = fairserve::MigratePostgres(Database(f));
  if (!applied.ok()) return Failure(applied.status());
  if (applied->empty()) {
    std::cout << "schema is current (version " << fairserve::PostgresSchemaVersion() << ")\n";
  }
  for (const std::string& name : *applied) std::cout << "applied " << name << "\n";
  return 0;
}

int UsageOrInvoice(bool invoice, const LedgerFlags& f) {
  fairserve::UsageQuery q;
  if (std::string e = Query(f, &q); !e.empty()) return UsageError(e);
  auto usage = !f.dsn.empty() ? fairserve::PostgresUsage(Database(f)).Usage(q)
                              : fairserve::ReadUsage(Ledgers(f), q);
  if (!usage.ok()) return Failure(usage.status());
  if (!invoice) {
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
  fairserve::Invoice inv = fairserve::MakeInvoice(*usage, pricing, q.tenant_id, q.from, q.to);
  auto text = fairserve::FormatInvoice(inv, f.format);
  if (!text.ok()) return UsageError(std::string(text.status().message()));
  std::cout << *text;
  return 0;
}

int Validate(const std::string& path) {
  auto config = fairserve::LoadAndCheckConfig(path);
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 1;
  }
  std::cout << path << ": OK (" << (*config)->tenants.size() << " tenants)\n";
  return 0;
}

// tenants, partitions, k8s render: views of a config file.
int ConfigView(const std::string& view, const std::string& config_path,
               const std::string& out_dir) {
  auto config = fairserve::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::cerr << config.status().message() << "\n";
    return 1;
  }
  if (view == "tenants") {
    std::cout << fairserve::RenderTenantTable(**config);
    return 0;
  }
  if (view == "partitions") {
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
  CLI::App app("fairctl: the operator's tool for fairserve.", "fairctl");
  app.footer(kFooter);
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("fairctl ") + fairserve::kFairserveVersion);
  // What the chosen command runs, once parsing succeeded.
  std::function<int()> run;

  CLI::App* version = app.add_subcommand("version", "print the version");
  version->callback([&] {
    run = [] {
      std::cout << "fairctl " << fairserve::kFairserveVersion << "\n";
      return 0;
    };
  });

  std::string key;
  CLI::App* hash = app.add_subcommand(
      "hash-key", "print the stored form of an API key (sha256:<hex>) for api_keys");
  hash->add_option("KEY", key, "the API key")->required();
  hash->callback([&] {
    run = [&] {
      std::cout << fairserve::HashApiKey(key) << "\n";
      return 0;
    };
  });

  app.add_subcommand("new-key", "make a random API key; prints the key and its hash")
      ->callback([&] {
        run = [] {
          std::string k = fairserve::GenerateApiKey();
          std::cout << "key:  " << k << "\nhash: " << fairserve::HashApiKey(k)
                    << "\n(give the key to the tenant; put only the hash in api_keys)\n";
          return 0;
        };
      });

  std::string file;
  CLI::App* validate =
      app.add_subcommand("validate", "check a config file; prints every problem, exit 1 if any");
  validate->add_option("FILE", file, "the config file")->required();
  validate->callback([&] { run = [&] { return Validate(file); }; });

  std::string config_path, out_dir;
  for (const char* view : {"tenants", "partitions"}) {
    CLI::App* cmd = app.add_subcommand(
        view, std::string(view) == "tenants"
                  ? "table of tenants and their limits"
                  : "each tenant's memory share and bytes per device, and the shared pool");
    cmd->add_option("--config", config_path, "the config file")->required()->type_name("FILE");
    cmd->callback([&, view] { run = [&, view] { return ConfigView(view, config_path, ""); }; });
  }
  CLI::App* k8s = app.add_subcommand("k8s", "Kubernetes manifests");
  k8s->require_subcommand(1);
  CLI::App* render = k8s->add_subcommand(
      "render",
      "write DIR/tenant-<id>.yaml per tenant: Namespace (label tenant: <id>), ResourceQuota and "
      "LimitRange for namespace-per-tenant isolation");
  render->add_option("--config", config_path, "the config file")->required()->type_name("FILE");
  render->add_option("--out", out_dir, "output directory")->required()->type_name("DIR");
  render->callback([&] { run = [&] { return ConfigView("k8s", config_path, out_dir); }; });

  LedgerFlags f;
  CLI::App* usage = app.add_subcommand("usage", "usage per tenant, model and status");
  AddSource(usage, &f);
  usage->add_option("--tenant", f.tenant, "one tenant only")->type_name("ID");
  AddPeriod(usage, &f);
  usage->callback([&] { run = [&] { return UsageOrInvoice(false, f); }; });

  CLI::App* invoice = app.add_subcommand(
      "invoice",
      "price a tenant's usage with the config's pricing (defaults: 0.0001 per compute-second, "
      "0.20 per 1000 requests); price tiers apply to the total of every source");
  AddSource(invoice, &f);
  invoice->add_option("--tenant", f.tenant, "the tenant")->required()->type_name("ID");
  AddPeriod(invoice, &f);
  invoice->add_option("--config", f.config, "pricing from this config")->type_name("FILE");
  invoice->add_option("--format", f.format, "output format")
      ->check(CLI::IsMember({"table", "json", "csv"}));
  invoice->callback([&] { run = [&] { return UsageOrInvoice(true, f); }; });

  CLI::App* exp = app.add_subcommand(
      "export", "for finance: one CSV row per (UTC day, tenant, model)");
  AddSource(exp, &f);
  AddPeriod(exp, &f);
  exp->add_option("--format", f.format, "output format")->check(CLI::IsMember({"csv"}));
  exp->callback([&] { run = [&] { return Export(f); }; });

  CLI::App* db = app.add_subcommand("db", "the fleet usage database");
  db->require_subcommand(1);
  CLI::App* migrate = db->add_subcommand(
      "migrate",
      "create or upgrade the fleet usage tables in PostgreSQL (deploy/postgres/); safe to run "
      "again and from several hosts");
  migrate->add_option("--dsn", f.dsn, "the fleet database")->required();
  migrate->add_option("--table-prefix", f.table_prefix, "table name prefix of ledger.sink");
  migrate->callback([&] { run = [&] { return Migrate(f); }; });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help, the version, or the error
    return code == 0 ? 0 : 2;
  }
  return run ? run() : UsageError("missing command");
}
