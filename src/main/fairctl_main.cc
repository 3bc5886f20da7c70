// fairctl: the operator's command-line tool for fairserve.

#include <iostream>
#include <string>
#include <vector>

#include "fairserve/config/config.h"
#include "fairserve/tenancy/api_key.h"
#include "fairserve/version.h"

namespace {

constexpr const char* kUsage = R"(usage: fairctl COMMAND [ARGS]

commands:
  hash-key KEY        print the stored form of an API key (sha256:<hex>) for api_keys
  new-key             make a random API key; prints the key and its hash
  validate FILE       check a config file; prints every problem, exit 1 if any
  version             print the version

exit codes: 0 success, 1 failure, 2 usage error.
)";

int Usage(const std::string& error) {
  std::cerr << "fairctl: " << error << "\n\n" << kUsage;
  return 2;
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
    if (!config.ok()) {
      std::cerr << config.status().message() << "\n";
      return 1;
    }
    std::cout << args[1] << ": OK (" << (*config)->tenants.size() << " tenants)\n";
    return 0;
  }
  return Usage("unknown command '" + cmd + "'");
}
