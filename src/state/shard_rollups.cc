// ShardState: hour and day roll-ups in the state store, and their marks.
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
#include "state/shard_state_internal.h"
#include "window/aggregate_codec.h"

namespace adpulse {

namespace {
std::string RollUpMarksName(int shard) { return fmt::format("rollup/{}", shard); }

std::string EncodeRollUpMarks(const RolledUp& written, const RolledUp& rolled) {
  std::string v;
  for (int64_t x :
       {written.hours_through, rolled.hours_through, written.days_through, rolled.days_through}) {
    v.append(reinterpret_cast<const char*>(&x), 8);
  }
  return v;
}

bool DecodeRollUpMarks(std::string_view v, RolledUp& written, RolledUp& rolled) {
  if (v.size() != 32) return false;
  int64_t x[4];
  std::memcpy(x, v.data(), 32);
  written.hours_through = x[0];
  rolled.hours_through = x[1];
  written.days_through = x[2];
  rolled.days_through = x[3];
  return rolled.hours_through <= written.hours_through &&
         rolled.days_through <= written.days_through;
}

constexpr size_t kRollUpBatchKeys = 16384;

// The mark of `level` (hour or day).
int64_t& MarkOf(RolledUp& marks, Level level) {
  return level == Level::kDay ? marks.days_through : marks.hours_through;
}
}  // namespace

absl::Status ShardState::EnableRollups(int64_t delay_ms, int64_t now_ms, int64_t oldest_event_ms) {
  if (!store_ || rollups_) return absl::OkStatus();
  auto marks = store_->GetMeta(RollUpMarksName(shard_));
  if (!marks.ok()) return marks.status();
  RolledUp written, rolled;
  if (!marks->has_value()) {
    // A data dir from before roll-ups, whose flushes wrote every level: every hour and day before
    // the current ones is whole in the store. A shard never flushed has nothing stored at all.
    auto checkpoints = store_->ReadSliceCheckpoints(shard_, kSlices);
    if (!checkpoints.ok()) return checkpoints.status();
    bool never_flushed = std::all_of(checkpoints->begin(), checkpoints->end(),
                                     [](const WalPosition& p) { return p == WalPosition{}; });
    int64_t from_ms = never_flushed ? std::min(now_ms, oldest_event_ms) : now_ms;
    rolled.hours_through = FloorDiv(from_ms, kHourMs) - 1;
    rolled.days_through = FloorDiv(from_ms, kDayMs) - 1;
    written = rolled;
    StateStore::Batch batch;
    batch.PutMeta(RollUpMarksName(shard_), EncodeRollUpMarks(written, rolled));
    absl::Status s = store_->Write(batch);
    if (!s.ok()) return s;
  } else if (!DecodeRollUpMarks(**marks, written, rolled)) {
    return absl::DataLossError(
        fmt::format("state store: the roll-up marks of shard {} are malformed", shard_));
  }
  // A roll-up a crash interrupted (written ahead of rolled up): done again, whole, before
  // anything else is written. At most one level is ever behind.
  for (Level level : {Level::kDay, Level::kHour}) {
    int64_t bucket = MarkOf(written, level);
    if (bucket == MarkOf(rolled, level)) continue;
    LOG_INFO("shard {}: redoing the roll-up of {} {} that a crash interrupted", shard_,
             level == Level::kDay ? "day" : "hour",
             absl::FormatTime("%Y-%m-%dT%H:00Z",
                              absl::FromUnixMillis(bucket * kLevelMs[static_cast<int>(level)]),
                              absl::UTCTimeZone()));
    RolledUp after = rolled;
    MarkOf(after, level) = bucket;
    absl::Status s = BeginRollUp(level, bucket, written, rolled);
    if (s.ok()) s = RollUp(level, bucket, nullptr, written, after);
    if (!s.ok()) return s;
    rolled = after;
  }
  written_ = written;
  rolled_ = rolled;
  rolled_until_ms_.Set(static_cast<uint64_t>(rolled_.HoursEndMs()));
  rollup_delay_ms_ = delay_ms;
  roller_ =
      std::make_unique<BackgroundWriter>(fmt::format("adpulse-ru{}", shard_), kNiceBackground);
  rollups_ = true;
  return absl::OkStatus();
}

absl::Status ShardState::BeginRollUp(Level level, int64_t bucket, const RolledUp& written,
                                     const RolledUp& rolled) {
  // Normally there is nothing to delete: flushes have not written this level for the period. But
  // a data dir from before roll-ups, a reconciliation or a roll-up a crash cut short may have.
  // (Point deletes: see StateStore about DeleteRange.)
  StateStore::Batch batch;
  for (size_t c = 0; c < catalog_.cubes().size(); ++c) {
    std::string from, to;
    AppendAggregateKeyPrefix(from, shard_, static_cast<int>(c), level, bucket);
    AppendAggregateKeyPrefix(to, shard_, static_cast<int>(c), level, bucket + 1);
    absl::Status s = store_->Scan(from, to, [&](std::string_view key, std::string_view) {
      batch.DeleteAggregate(key);
      return true;
    });
    if (!s.ok()) return s;
  }
  batch.PutMeta(RollUpMarksName(shard_), EncodeRollUpMarks(written, rolled));
  return store_->Write(batch);
}

absl::Status ShardState::RollUp(Level level, int64_t bucket, const StateStore::Snapshot* at,
                                const RolledUp& written, const RolledUp& rolled) {
  Level finer = level == Level::kDay ? Level::kHour : Level::kMinute;
  int64_t per = kLevelMs[static_cast<int>(level)] / kLevelMs[static_cast<int>(finer)];
  auto batch = std::make_unique<StateStore::Batch>();
  std::string key, value;
  for (size_t c = 0; c < catalog_.cubes().size(); ++c) {
    int cube = static_cast<int>(c);
    std::vector<std::pair<std::string, std::string>> ranges;
    for (int64_t b = bucket * per; b < (bucket + 1) * per; ++b) {
      std::string from, to;
      AppendAggregateKeyPrefix(from, shard_, cube, finer, b);
      AppendAggregateKeyPrefix(to, shard_, cube, finer, b + 1);
      ranges.emplace_back(std::move(from), std::move(to));
    }
    std::string target;
    AppendAggregateKeyPrefix(target, shard_, cube, level, bucket);
    size_t prefix_bytes = target.size();  // every level's prefix is as long
    absl::Status s = store_->MergeRanges(
        ranges, prefix_bytes,
        [&](std::string_view dims, const std::vector<std::string_view>& values) -> absl::Status {
          key.assign(target);
          key.append(dims);
          value.clear();
          if (!MergeEncodedAggregates(values, value)) {
            return absl::DataLossError(fmt::format(
                "state store: an aggregate of shard {} cube {} does not decode", shard_, cube));
          }
          batch->MergeAggregate(key, value);
          if (batch->Count() < kRollUpBatchKeys) return absl::OkStatus();
          absl::Status written_part = store_->Write(*batch);
          batch = std::make_unique<StateStore::Batch>();
          return written_part;
        },
        at);
    if (!s.ok()) return s;
  }
  batch->PutMeta(RollUpMarksName(shard_), EncodeRollUpMarks(written, rolled));
  return store_->Write(*batch);
}

absl::Status ShardState::CollectRollUp(bool wait) {
  if (!rollup_ || !rollup_error_.ok()) return rollup_error_;
  if (!wait && !roller_->Done()) return absl::OkStatus();
  absl::Status s = roller_->Wait();
  if (!s.ok()) {
    rollup_error_ = s;
    return s;
  }
  // Callers make sure no slice write is in flight: no query reads a snapshot older than this
  // roll-up from now on.
  MarkOf(rolled_, rollup_->level) = rollup_->bucket;
  rolled_until_ms_.Set(static_cast<uint64_t>(rolled_.HoursEndMs()));
  rollup_.reset();
  ++rollups_done_;
  return absl::OkStatus();
}

absl::Status ShardState::AdvanceRollUps(int64_t now_ms) {
  if (!rollups_ || in_flight_) return absl::OkStatus();
  absl::Status collected = CollectRollUp(false);
  if (!collected.ok() || rollup_) return collected;
  Level level;
  int64_t bucket;
  int64_t next_day = rolled_.days_through + 1;
  int64_t next_hour = rolled_.hours_through + 1;
  if ((next_day + 1) * (kDayMs / kHourMs) - 1 <= rolled_.hours_through) {
    level = Level::kDay;
    bucket = next_day;
  } else if ((next_hour + 1) * kHourMs + rollup_delay_ms_ <= now_ms) {
    level = Level::kHour;
    bucket = next_hour;
  } else {
    return absl::OkStatus();
  }
  RolledUp written = written_;
  MarkOf(written, level) = bucket;
  absl::Status s = BeginRollUp(level, bucket, written, rolled_);
  if (!s.ok()) {
    rollup_error_ = s;
    return s;
  }
  written_ = written;
  rollup_ = RollUpJob{level, bucket};
  RolledUp after = rolled_;
  MarkOf(after, level) = bucket;
  // Taken before any later flush is written: the sum covers exactly the flushes that did not
  // write this level for the period.
  std::shared_ptr<const StateStore::Snapshot> snapshot = store_->GetSnapshot();
  roller_->Start([this, level, bucket, snapshot, written, after] {
    auto began = std::chrono::steady_clock::now();
    absl::Status rolled = RollUp(level, bucket, snapshot.get(), written, after);
    rollup_micros_.Add(MicrosSince(began));
    return rolled;
  });
  return absl::OkStatus();
}

absl::Status ShardState::MaybeRollUp(int64_t now_ms) {
  if (recent_) recent_->Advance(now_ms);
  absl::Status s = CollectSliceFlush(false);
  if (!s.ok()) return s;
  return AdvanceRollUps(now_ms);
}

absl::Status ShardState::FinishRollUp() {
  if (!rollup_) return rollup_error_;
  absl::Status s = CollectSliceFlush(true);
  if (!s.ok()) return s;
  return CollectRollUp(true);
}

}  // namespace adpulse
