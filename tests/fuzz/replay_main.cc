// Runs a fuzz target over files (or every file in directories) once each,
// without libFuzzer: how the normal build runs the seed corpus as a test.
//
//   decode_request_fuzzer_replay tests/fuzz/corpus/decode_request_fuzzer

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void RunFile(const std::filesystem::path& path, int* runs) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ++*runs;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 0;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path p(argv[i]);
    if (std::filesystem::is_directory(p)) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(p)) {
        if (entry.is_regular_file()) RunFile(entry.path(), &runs);
      }
    } else {
      RunFile(p, &runs);
    }
  }
  std::printf("ran %d input(s) without a crash\n", runs);
  return runs > 0 ? 0 : 1;
}
