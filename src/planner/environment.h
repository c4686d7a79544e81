// The environment a step sees (Step::env), shared between steps rather than copied.
//
// Every step of a stage carries the environment in effect there, and a Dockerfile of
// 200,000 ENV lines has 200,000 steps: a copy of the whole list in each made memory grow
// with the square of the line count (20,000 lines took more than 4 GiB). An Environment
// is an immutable snapshot that stores only what was set since the snapshot it was made
// from and shares the rest; EnvironmentBuilder is the mutable side the planner sets
// variables through and looks them up in.
//
// No Debian package offers persistent containers for C++ (immer is not packaged), and
// the planner needs only this much: ordered iteration of a snapshot and O(1) lookups in
// the one being built.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kiln::planner {

/// One environment variable; lists of them keep their order (later entries of
/// the same name have already replaced earlier ones: names are unique).
struct EnvVar {
  std::string name;
  std::string value;
  friend bool operator==(const EnvVar&, const EnvVar&) = default;
};

/// An environment at one point of a stage: the variables in the order they were first
/// set, each with its latest value. An immutable value, cheap to copy (a shared pointer);
/// thread-safe to read and copy from any number of threads.
class Environment {
 public:
  Environment() = default;

  /// The variables in order: first set first; setting a name again replaced its value
  /// in place. O(size()): a snapshot is compacted before the entries it stacks up
  /// outnumber its variables about twice over. The references live as long as this
  /// snapshot (or any copy of it).
  std::vector<std::reference_wrapper<const EnvVar>> vars() const;
  /// The number of variables (distinct names).
  std::size_t size() const;
  bool empty() const { return size() == 0; }
  /// Bytes of all names and values: what the planner's 16 MiB cap counts.
  std::size_t bytes() const;

  /// Whether `other` is this very snapshot (shared, not just equal): a step that sets
  /// nothing shares the one before it.
  bool same_snapshot(const Environment& other) const { return top_ == other.top_; }
  /// The entries this snapshot stores itself; it shares the others with the snapshot
  /// it was made from. Summed over a stage's steps: at most about three per variable
  /// set, however many steps there are.
  std::size_t own_entries() const;

 private:
  friend class EnvironmentBuilder;
  struct Layer;
  using Entry = std::shared_ptr<const EnvVar>;
  explicit Environment(std::shared_ptr<const Layer> top) : top_(std::move(top)) {}
  // The entries of the stack under `top`, then `extra`: each name once, with its latest
  // entry, in the order names were first set.
  static std::vector<const Entry*> in_order(const Layer* top, std::span<const Entry> extra);

  std::shared_ptr<const Layer> top_;  // null: empty
};

/// The environment a stage's instructions are building up: set() and find() by name in
/// O(1), and snapshot() after each instruction. Copyable; a copy is independent (O(size())
/// to copy its index). Not thread-safe.
class EnvironmentBuilder {
 public:
  EnvironmentBuilder() = default;

  /// The value of `name`, or null. Valid until `name` is set again.
  const std::string* find(std::string_view name) const;
  /// Sets `name` to `value`: in place when it is set already, else last.
  void set(std::string name, std::string value);
  std::size_t size() const { return index_.size(); }
  /// Bytes of all names and values.
  std::size_t bytes() const { return bytes_; }

  /// What is set now. O(what was set since the last call), and without a set() since,
  /// the same snapshot again.
  Environment snapshot();

 private:
  using Entry = Environment::Entry;

  Environment last_;             // the latest snapshot()
  std::vector<Entry> pending_;   // set since last_, in order
  // name -> its entry; each key views the name its entry holds.
  std::unordered_map<std::string_view, Entry> index_;
  std::size_t bytes_ = 0;
};

}  // namespace kiln::planner
