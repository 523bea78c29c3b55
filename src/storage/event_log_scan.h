// Reads back logged events of one shard over a range of event time: the archived segments that
// can hold such events (by the hour they were sealed), then the live log, each segment once (the
// archiver's moves are held off meanwhile). For the fraud audit (GET /v1/fraud/events) and for
// rebuilding the fraud signal state at startup.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "adpulse/event.h"
#include "storage/archive.h"

namespace adpulse {

struct EventLogScanOptions {
  std::string shard_wal_dir;     // <data>/wal/shard-NNN
  Archiver* archiver = nullptr;  // null: live log only
  int shard = 0;
  int64_t from_ms = INT64_MIN;     // event time, inclusive
  int64_t to_ms = INT64_MAX;       // exclusive
  int64_t max_future_ms = 60'000;  // ingest.max_future_s: an event's time after its arrival
  // Set to true when the log holds events before from_ms (read and passed over, or in archived
  // segments skipped as too old): what was read is not the whole history.
  bool* saw_earlier = nullptr;
};

// Calls `fn` for each event in the range, in log order; `fn` returns false to stop early. The
// event's views live only during the call. DataLoss when a record does not decode.
absl::Status ScanLoggedEvents(const EventLogScanOptions& options,
                              const std::function<bool(const Event&)>& fn);

}  // namespace adpulse
