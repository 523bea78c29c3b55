// ShardState: the dedup filter, slice flushes (foreground and background) and dedup runs.
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

absl::Status ShardState::EnableDedupFilter(uint64_t bytes) {
  if (!store_) return absl::OkStatus();
  filter_ = std::make_unique<DedupFilter>(bytes, dedup_horizon_ms_ / 2);
  int64_t now = NowMs();
  return store_->ForEachDedup(shard_, [&](absl::uint128 fp, int32_t) { filter_->Add(fp, now); });
}

void ShardState::AppendSlice(const std::vector<CubeStore>& cubes, const RolledUp& written,
                             StateStore::Batch& batch) const {
  // Sorted, so RocksDB inserts them into its memtable with hints instead of a full skiplist
  // search each (see StateStore::Open). Values are encoded as they come (the hour and day
  // aggregates exist only during the walk) into one buffer.
  struct Entry {
    std::string key;
    size_t value_offset, value_size;
  };
  std::vector<Entry> entries;
  std::string values;
  for (size_t c = 0; c < cubes.size(); ++c) {
    const CubeStore& cube = cubes[c];
    if (cube.GroupCount() == 0) continue;
    size_t dims = cube.spec().dims.size();
    auto add = [&](Level level, int64_t bucket, const DimKey& k, const Aggregate& agg) {
      Entry& e = entries.emplace_back();
      AppendAggregateKeyPrefix(e.key, shard_, static_cast<int>(c), level, bucket);
      for (size_t i = 0; i < dims; ++i) AppendAggregateKeyDim(e.key, interner_.Lookup(k[i]));
      e.value_offset = values.size();
      EncodeAggregate(agg, values);
      e.value_size = values.size() - e.value_offset;
    };
    cube.ForEachAggregate(written.hours_through, written.days_through, add);
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.key < b.key; });
  for (const Entry& e : entries) {
    batch.MergeAggregate(e.key, std::string_view(values).substr(e.value_offset, e.value_size));
  }
}

absl::Status ShardState::WriteDedupRunNow(const WalPosition& checkpoint) {
  absl::Status written = WriteDedupRun(ids_, checkpoint);
  if (!written.ok()) return written;
  ids_.Clear();
  dedup_checkpoint_ = checkpoint;
  return absl::OkStatus();
}

// The fingerprints are uniform, so one counting pass on the 10 bits after the part's 6
// (DedupIndex::PartOf) leaves buckets of a thousandth each, sorted on their own in the cache.
void SortDedupPart(DedupId* first, DedupId* last, std::vector<DedupId>& scratch) {
  auto less = [](const DedupId& a, const DedupId& b) { return a.fingerprint < b.fingerprint; };
  size_t n = static_cast<size_t>(last - first);
  constexpr int kBits = 10;
  if (n < (size_t{1} << kBits) * 4) {
    std::sort(first, last, less);
    return;
  }
  auto bucket = [](const DedupId& id) {
    return static_cast<size_t>(absl::Uint128High64(id.fingerprint) >> (58 - kBits)) &
           ((size_t{1} << kBits) - 1);
  };
  std::vector<uint32_t> starts((size_t{1} << kBits) + 1, 0);
  for (const DedupId* id = first; id != last; ++id) ++starts[bucket(*id) + 1];
  for (size_t b = 1; b < starts.size(); ++b) starts[b] += starts[b - 1];
  scratch.resize(n);
  std::vector<uint32_t> next(starts.begin(), starts.end() - 1);
  for (const DedupId* id = first; id != last; ++id) scratch[next[bucket(*id)]++] = *id;
  for (size_t b = 0; b + 1 < starts.size(); ++b) {
    std::sort(scratch.begin() + starts[b], scratch.begin() + starts[b + 1], less);
  }
  std::copy(scratch.begin(), scratch.end(), first);
}

absl::Status ShardState::WriteDedupRun(const DedupIndex& ids, const WalPosition& checkpoint) {
  std::vector<DedupId> sorted, scratch;
  sorted.reserve(ids.size());
  // A part (a 64th of the ids) sorted at a time: the parts come in order.
  size_t part_begin = 0;
  ids.ForEachByPart(
      [&](absl::uint128 fp, int32_t hour) {
        sorted.push_back({fp, hour});
      },
      [&] {
        SortDedupPart(sorted.data() + part_begin, sorted.data() + sorted.size(), scratch);
        part_begin = sorted.size();
      });
  return store_->WriteDedupRun(shard_, sorted, checkpoint);
}

void ShardState::ClearSlice(int s) {
  for (CubeStore& cube : slices_[s].cubes) {
    groups_ -= cube.GroupCount();
    user_bytes_ -= cube.UserBytes();
    cube.Clear();
  }
}

absl::Status ShardState::FlushSlice(int s, const WalPosition& checkpoint) {
  if (!store_) return absl::OkStatus();
  absl::Status collected = CollectSliceFlush(true);
  if (!collected.ok()) return collected;
  auto start = std::chrono::steady_clock::now();
  StateStore::Batch batch;
  AppendSlice(slices_[s].cubes, written_, batch);
  batch.PutCheckpoint(shard_, s, checkpoint);
  absl::Status status = store_->Write(batch);
  if (!status.ok()) return status;
  AddToRecent(slices_[s].cubes);
  ClearSlice(s);
  slices_[s].checkpoint = checkpoint;
  ++flushes_;
  flush_micros_.Add(MicrosSince(start));
  return absl::OkStatus();
}

void ShardState::EnableBackgroundWrites() {
  if (store_ && !writer_) {
    writer_ =
        std::make_unique<BackgroundWriter>(fmt::format("adpulse-sw{}", shard_), kNiceStateWriter);
    run_writer_ =
        std::make_unique<BackgroundWriter>(fmt::format("adpulse-dr{}", shard_), kNiceStateWriter);
  }
}

absl::Status ShardState::StartDedupRun(const WalPosition& checkpoint) {
  if (!store_) return absl::OkStatus();
  absl::Status collected = CollectDedupRun(true);
  if (!collected.ok()) return collected;
  if (!run_writer_) return WriteDedupRunNow(checkpoint);  // no background writes
  RunInFlight& run = run_in_flight_.emplace();
  run.ids = std::move(ids_);
  ids_ = DedupIndex();
  run.checkpoint = checkpoint;
  run_writer_->Start([this, &run] {
    auto began = std::chrono::steady_clock::now();
    absl::Status written = WriteDedupRun(run.ids, run.checkpoint);
    write_micros_.Add(MicrosSince(began));
    return written;
  });
  return absl::OkStatus();
}

absl::Status ShardState::CollectDedupRun(bool wait) {
  if (!run_in_flight_) return absl::OkStatus();
  if (!run_error_.ok()) return run_error_;
  bool running = !run_writer_->Done();
  if (running && !wait) return absl::OkStatus();
  auto start = std::chrono::steady_clock::now();
  absl::Status status = run_writer_->Wait();
  if (running) wait_micros_.Add(MicrosSince(start));
  if (!status.ok()) {
    run_error_ = status;  // the ids stay in flight, still checked by Admit
    return status;
  }
  dedup_checkpoint_ = run_in_flight_->checkpoint;
  // Freed here: 64 hash maps of trivially destructible entries are 64 frees.
  run_in_flight_.reset();
  return absl::OkStatus();
}

absl::Status ShardState::StartSliceFlush(int s, const WalPosition& checkpoint) {
  if (!writer_) return FlushSlice(s, checkpoint);
  absl::Status collected = CollectSliceFlush(true);
  if (!collected.ok()) return collected;
  // Nothing is in flight: the moment a roll-up can be collected or begun.
  absl::Status rolled = AdvanceRollUps(NowMs());
  if (!rolled.ok()) return rolled;
  auto start = std::chrono::steady_clock::now();
  InFlight& f = in_flight_.emplace(InFlight{});  // clang refuses emplace(): InFlight is nested
  f.slice = s;
  f.checkpoint = checkpoint;
  // Every write of this shard before this one has finished: the snapshot is the store without it.
  before_in_flight_ = store_->GetSnapshot();
  Slice& slice = slices_[s];
  for (const CubeStore& cube : slice.cubes) {
    f.groups += cube.GroupCount();
    f.user_bytes += cube.UserBytes();
  }
  f.cubes = std::move(slice.cubes);
  ResetSlice(s);
  // The encoding too is done on the writer's thread: the moved-aside slice no longer changes.
  writer_->Start([this, &f, s, checkpoint, marks = written_, retired = std::move(retired_)] {
    if (retired) *retired = Retired();  // the previous slice's memory, freed here
    auto began = std::chrono::steady_clock::now();
    StateStore::Batch batch;
    AppendSlice(f.cubes, marks, batch);
    batch.PutCheckpoint(shard_, s, checkpoint);
    absl::Status written = store_->Write(batch);
    write_micros_.Add(MicrosSince(began));
    return written;
  });
  flush_micros_.Add(MicrosSince(start));
  return absl::OkStatus();
}

absl::Status ShardState::CollectSliceFlush(bool wait) {
  if (!in_flight_) return absl::OkStatus();
  if (!write_error_.ok()) return write_error_;
  bool running = !writer_->Done();
  if (running && !wait) return absl::OkStatus();
  auto start = std::chrono::steady_clock::now();
  absl::Status status = writer_->Wait();
  if (running) wait_micros_.Add(MicrosSince(start));
  if (!status.ok()) {
    // The memory stays in flight, still counted by queries; the worker stops ingesting.
    write_error_ = status;
    return status;
  }
  InFlight& f = *in_flight_;
  AddToRecent(f.cubes);
  slices_[f.slice].checkpoint = f.checkpoint;
  groups_ -= f.groups;
  user_bytes_ -= f.user_bytes;
  retired_ = std::make_shared<Retired>(Retired{std::move(f.cubes)});
  in_flight_.reset();
  before_in_flight_.reset();
  ++flushes_;
  return absl::OkStatus();
}

void ShardState::ResetSlice(int s) {
  Slice& slice = slices_[s];
  slice.cubes.clear();
  slice.cubes.reserve(catalog_.cubes().size());
  for (const CubeSpec& spec : catalog_.cubes()) slice.cubes.emplace_back(spec);
}

absl::Status ShardState::Flush(const WalPosition& checkpoint) {
  if (!store_) return absl::OkStatus();
  absl::Status collected = CollectSliceFlush(true);
  if (!collected.ok()) return collected;
  auto start = std::chrono::steady_clock::now();
  // The dedup ids first, as one run (waiting for a run still being written).
  collected = CollectDedupRun(true);
  if (!collected.ok()) return collected;
  collected = WriteDedupRunNow(checkpoint);
  if (!collected.ok()) return collected;
  StateStore::Batch batch;
  for (int s = 0; s < kSlices; ++s) {
    AppendSlice(slices_[s].cubes, written_, batch);
    batch.PutCheckpoint(shard_, s, checkpoint);
  }
  absl::Status status = store_->Write(batch);
  if (!status.ok()) return status;
  for (int s = 0; s < kSlices; ++s) {
    AddToRecent(slices_[s].cubes);
    ClearSlice(s);
    slices_[s].checkpoint = checkpoint;
  }
  interner_.Clear();
  recent_ids_.clear();
  ++flushes_;
  flush_micros_.Add(MicrosSince(start));
  return absl::OkStatus();
}

}  // namespace adpulse
