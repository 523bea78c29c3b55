// ShardState: queries over memory and the store, and the recent hours held for them.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/container/inlined_vector.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/thread_priority.h"
#include "base/time_parse.h"
#include "state/shard_state.h"
#include "window/aggregate_codec.h"

namespace adpulse {

namespace {
// `spec`'s filters as ids: find(value) is a value's id, or -1 if it has none.
template <typename Find>
std::vector<ResolvedFilter> ResolveFilters(const CubeSpec& cube, const QuerySpec& spec,
                                           Find&& find) {
  std::vector<ResolvedFilter> filters;
  for (const auto& [dim, values] : spec.filters) {
    ResolvedFilter f;
    f.position = cube.PositionOf(dim);
    for (const std::string& v : values) {
      int64_t id = find(v);
      if (id >= 0) f.ids.push_back(static_cast<uint32_t>(id));
    }
    filters.push_back(std::move(f));
  }
  return filters;
}
}  // namespace

absl::Status ShardState::RunQuery(const QuerySpec& spec, ResultTable& out) const {
  const CubeSpec& cube = catalog_.cube(spec.cube);
  std::vector<ResolvedFilter> filters =
      ResolveFilters(cube, spec, [this](std::string_view v) { return interner_.Find(v); });
  // When the filters fix every dimension (one campaign in the campaign cube: the realtime query),
  // the groups they match are known, and so are the slices that hold them.
  std::vector<DimKey> exact_keys;
  std::vector<bool> fixed(cube.dims.size(), false);
  size_t combinations = 1;
  for (const ResolvedFilter& f : filters) {
    fixed[static_cast<size_t>(f.position)] = true;
    // Capped, so that long value lists cannot overflow the product.
    combinations = std::min(combinations * std::max<size_t>(1, f.ids.size()), kMaxExactKeys + 1);
  }
  bool exact = std::all_of(fixed.begin(), fixed.end(), [](bool b) { return b; }) &&
               filters.size() == cube.dims.size() && combinations <= kMaxExactKeys;
  std::vector<bool> wanted(kSlices, !exact);
  if (exact) {
    exact_keys.push_back(DimKey{});
    for (const ResolvedFilter& f : filters) {
      std::vector<DimKey> next;
      for (const DimKey& k : exact_keys) {
        for (uint32_t id : f.ids) {
          DimKey n = k;
          n[static_cast<size_t>(f.position)] = id;
          next.push_back(n);
        }
      }
      exact_keys = std::move(next);
    }
    for (const DimKey& k : exact_keys) wanted[GroupSlice(spec.cube, k, cube.dims.size())] = true;
  }
  std::vector<const CubeStore*> stores;
  stores.reserve(slices_.size());
  for (int s = 0; s < kSlices; ++s) {
    const CubeStore& c = slices_[s].cubes[spec.cube];
    if (wanted[s] && c.GroupCount() > 0) stores.push_back(&c);
  }
  if (in_flight_ && wanted[in_flight_->slice] && in_flight_->cubes[spec.cube].GroupCount() > 0) {
    stores.push_back(&in_flight_->cubes[spec.cube]);
  }
  ExecuteOnCube(
      spec, stores, filters,
      [this](uint32_t id) -> const std::string& { return interner_.Lookup(id); }, out,
      exact ? &exact_keys : nullptr);
  return store_ ? ScanStore(spec, out) : absl::OkStatus();
}

namespace {
// The smallest string greater than every string that starts with `prefix`.
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<uint8_t>(prefix.back()) == 0xff) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<uint8_t>(prefix.back()) + 1);
  return prefix;
}
// Seeks per output bucket above which a filtered query reads whole bucket ranges instead.
constexpr size_t kMaxSeeks = 4096;
int64_t CeilDiv(int64_t a, int64_t b) { return -FloorDiv(-a, b); }
}  // namespace

template <typename Visit, typename Recent>
absl::Status ShardState::ScanStoreRows(const QuerySpec& spec, bool use_recent, Visit&& visit_row,
                                       Recent&& recent_hours) const {
  const CubeSpec& cube = catalog_.cube(spec.cube);
  std::vector<std::pair<int, const std::vector<std::string>*>> filters;
  const std::vector<std::string>* first_dim_values = nullptr;
  for (const auto& [dim, values] : spec.filters) {
    filters.emplace_back(cube.PositionOf(dim), &values);
    if (filters.back().first == 0) first_dim_values = &values;
  }
  std::vector<int> positions;
  for (Dim d : spec.group_by) positions.push_back(cube.PositionOf(d));
  AggregateKey key;
  int64_t out_time = 0;
  Aggregate agg;
  std::string_view dims[kMaxCubeDims];
  auto visit = [&](std::string_view k, std::string_view v) {
    if (!DecodeAggregateKey(k, key) || key.dims.size() != cube.dims.size()) return;
    for (const auto& [pos, values] : filters) {
      bool match = false;
      for (const std::string& want : *values) match |= (key.dims[pos] == want);
      if (!match) return;
    }
    if (!DecodeAggregate(v, agg, spec.need_users)) return;
    for (size_t i = 0; i < positions.size(); ++i) dims[i] = key.dims[positions[i]];
    visit_row(out_time, static_cast<const std::string_view*>(dims), positions.size(),
              static_cast<const Aggregate&>(agg));
  };
  // Keys sort by bucket, then by the cube's first dimension: a query filtered on that dimension
  // (most are: a campaign) seeks to each (bucket, value) instead of reading every group of every
  // bucket in its range.
  std::vector<std::pair<std::string, std::string>> ranges;
  std::vector<std::pair<int64_t, int64_t>> recent;  // hour ranges read from recent_
  absl::Status status = absl::OkStatus();
  ForEachOutputBucket(spec, [&](int64_t time, int64_t from_ms, int64_t to_ms) {
    if (!status.ok()) return;
    out_time = time;
    ranges.clear();
    recent.clear();
    size_t buckets = 0;
    DecomposeRange(from_ms, to_ms, rolled_,
                   [&](Level, int64_t first, int64_t end) { buckets += end - first; });
    bool seek = first_dim_values && buckets * first_dim_values->size() <= kMaxSeeks;
    auto add_range = [&](Level level, int64_t first, int64_t end) {
      if (first >= end) return;
      if (!seek) {
        std::string from, to;
        AppendAggregateKeyPrefix(from, shard_, spec.cube, level, first);
        AppendAggregateKeyPrefix(to, shard_, spec.cube, level, end);
        ranges.emplace_back(std::move(from), std::move(to));
        return;
      }
      for (int64_t b = first; b < end; ++b) {
        for (const std::string& value : *first_dim_values) {
          std::string from;
          AppendAggregateKeyPrefix(from, shard_, spec.cube, level, b);
          AppendAggregateKeyDim(from, value);
          std::string to = PrefixEnd(from);
          ranges.emplace_back(std::move(from), std::move(to));
        }
      }
    };
    // Whole hours from recent_ (when a scan, not seeks, would read them from the store): the
    // hours the store reads as hours, and those inside its minutes (not rolled up yet).
    bool from_recent = use_recent && !seek;
    int64_t held = from_recent ? recent_->first_hour() : 0;
    DecomposeRange(from_ms, to_ms, rolled_, [&](Level level, int64_t first, int64_t end) {
      if (!from_recent || level == Level::kDay) return add_range(level, first, end);
      constexpr int64_t kPerHour = kHourMs / kMinuteMs;
      int64_t per = level == Level::kHour ? 1 : kPerHour;  // level units per hour
      int64_t hours_from = std::max(held, CeilDiv(first, per));
      int64_t hours_to = FloorDiv(end, per);
      if (hours_from >= hours_to) return add_range(level, first, end);
      add_range(level, first, hours_from * per);
      recent.emplace_back(hours_from, hours_to);
      add_range(level, hours_to * per, end);
    });
    std::sort(ranges.begin(), ranges.end());
    ranges.erase(std::unique(ranges.begin(), ranges.end()), ranges.end());
    absl::Status s = store_->ScanRanges(ranges, visit, before_in_flight_.get());
    if (!s.ok()) status = s;
    for (const auto& [first, end] : recent) recent_hours(time, first, end);
  });
  return status;
}

absl::Status ShardState::ScanStore(const QuerySpec& spec, ResultTable& out) const {
  bool use_recent = recent_ && spec.recent_hours && !spec.need_users && recent_->Holds(spec.cube);
  return ScanStoreRows(
      spec, use_recent,
      [&](int64_t time, const std::string_view* dims, size_t n, const Aggregate& agg) {
        out.Add(time, dims, n, agg, spec.need_users);
      },
      [&](int64_t time, int64_t first, int64_t end) { ScanRecent(spec, time, first, end, out); });
}

void ShardState::ScanRecent(const QuerySpec& spec, int64_t out_time, int64_t first, int64_t end,
                            ResultTable& out) const {
  const CubeSpec& cube = catalog_.cube(spec.cube);
  std::vector<ResolvedFilter> filters =
      ResolveFilters(cube, spec, [this](std::string_view v) { return recent_->Find(v); });
  for (const ResolvedFilter& f : filters) {
    if (f.ids.empty()) return;  // a value no held group has: nothing matches
  }
  std::vector<int> positions;
  for (Dim d : spec.group_by) positions.push_back(cube.PositionOf(d));
  absl::flat_hash_map<DimKey, Counters, DimKeyHash> sums;
  recent_->ForEach(spec.cube, first, end, [&](const DimKey& key, const Counters& counters) {
    for (const ResolvedFilter& f : filters) {
      if (std::find(f.ids.begin(), f.ids.end(), key[f.position]) == f.ids.end()) return;
    }
    DimKey grouped{};
    for (size_t i = 0; i < positions.size(); ++i) grouped[i] = key[positions[i]];
    sums[grouped].Merge(counters);
  });
  std::string_view dims[kMaxCubeDims];
  Aggregate agg;
  for (const auto& [grouped, counters] : sums) {
    for (size_t i = 0; i < positions.size(); ++i) dims[i] = recent_->Lookup(grouped[i]);
    agg.counters = counters;
    out.Add(out_time, dims, positions.size(), agg, false);
  }
}

absl::Status ShardState::EnableRecentHours(int64_t hours, size_t budget_bytes, int64_t now_ms) {
  if (!store_ || hours <= 0 || recent_) return absl::OkStatus();
  auto recent = std::make_unique<RecentHours>(catalog_, hours, budget_bytes, now_ms);
  // Each cube's hours from the store, newest first, as queries read them (the minutes of hours
  // not rolled up yet), until the cube is over budget. Events may be up to ingest.max_future_s
  // (at most 7 days) ahead of when they came: the next 7 days are read too (an empty hour is a
  // seek).
  int64_t last = FloorDiv(now_ms, kHourMs) + 7 * 24 + 1;
  // The cubes with fewer dimensions first: those are kept when the budget runs out.
  std::vector<int> order(catalog_.cubes().size());
  for (size_t c = 0; c < order.size(); ++c) order[c] = static_cast<int>(c);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return catalog_.cube(a).dims.size() < catalog_.cube(b).dims.size();
  });
  for (int c : order) {
    const CubeSpec& cube = catalog_.cube(c);
    QuerySpec spec;
    spec.cube = c;
    spec.group_by = cube.dims;
    spec.granularity = Granularity::kAll;
    spec.need_users = false;
    for (int64_t h = last; h >= recent->first_hour() && recent->Holds(c); --h) {
      spec.start_ms = h * kHourMs;
      spec.end_ms = spec.start_ms + kHourMs;
      absl::Status s = ScanStoreRows(
          spec, false,
          [&](int64_t, const std::string_view* dims, size_t n, const Aggregate& agg) {
            DimKey key{};
            for (size_t i = 0; i < n; ++i) key[i] = recent->Intern(dims[i]);
            recent->Add(c, h, key, agg.counters);
          },
          [](int64_t, int64_t, int64_t) {});
      if (!s.ok()) return s;
      recent->EnforceBudget();
    }
  }
  recent_ = std::move(recent);
  recent_hours_ = hours;
  recent_budget_bytes_ = budget_bytes;
  recent_bytes_.Set(recent_->bytes());
  std::string held, left;
  for (int c = 0; c < static_cast<int>(catalog_.cubes().size()); ++c) {
    std::string& list = recent_->Holds(c) ? held : left;
    list += (list.empty() ? "" : ", ") + catalog_.cube(c).name;
  }
  LOG_INFO(
      "shard {} holds the last {} hours of cubes [{}] in memory ({} groups, {:.1f} MiB of "
      "{:.1f}){}",
      shard_, hours, held, recent_->groups(), recent_->bytes() / 1048576.0,
      budget_bytes / 1048576.0, left.empty() ? "" : "; left to the state store: " + left);
  return absl::OkStatus();
}

absl::Status ShardState::ReloadRecentHours(int64_t now_ms) {
  if (!recent_) return absl::OkStatus();
  recent_.reset();
  recent_ids_.clear();
  return EnableRecentHours(recent_hours_, recent_budget_bytes_, now_ms);
}

void ShardState::AddToRecent(const std::vector<CubeStore>& cubes) {
  if (!recent_) return;
  if (recent_ids_generation_ != recent_->generation()) {
    recent_ids_.clear();
    recent_ids_generation_ = recent_->generation();
  }
  const int64_t held = recent_->first_hour();
  constexpr int64_t kPerHour = kHourMs / kMinuteMs;
  for (size_t c = 0; c < cubes.size(); ++c) {
    const CubeStore& cube = cubes[c];
    int cube_index = static_cast<int>(c);
    if (cube.GroupCount() == 0 || !recent_->Holds(cube_index)) continue;
    size_t dims = cube.spec().dims.size();
    // A few groups at a time: their keys translated and their slots prefetched first, so that
    // the cache misses of the inserts overlap.
    constexpr size_t kBatch = 8;
    struct Pending {
      DimKey key;
      const Counters* counters;
    };
    Pending pending[kBatch];
    cube.ForEachBucket(Level::kMinute, held * kPerHour, INT64_MAX / 2,
                       [&](int64_t minute, const GroupTable& table) {
                         RecentHours::HourTable* hour =
                             recent_->TableFor(cube_index, FloorDiv(minute, kPerHour));
                         if (!hour) return;
                         size_t n = 0;
                         auto drain = [&] {
                           for (size_t i = 0; i < n; ++i) {
                             (*hour)[pending[i].key].Merge(*pending[i].counters);
                           }
                           n = 0;
                         };
                         for (const auto& [key, agg] : table) {
                           DimKey& k = pending[n].key;
                           k = DimKey{};
                           for (size_t i = 0; i < dims; ++i) {
                             uint32_t id = key[i];
                             if (id >= recent_ids_.size()) recent_ids_.resize(id + 1, kNoId);
                             if (recent_ids_[id] == kNoId) {
                               recent_ids_[id] = recent_->Intern(interner_.Lookup(id));
                             }
                             k[i] = recent_ids_[id];
                           }
                           pending[n].counters = &agg.counters;
                           hour->prefetch(k);
                           if (++n == kBatch) drain();
                         }
                         drain();
                       });
  }
  recent_->EnforceBudget();
}

}  // namespace adpulse
