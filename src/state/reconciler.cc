#include "state/reconciler.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <map>
#include <mutex>

#include "base/time_parse.h"
#include "storage/wal.h"
#include "storage/wal_record.h"
#include "window/aggregate_codec.h"

namespace adpulse {
namespace {

Granularity GranularityOf(Level level) {
  return level == Level::kMinute ? Granularity::kMinute
         : level == Level::kHour ? Granularity::kHour
                                 : Granularity::kDay;
}

std::string RowKey(const ResultRow& row) {
  std::string k = std::to_string(row.time);
  for (const std::string& d : row.dims) {
    k.push_back('\0');
    k += d;
  }
  return k;
}

// The modification time of `path` in ms, or 0.
int64_t MtimeMs(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1'000'000;
}

}  // namespace

int64_t RawEventsCompleteFromMs(const ReconcileSources& sources, int shard, int64_t now_ms) {
  int64_t from = INT64_MIN;
  uint64_t lowest = UINT64_MAX;
  std::string lowest_path;
  if (sources.archiver) {
    // The archive drops whole hours sealed before now - retention: an expired segment's events
    // lie before that plus max_future.
    from = now_ms - sources.archiver->retention_ms() + sources.max_future_ms;
    for (const auto& a : ListArchivedSegments(sources.archiver->archive_dir(), shard)) {
      if (a.sequence < lowest) {
        lowest = a.sequence;
        lowest_path = a.path;
      }
    }
  }
  auto segments = ListWalSegments(sources.wal_dir);
  if (segments.ok()) {
    for (const auto& s : *segments) {
      if (s.sequence < lowest) {
        lowest = s.sequence;
        lowest_path = s.path;
      }
    }
  }
  // A shard's first segment is number 1. When the lowest kept one is later, the ones before it
  // were written before it was last modified, so their events lie before that plus max_future.
  if (lowest != UINT64_MAX && lowest > 1) {
    from = std::max(from, MtimeMs(lowest_path) + sources.max_future_ms);
  }
  return from;
}

absl::Status ReconcileShard(const CubeCatalog& catalog, ShardState& live,
                            const ReconcileSources& sources, int64_t start_ms, int64_t end_ms,
                            bool rebuild, const std::function<absl::Status()>& flush,
                            StateStore* store, ReconcileReport& report) {
  if (rebuild) {
    int64_t complete_from = RawEventsCompleteFromMs(sources, live.shard(), NowMs());
    if (start_ms < complete_from) {
      return absl::FailedPreconditionError(fmt::format(
          "rebuild needs every raw event of the range, but shard {} keeps them only for event "
          "times from {} (older log segments expired with retention.archive_days or were "
          "removed); rebuild from there, or reconcile without rebuild to compare",
          live.shard(), FormatRfc3339(complete_from)));
    }
  }
  ShardState recomputed(catalog, live.shard(), nullptr, 0);
  {
    // Freeze segment moves so that each segment is read exactly once, from one place.
    std::unique_lock<std::mutex> moves;
    if (sources.archiver) moves = std::unique_lock<std::mutex>(sources.archiver->move_mutex());
    std::map<uint64_t, std::string> archived, in_log;
    if (sources.archiver) {
      for (const auto& a : ListArchivedSegments(sources.archiver->archive_dir(), live.shard())) {
        archived[a.sequence] = a.path;
      }
    }
    auto segments = ListWalSegments(sources.wal_dir);
    if (!segments.ok()) return segments.status();
    for (const auto& s : *segments) in_log[s.sequence] = s.path;
    auto add = [&](uint64_t, std::string_view payload) {
      Event e;
      if (!DecodeEventRecord(payload, e)) {
        return absl::DataLossError("a log record does not decode");
      }
      if (e.timestamp_ms >= start_ms && e.timestamp_ms < end_ms) {
        recomputed.AddToCubes(e);
        ++report.events;
      }
      return absl::OkStatus();
    };
    for (const auto& [seq, path] : archived) {
      if (in_log.count(seq)) continue;
      auto data = ReadArchivedSegment(path);
      if (!data.ok()) return data.status();
      auto scan = ScanWalData(*data, add);
      if (!scan.ok()) return scan.status();
      ++report.segments;
    }
    for (const auto& [seq, path] : in_log) {
      auto scan = ScanWalSegment(path, add);
      if (!scan.ok()) return scan.status();
      ++report.segments;
    }
  }
  if (rebuild) {
    absl::Status flushed = flush();
    if (!flushed.ok()) return flushed;
  }
  std::unique_ptr<StateStore::Batch> batch;
  if (rebuild && store) batch = std::make_unique<StateStore::Batch>();
  for (size_t c = 0; c < catalog.cubes().size(); ++c) {
    const CubeSpec& cube = catalog.cube(static_cast<int>(c));
    for (int l = 0; l < kLevelCount; ++l) {
      Level level = static_cast<Level>(l);
      QuerySpec spec;
      spec.cube = static_cast<int>(c);
      spec.group_by = cube.dims;
      spec.granularity = GranularityOf(level);
      spec.need_users = rebuild;
      spec.recent_hours = false;  // what the store holds, not the memory that mirrors it
      spec.start_ms = CeilTo(start_ms, kLevelMs[l]);
      spec.end_ms = FloorTo(end_ms, kLevelMs[l]);
      if (spec.start_ms >= spec.end_ms) continue;
      ResultTable stored, fresh;
      absl::Status s = live.RunQuery(spec, stored);
      if (!s.ok()) return s;
      s = recomputed.RunQuery(spec, fresh);
      if (!s.ok()) return s;
      std::map<std::string, std::pair<const ResultRow*, const ResultRow*>> rows;
      for (const ResultRow* r : stored.SortedRows()) rows[RowKey(*r)].first = r;
      for (const ResultRow* r : fresh.SortedRows()) rows[RowKey(*r)].second = r;
      for (const auto& [key, pair] : rows) {
        ++report.groups_compared;
        Counters a = pair.first ? pair.first->agg.counters : Counters{};
        Counters b = pair.second ? pair.second->agg.counters : Counters{};
        if (a == b) continue;
        ++report.difference_count;
        const ResultRow* row = pair.first ? pair.first : pair.second;
        if (report.differences.size() < kMaxReportedDifferences) {
          ReconcileDifference d;
          d.shard = live.shard();
          d.cube = cube.name;
          d.level = level;
          d.time_ms = row->time;
          for (size_t i = 0; i < cube.dims.size(); ++i)
            d.dims.emplace_back(cube.dims[i], row->dims[i]);
          d.stored = a;
          d.recomputed = b;
          report.differences.push_back(std::move(d));
        }
        // Hour and day aggregates of periods not rolled up yet are not read (their minutes and
        // hours are, and are rebuilt); the roll-up will sum the rebuilt ones.
        int64_t bucket = FloorDiv(row->time, kLevelMs[l]);
        bool stored_level = level == Level::kMinute ||
                            (level == Level::kHour && bucket <= live.rolled_up().hours_through) ||
                            (level == Level::kDay && bucket <= live.rolled_up().days_through);
        if (batch && stored_level) {
          std::string k;
          AppendAggregateKeyPrefix(k, live.shard(), static_cast<int>(c), level, bucket);
          for (const std::string& v : row->dims) AppendAggregateKeyDim(k, v);
          if (pair.second) {
            std::string value;
            EncodeAggregate(pair.second->agg, value);
            batch->PutAggregate(k, value);
          } else {
            batch->DeleteAggregate(k);
          }
        }
      }
    }
  }
  if (batch && batch->Count() > 0) {
    absl::Status s = store->Write(*batch);
    if (!s.ok()) return s;
    report.rebuilt = true;
  }
  return absl::OkStatus();
}

}  // namespace adpulse
