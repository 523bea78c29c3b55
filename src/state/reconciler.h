// Reconciliation: recomputes a shard's aggregates for a time range from its raw events (the
// archive plus the live log) and compares them, bucket by bucket and group by group, with what
// the shard serves (store plus memory). Optionally rebuilds the stored aggregates from the
// recomputation. Runs on the shard's worker, so log and state are one consistent snapshot; it
// holds that shard's ingestion for the duration (seconds per million events).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "state/shard_state.h"
#include "storage/archive.h"
#include "window/cube_catalog.h"

namespace adpulse {

struct ReconcileDifference {
  int shard = 0;
  std::string cube;
  Level level = Level::kMinute;
  int64_t time_ms = 0;
  std::vector<std::pair<Dim, std::string>> dims;
  Counters stored;
  Counters recomputed;
};

struct ReconcileReport {
  uint64_t events = 0;    // raw events with a timestamp in the range
  uint64_t segments = 0;  // log segments read (archived and live)
  uint64_t groups_compared = 0;
  uint64_t difference_count = 0;
  std::vector<ReconcileDifference> differences;  // the first kMaxReportedDifferences
  bool rebuilt = false;
};

inline constexpr size_t kMaxReportedDifferences = 1000;

struct ReconcileSources {
  std::string wal_dir;
  Archiver* archiver = nullptr;  // null: live log only
  // How far after its arrival an event's timestamp may lie (ingest.max_future_s): bounds the
  // event times of log segments that are no longer kept.
  int64_t max_future_ms = 60'000;
};

// The earliest event time from which every raw event is still kept (archive plus live log), as
// far as the segments tell: segments expire after the archive retention, and a missing first
// segment means older ones are gone. INT64_MIN when nothing is missing.
int64_t RawEventsCompleteFromMs(const ReconcileSources& sources, int shard, int64_t now_ms);

// Compares the buckets of every cube and level that lie wholly inside [start_ms, end_ms).
// With `rebuild`, each differing group is replaced by its recomputed aggregate (the shard's
// memory is flushed first, so the store alone holds what is served); a rebuild of a range that
// starts before RawEventsCompleteFromMs is refused (FailedPrecondition), since it would replace
// stored aggregates with recomputations that miss the expired events.
absl::Status ReconcileShard(const CubeCatalog& catalog, ShardState& live,
                            const ReconcileSources& sources, int64_t start_ms, int64_t end_ms,
                            bool rebuild, const std::function<absl::Status()>& flush,
                            StateStore* store, ReconcileReport& report);

}  // namespace adpulse
