#ifndef FAIRSERVE_TESTS_TESTING_TEST_DIR_H_
#define FAIRSERVE_TESTS_TESTING_TEST_DIR_H_

// A scratch directory of one test's own, for fixtures that write files.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace fairserve {
namespace testing_util {

// An empty directory under gtest's TempDir() named PREFIX-PID-TEST (ctest
// runs test processes in parallel, so the PID keeps them apart). Call it
// from SetUp or a test body.
inline std::filesystem::path MakeTestDir(const std::string& prefix) {
  std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      (prefix + "-" + std::to_string(getpid()) + "-" +
       ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Removes a MakeTestDir directory when its test is done, unless
// FAIRSERVE_KEEP_TEST_DIRS is set (to read what a failed test left).
inline void RemoveTestDir(const std::filesystem::path& dir) {
  if (dir.empty() || std::getenv("FAIRSERVE_KEEP_TEST_DIRS") != nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace testing_util
}  // namespace fairserve

#endif  // FAIRSERVE_TESTS_TESTING_TEST_DIR_H_
