// The counters of each cube's groups per hour (every measure but unique users) over the last few
// hours, held by a shard in memory beside its state store: the hot aggregates. A query over whole
// recent hours that needs no unique users, such as the top 100 campaigns by CTR over the last 24
// hours, sums them here instead of reading the store's hour aggregates, thousands an hour: an
// aggregate read through RocksDB costs about 400 ns, one summed here about 10.
//
// It mirrors the store. Every hour from first_hour() on holds exactly the counters the store
// holds for it: the shard fills it from the store at startup, before the log is replayed, then
// adds each slice of its memory once the slice's write has landed in the store (queries read the
// memory not yet written, and the slice in flight, apart). Hours before first_hour() are let go
// as time passes. While they outgrow the memory budget, cubes are dropped whole, the one with the
// most dimensions first, and of those the one with the most groups an hour, and so is a cube with
// more than kMaxGroupsPerHour groups in an hour; their queries read the store, as they would
// without this. Owned by one worker.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "state/interner.h"
#include "window/aggregate.h"
#include "window/cube_catalog.h"
#include "window/group_table.h"

namespace adpulse {

class RecentHours {
 public:
  using HourTable = absl::flat_hash_map<DimKey, Counters, DimKeyHash>;
  // A cube with more groups than this in an hour is not held, whatever the budget: every group
  // held is updated at each of its slice's flushes (six a minute), which for a cube that dense
  // costs the workers more than a tenth of their time at full speed.
  static constexpr size_t kMaxGroupsPerHour = 65'536;

  // Holds the `hours` hours up to the current one (by wall clock, as of Advance) for each cube of
  // `catalog`, in at most about `budget_bytes`.
  RecentHours(const CubeCatalog& catalog, int64_t hours, size_t budget_bytes, int64_t now_ms);

  // The first hour (index since the epoch) held; later ones are all held, future ones included.
  int64_t first_hour() const { return first_hour_; }
  // False once the cube was dropped for the budget.
  bool Holds(int cube) const { return cubes_[static_cast<size_t>(cube)].kept; }

  // The id of a dimension value in this memory's keys (0 for the empty string).
  uint32_t Intern(std::string_view value) {
    return interner_.Intern({value, Interner::HashOf(value)});
  }
  // The id of `value`, or -1 if it is in no key.
  int64_t Find(std::string_view value) const { return interner_.Find(value); }
  const std::string& Lookup(uint32_t id) const { return interner_.Lookup(id); }
  // Bumped whenever ids change meaning (the interner is rebuilt): ids cached before are stale.
  uint64_t generation() const { return generation_; }

  // Adds `counters` to group `key` (ids from Intern, in the cube's dimension order) of `hour`.
  // Ignored for an hour before first_hour() or a cube dropped.
  void Add(int cube, int64_t hour, const DimKey& key, const Counters& counters) {
    if (HourTable* t = TableFor(cube, hour)) (*t)[key].Merge(counters);
  }
  // The table Add of `hour` adds to, for a caller adding many groups of one hour; null when they
  // would be ignored. Valid until the next call of anything else but Add.
  HourTable* TableFor(int cube, int64_t hour);

  // Lets go of the hours before the window as of `now_ms`, rebuilds the interner when most of
  // its values are no longer in any key, then EnforceBudget. Cheap unless the hour changed.
  void Advance(int64_t now_ms);
  // Drops the cubes with an hour over kMaxGroupsPerHour, then cubes while over budget (the one
  // with the most dimensions first, and of those the one with the most groups an hour), after a
  // batch of Add.
  void EnforceBudget();

  // Calls fn(key, counters) for each group of `cube` in the hours [first, end).
  template <typename Fn>
  void ForEach(int cube, int64_t first, int64_t end, Fn&& fn) const {
    const CubeHours& c = cubes_[static_cast<size_t>(cube)];
    for (auto it = c.hours.lower_bound(first); it != c.hours.end() && it->first < end; ++it) {
      for (const auto& [key, counters] : it->second) fn(key, counters);
    }
  }

  // Memory held, the hash tables' slots and the interned values, as of the last EnforceBudget or
  // Advance.
  size_t bytes() const { return bytes_; }
  size_t groups() const;

 private:
  struct CubeHours {
    bool kept = true;
    size_t dims = 0;
    std::map<int64_t, HourTable> hours;
  };
  static size_t TableBytes(const HourTable& t);
  size_t CubeBytes(const CubeHours& c) const;
  size_t MeasureBytes() const;
  // Re-interns the values still in a key, so that values of hours let go are freed too.
  void RebuildInterner();

  int64_t hours_;
  size_t budget_bytes_;
  int64_t first_hour_;
  std::vector<CubeHours> cubes_;
  Interner interner_;
  uint64_t generation_ = 0;
  size_t bytes_ = 0;
};

}  // namespace adpulse
