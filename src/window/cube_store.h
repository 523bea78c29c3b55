// One cube's aggregates in one shard, as held in memory between flushes: an ordered map of minute
// buckets, each a hash table from the group's interned dimension ids to its Aggregate. An event
// updates only its minute; the hour and day aggregates the state store keeps are rolled up from
// the minutes when they are read out (ForEachAggregate, at a flush), so the per-event cost is one
// update per cube (and only for hours and days the store has already rolled up, ShardState).
// Queries of hour or day buckets read the minutes inside them. Owned by one worker.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>

#include "window/aggregate.h"
#include "window/cube_catalog.h"
#include "window/group_table.h"
#include "window/time_bucket.h"

namespace adpulse {

class CubeStore {
 public:
  explicit CubeStore(const CubeSpec& spec) : spec_(&spec) {}
  // The moved-from store is left empty (its recent tables moved with the map's nodes).
  CubeStore(CubeStore&& o) noexcept
      : spec_(o.spec_),
        minutes_(std::move(o.minutes_)),
        recent_(o.recent_),
        next_recent_(o.next_recent_),
        groups_(o.groups_),
        user_bytes_(o.user_bytes_) {
    o.minutes_.clear();
    o.recent_ = {};
    o.groups_ = 0;
    o.user_bytes_ = 0;
  }

  const CubeSpec& spec() const { return *spec_; }

  // An event is added in steps, so that a caller can interleave several cubes and overlap their
  // cache misses: the minute table of an event time (cached: events mostly share a minute), then
  // the group's aggregate in it (created if new; `created` says so).
  GroupTable& TableFor(int64_t timestamp_ms) {
    int64_t index = FloorDiv(timestamp_ms, kMinuteMs);
    // Events of the last few minutes arrive interleaved: the tables of the last kRecent minutes
    // asked for are kept at hand, so that most events skip the map's search.
    for (const Recent& r : recent_) {
      if (r.index == index) return *r.table;
    }
    GroupTable* table = &minutes_[index];
    recent_[next_recent_] = {index, table};
    next_recent_ = (next_recent_ + 1) % kRecent;
    return *table;
  }
  // Starts loading what TableFor reads first.
  void PrefetchRecent() const { __builtin_prefetch(recent_.data()); }
  // `hash` is GroupTable::Hash(key).
  Aggregate& GroupIn(GroupTable& table, const DimKey& key, uint64_t hash, bool* created) {
    Aggregate& agg = table.FindOrInsert(key, hash, created);
    groups_ += *created;
    return agg;
  }
  bool keeps_users() const { return spec_->unique_users; }

  // Calls fn(minute_index, const GroupTable&) for each minute held inside the buckets
  // [first, end) of `level`, in order.
  template <typename Fn>
  void ForEachBucket(Level level, int64_t first, int64_t end, Fn&& fn) const {
    int64_t per = kLevelMs[static_cast<int>(level)] / kMinuteMs;
    for (auto it = minutes_.lower_bound(first * per); it != minutes_.end() && it->first < end * per;
         ++it) {
      fn(it->first, it->second);
    }
  }

  // Minute groups held, and the heap bytes of their HyperLogLogs as the caller reported them
  // (AddUserBytes, after each change): the memory-budget measures.
  size_t GroupCount() const { return groups_; }
  size_t UserBytes() const { return user_bytes_; }
  void AddUserBytes(size_t grown) { user_bytes_ += grown; }

  // Calls fn(level, bucket_index, key, aggregate) for everything held: each minute group, then
  // the hour and day groups rolled up from them, for hours up to `hours_through` and days up to
  // `days_through` (bucket indexes; the state store rolls later ones up itself once they close).
  void ForEachAggregate(
      int64_t hours_through, int64_t days_through,
      const std::function<void(Level, int64_t, const DimKey&, const Aggregate&)>& fn) const;
  void ForEachAggregate(
      const std::function<void(Level, int64_t, const DimKey&, const Aggregate&)>& fn) const {
    ForEachAggregate(INT64_MAX, INT64_MAX, fn);
  }
  void Clear();

 private:
  const CubeSpec* spec_;
  std::map<int64_t, GroupTable> minutes_;  // node-based: pointers to tables stay valid
  static constexpr int kRecent = 4;
  struct Recent {
    int64_t index = INT64_MIN;
    GroupTable* table = nullptr;
  };
  std::array<Recent, kRecent> recent_{};
  int next_recent_ = 0;
  size_t groups_ = 0;
  size_t user_bytes_ = 0;
};

}  // namespace adpulse
