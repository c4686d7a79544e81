// Environment snapshots: order and replacement as Docker keeps them, sharing between
// snapshots, compaction after many reassignments, and long stacks released safely.
#include "planner/environment.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kiln::planner {
namespace {

std::vector<EnvVar> listed(const Environment& env) {
  auto vars = env.vars();
  return {vars.begin(), vars.end()};
}

TEST(Environment, KeepsFirstPlacesAndLatestValues) {
  EnvironmentBuilder builder;
  builder.set("A", "1");
  builder.set("B", "2");
  const Environment first = builder.snapshot();
  builder.set("A", "3");
  builder.set("C", "4");
  const Environment second = builder.snapshot();
  EXPECT_EQ(listed(first), (std::vector<EnvVar>{{"A", "1"}, {"B", "2"}}));
  EXPECT_EQ(listed(second), (std::vector<EnvVar>{{"A", "3"}, {"B", "2"}, {"C", "4"}}));
  EXPECT_EQ(second.size(), 3u);
  EXPECT_EQ(second.bytes(), 6u);
  EXPECT_EQ(*builder.find("A"), "3");
  EXPECT_EQ(builder.find("D"), nullptr);
  // The second stores only what was set after the first.
  EXPECT_EQ(second.own_entries(), 2u);
}

TEST(Environment, ASnapshotWithNothingNewIsTheSameSnapshot) {
  EnvironmentBuilder builder;
  builder.set("A", "1");
  const Environment first = builder.snapshot();
  EXPECT_TRUE(builder.snapshot().same_snapshot(first));
  EXPECT_TRUE(Environment().empty());
}

// 100,000 reassignments of three names: each read stays about the size of the
// environment, not of its history, and every snapshot still reads what it did.
TEST(Environment, ManyReassignmentsAreCompactedWithoutChangingWhatSnapshotsRead) {
  EnvironmentBuilder builder;
  builder.set("KEEP", "k");
  std::vector<Environment> snapshots;
  std::size_t stored = 0;
  for (int i = 0; i < 100000; ++i) {
    builder.set(i % 2 == 0 ? "A" : "B", std::to_string(i));
    snapshots.push_back(builder.snapshot());
    stored += snapshots.back().own_entries();
  }
  EXPECT_LE(stored, 3u * 100001);
  EXPECT_EQ(listed(snapshots.back()), (std::vector<EnvVar>{{"KEEP", "k"}, {"A", "99998"}, {"B", "99999"}}));
  EXPECT_EQ(listed(snapshots[2]), (std::vector<EnvVar>{{"KEEP", "k"}, {"A", "2"}, {"B", "1"}}));
  EXPECT_EQ(listed(snapshots[0]), (std::vector<EnvVar>{{"KEEP", "k"}, {"A", "0"}}));
}

// A stack of 300,000 layers (one name each, never compacted) released from its top:
// one destructor inside the other would overflow the stack.
TEST(Environment, ALongStackIsReleasedWithoutRecursion) {
  Environment top;
  {
    EnvironmentBuilder builder;
    for (int i = 0; i < 300000; ++i) {
      builder.set("v" + std::to_string(i), "x");
      top = builder.snapshot();
    }
  }
  EXPECT_EQ(top.size(), 300000u);
  top = Environment();
  EXPECT_TRUE(top.empty());
}

}  // namespace
}  // namespace kiln::planner
