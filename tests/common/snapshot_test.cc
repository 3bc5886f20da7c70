#include "fairserve/common/snapshot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace fairserve {
namespace {

TEST(SnapshotTest, ReadersKeepTheirValueAndReplacedValuesAreFreed) {
  Snapshot<std::string> snapshot;
  EXPECT_EQ(snapshot.Get(), nullptr);
  snapshot.Set(std::make_shared<const std::string>("one"));
  std::shared_ptr<const std::string> held = snapshot.Get();
  std::weak_ptr<const std::string> first = held;
  snapshot.Set(std::make_shared<const std::string>("two"));
  EXPECT_EQ(*held, "one");  // a call in flight finishes under its snapshot
  EXPECT_EQ(*snapshot.Get(), "two");
  held.reset();
  // Every config ever published used to stay allocated until shutdown.
  EXPECT_TRUE(first.expired());
}

TEST(SnapshotTest, ConcurrentReadersAndAWriter) {
  Snapshot<std::vector<int>> snapshot(std::make_shared<const std::vector<int>>(100, 0));
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto v = snapshot.Get();
        ASSERT_EQ(v->size(), 100u);
        int first = v->front();
        for (int x : *v) ASSERT_EQ(x, first);  // never a half-written value
      }
    });
  }
  for (int i = 1; i <= 2000; ++i) snapshot.Set(std::make_shared<const std::vector<int>>(100, i));
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(snapshot.Get()->front(), 2000);
}

}  // namespace
}  // namespace fairserve
