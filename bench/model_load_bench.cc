// Cold-load time of each model of a repository through the libtorch loader
// (what a cache miss costs), median and spread over --reps loads.
//
//   build/bin/model_load_bench --models build/demo-models [--reps 5]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "fairserve/common/units.h"
#include "fairserve/models/executor.h"
#include "fairserve/models/model_config.h"

int main(int argc, char** argv) {
  std::string root = "build/demo-models";
  int reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--models") root = argv[i + 1];
    if (a == "--reps") reps = std::stoi(argv[i + 1]);
  }
  fairserve::ConfigureTorchRuntime({1});
  auto loader = fairserve::MakeTorchModelLoader();
  std::printf("%-12s %12s %10s %10s %10s\n", "model", "bytes", "median ms", "min ms", "max ms");
  std::vector<std::filesystem::path> dirs;
  for (const auto& e : std::filesystem::directory_iterator(root)) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& dir : dirs) {
    std::string name = dir.filename().string();
    auto config = fairserve::LoadModelConfig((dir / "config.yaml").string(), name);
    if (!config.ok()) continue;
    std::vector<double> ms;
    uint64_t bytes = 0;
    for (int r = 0; r < reps; ++r) {
      auto start = std::chrono::steady_clock::now();
      auto exec = loader->Load(*config, (dir / "1" / "model.pt").string());
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      if (!exec.ok()) {
        std::fprintf(stderr, "%s: %s\n", name.c_str(), exec.status().ToString().c_str());
        return 1;
      }
      bytes = (*exec)->memory_bytes();
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%-12s %12s %10.2f %10.2f %10.2f\n", name.c_str(),
                fairserve::FormatBytes(bytes).c_str(), ms[ms.size() / 2], ms.front(), ms.back());
  }
  return 0;
}
