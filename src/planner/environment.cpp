// Snapshots as a stack of layers: each holds the entries set since the layer below it
// (a name set again appears again, higher up), so a new snapshot costs what was set, not
// the whole environment. Reading one replays the stack from the bottom. A stack whose
// entries outnumber its variables about twice is compacted into one layer holding each
// variable once, so a read stays O(size) even after many reassignments of a few names;
// a compaction is paid for by the reassignments that made it due, and entries are
// shared pointers, so it copies no names or values.
#include "planner/environment.h"

namespace kiln::planner {

struct Environment::Layer {
  Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;
  ~Layer();

  // The layer this one was set on; null for the bottom layer. Mutable only so that the
  // destructor can unlink the stack (see there).
  mutable std::shared_ptr<const Layer> below;
  std::vector<Entry> set;   // in the order set
  std::size_t size = 0;     // distinct names in this layer and those below
  std::size_t bytes = 0;    // of those names and their values
  std::size_t entries = 0;  // set.size() of this layer and of those below: what a read replays
};

// Releasing the top of a stack of 200,000 layers one destructor inside the other would
// overflow the stack: each layer below that only this one holds is unlinked in a loop.
// A use_count of 1 means no one else can take a reference meanwhile (there are no weak
// pointers), so the check is sound across threads.
Environment::Layer::~Layer() {
  std::shared_ptr<const Layer> next = std::move(below);
  while (next && next.use_count() == 1) next = std::move(next->below);
}

std::vector<const Environment::Entry*> Environment::in_order(const Layer* top, std::span<const Entry> extra) {
  std::vector<const Layer*> stack;
  for (const Layer* layer = top; layer != nullptr; layer = layer->below.get()) stack.push_back(layer);
  std::vector<const Entry*> out;
  std::unordered_map<std::string_view, std::size_t> position;  // name -> index in out
  position.reserve(top != nullptr ? top->size + extra.size() : extra.size());
  const auto add = [&](const Entry& entry) {
    auto [at, added] = position.try_emplace(entry->name, out.size());
    if (added) {
      out.push_back(&entry);
    } else {
      out[at->second] = &entry;
    }
  };
  for (auto layer = stack.rbegin(); layer != stack.rend(); ++layer) {
    for (const Entry& entry : (*layer)->set) add(entry);
  }
  for (const Entry& entry : extra) add(entry);
  return out;
}

std::vector<std::reference_wrapper<const EnvVar>> Environment::vars() const {
  std::vector<std::reference_wrapper<const EnvVar>> out;
  for (const Entry* entry : in_order(top_.get(), {})) out.emplace_back(**entry);
  return out;
}

std::size_t Environment::size() const { return top_ ? top_->size : 0; }
std::size_t Environment::bytes() const { return top_ ? top_->bytes : 0; }
std::size_t Environment::own_entries() const { return top_ ? top_->set.size() : 0; }

const std::string* EnvironmentBuilder::find(std::string_view name) const {
  auto found = index_.find(name);
  return found == index_.end() ? nullptr : &found->second->value;
}

void EnvironmentBuilder::set(std::string name, std::string value) {
  auto entry = std::make_shared<const EnvVar>(EnvVar{std::move(name), std::move(value)});
  bytes_ += entry->name.size() + entry->value.size();
  if (auto known = index_.find(entry->name); known != index_.end()) {
    bytes_ -= known->second->name.size() + known->second->value.size();
    // The key views the old entry's name: it moves to the new one's with it.
    auto node = index_.extract(known);
    node.key() = entry->name;
    node.mapped() = entry;
    index_.insert(std::move(node));
  } else {
    index_.emplace(entry->name, entry);
  }
  pending_.push_back(std::move(entry));
}

Environment EnvironmentBuilder::snapshot() {
  if (pending_.empty()) return last_;
  // Below this many replayed entries a stack is never compacted: a few extra entries cost
  // less to replay than a compaction costs to make.
  constexpr std::size_t kSlack = 16;
  const Environment::Layer* below = last_.top_.get();
  auto layer = std::make_shared<Environment::Layer>();
  layer->size = index_.size();
  layer->bytes = bytes_;
  const std::size_t entries = (below != nullptr ? below->entries : 0) + pending_.size();
  if (entries > 2 * index_.size() + kSlack) {
    for (const Entry* entry : Environment::in_order(below, pending_)) layer->set.push_back(*entry);
  } else {
    layer->below = last_.top_;
    layer->set = std::move(pending_);
  }
  layer->entries = (layer->below ? below->entries : 0) + layer->set.size();
  pending_.clear();
  last_ = Environment(std::move(layer));
  return last_;
}

}  // namespace kiln::planner
