// A planned aggregate query and its result. The HTTP layer builds a QuerySpec (cube already
// selected); each shard executes it over its own CubeStore into a ResultTable; the tables of all
// shards are merged by the caller. Pure logic over in-memory state.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "window/aggregate.h"
#include "window/cube_store.h"
#include "window/time_bucket.h"

namespace adpulse {

struct QuerySpec {
  int cube = -1;
  std::vector<Dim> group_by;
  // AND across dimensions, OR across the values of one dimension.
  std::vector<std::pair<Dim, std::vector<std::string>>> filters;
  int64_t start_ms = 0;  // minute-aligned, inclusive
  int64_t end_ms = 0;    // minute-aligned, exclusive
  Granularity granularity = Granularity::kAll;
  absl::TimeZone tz = absl::UTCTimeZone();
  bool need_users = true;
  // Whole recent hours may be read from the shard's memory (RecentHours) when need_users is off;
  // false: from the state store too (reconciliation checks the store itself).
  bool recent_hours = true;
};

struct ResultRow {
  int64_t time = 0;               // bucket start; the range start for granularity all
  std::vector<std::string> dims;  // values of QuerySpec::group_by, in order
  Aggregate agg;
};

class ResultTable {
 public:
  void Add(int64_t time, std::vector<std::string> dims, const Aggregate& agg, bool with_users);
  // The same from views: allocates only for a row it has not seen yet.
  void Add(int64_t time, const std::string_view* dims, size_t n, const Aggregate& agg,
           bool with_users);
  void MergeFrom(ResultTable&& other, bool with_users);
  // Rows ordered by time, then by dimension values.
  std::vector<const ResultRow*> SortedRows() const;
  // Rows in no particular order (cheaper when the caller ranks them itself).
  std::vector<const ResultRow*> Rows() const;
  size_t size() const { return rows_.size(); }

 private:
  absl::flat_hash_map<std::string, ResultRow> rows_;
  std::string scratch_;  // a row key being looked up
};

// A filter translated to one shard's interned ids. An empty `ids` matches nothing.
struct ResolvedFilter {
  int position = 0;  // in the cube's dimensions
  std::vector<uint32_t> ids;
};

using IdToString = std::function<const std::string&(uint32_t id)>;

// Calls fn(out_time, from_ms, to_ms) for each output bucket of `spec` clipped to its range: one
// call for granularity all, else one per minute / 5 minutes / hour / day (in spec.tz).
template <typename Fn>
void ForEachOutputBucket(const QuerySpec& spec, Fn&& fn) {
  if (spec.granularity == Granularity::kAll) {
    fn(spec.start_ms, spec.start_ms, spec.end_ms);
    return;
  }
  int64_t s = BucketStart(spec.granularity, spec.tz, spec.start_ms);
  while (s < spec.end_ms) {
    int64_t e = NextBucketStart(spec.granularity, spec.tz, s);
    fn(s, s > spec.start_ms ? s : spec.start_ms, e < spec.end_ms ? e : spec.end_ms);
    s = e;
  }
}

// Runs `spec` over the in-memory groups of one cube, held in `stores` (a shard's slices of it).
// With `exact_keys` (the filters fix every dimension of the cube: these are all the groups they
// match), each table is probed for those keys instead of scanned.
void ExecuteOnCube(const QuerySpec& spec, const std::vector<const CubeStore*>& stores,
                   const std::vector<ResolvedFilter>& filters, const IdToString& id_to_string,
                   ResultTable& out, const std::vector<DimKey>* exact_keys = nullptr);

}  // namespace adpulse
