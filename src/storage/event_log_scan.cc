#include "storage/event_log_scan.h"

#include <fmt/format.h>

#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>

#include "storage/wal.h"
#include "storage/wal_record.h"

namespace adpulse {

namespace {

// The end of the hour an archived segment was sealed in, from its folder
// (<archive>/<YYYY-MM-DDTHH>/shard-NNN/<sequence>.wal.zst); INT64_MAX when unreadable.
int64_t SealedHourEndMs(const std::string& path) {
  std::string hour = std::filesystem::path(path).parent_path().parent_path().filename().string();
  struct tm tm = {};
  int y, mo, d, h;
  if (std::sscanf(hour.c_str(), "%4d-%2d-%2dT%2d", &y, &mo, &d, &h) != 4) return INT64_MAX;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  return (static_cast<int64_t>(timegm(&tm)) + 3600) * 1000;
}

}  // namespace

absl::Status ScanLoggedEvents(const EventLogScanOptions& o,
                              const std::function<bool(const Event&)>& fn) {
  std::unique_lock<std::mutex> moves;
  if (o.archiver) moves = std::unique_lock<std::mutex>(o.archiver->move_mutex());
  std::map<uint64_t, std::string> archived, in_log;
  if (o.archiver) {
    for (const auto& a : ListArchivedSegments(o.archiver->archive_dir(), o.shard)) {
      // Its events arrived before the end of its hour, and an event's time is at most
      // max_future after its arrival.
      int64_t end = SealedHourEndMs(a.path);
      if (end != INT64_MAX && end + o.max_future_ms <= o.from_ms) {
        if (o.saw_earlier) *o.saw_earlier = true;
        continue;
      }
      archived[a.sequence] = a.path;
    }
  }
  auto segments = ListWalSegments(o.shard_wal_dir);
  if (!segments.ok()) return segments.status();
  for (const auto& s : *segments) in_log[s.sequence] = s.path;
  bool stopped = false;
  absl::Status bad;
  auto each = [&](uint64_t, std::string_view payload) {
    if (stopped) return absl::OkStatus();
    Event e;
    if (!DecodeEventRecord(payload, e)) {
      return absl::DataLossError(fmt::format("a log record of shard {} does not decode", o.shard));
    }
    if (e.timestamp_ms < o.from_ms && o.saw_earlier) *o.saw_earlier = true;
    if (e.timestamp_ms >= o.from_ms && e.timestamp_ms < o.to_ms && !fn(e)) stopped = true;
    return absl::OkStatus();
  };
  for (const auto& [seq, path] : archived) {
    if (stopped) break;
    if (in_log.count(seq)) continue;
    auto data = ReadArchivedSegment(path);
    if (!data.ok()) return data.status();
    auto scan = ScanWalData(*data, each);
    if (!scan.ok()) return scan.status();
  }
  for (const auto& [seq, path] : in_log) {
    if (stopped) break;
    auto scan = ScanWalSegment(path, each);
    // A header-only segment its shard removed meanwhile held no event.
    if (!scan.ok() && !absl::IsNotFound(scan.status())) return scan.status();
  }
  return absl::OkStatus();
}

}  // namespace adpulse
