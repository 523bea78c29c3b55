#include "state/shard_state.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/container/inlined_vector.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/thread_priority.h"
#include "base/time_parse.h"
#include "window/aggregate_codec.h"

namespace adpulse {

ShardState::ShardState(const CubeCatalog& catalog, int shard, StateStore* store,
                       int64_t dedup_horizon_ms)
    : catalog_(catalog),
      shard_(shard),
      store_(store),
      dedup_horizon_ms_(dedup_horizon_ms),
      slices_(kSlices) {
  for (Slice& slice : slices_) {
    slice.cubes.reserve(catalog.cubes().size());
    for (const CubeSpec& spec : catalog.cubes()) slice.cubes.emplace_back(spec);
  }
}

ShardState::~ShardState() {
  if (writer_) (void)writer_->Wait();
  if (run_writer_) (void)run_writer_->Wait();
  if (roller_) (void)roller_->Wait();
}

void ShardState::PrefetchAdmit(absl::uint128 fingerprint) const {
  ids_.Prefetch(fingerprint);
  if (filter_) filter_->Prefetch(fingerprint);
}

Admission ShardState::Admit(const Event& e, absl::uint128 fp, int64_t now_ms, std::string* error) {
  int32_t hour = static_cast<int32_t>(FloorDiv(e.timestamp_ms, kHourMs));
  if (!ids_.Insert(fp, hour)) {
    ++duplicates_;
    return Admission::kDuplicate;
  }
  if (run_in_flight_ && run_in_flight_->ids.Contains(fp)) {  // on its way to the store
    ids_.Erase(fp);
    ++duplicates_;
    return Admission::kDuplicate;
  }
  if (store_ && (!filter_ || filter_->MayContain(fp))) {
    ++store_lookups_;
    int32_t min_hour = static_cast<int32_t>(FloorDiv(now_ms - dedup_horizon_ms_, kHourMs)) - 1;
    auto seen = store_->DedupContains(shard_, fp, min_hour);
    if (!seen.ok()) {
      ids_.Erase(fp);
      *error = std::string(seen.status().message());
      return Admission::kError;
    }
    if (*seen) {
      ids_.Erase(fp);
      ++duplicates_;
      return Admission::kDuplicate;
    }
  }
  // Into the filter as it is accepted, so that the filter covers it by the time it leaves memory
  // for the store; adding a whole run's ids at once held the worker for tens of milliseconds.
  if (filter_) filter_->Add(fp, now_ms);
  return Admission::kNew;
}

void ShardState::Unadmit(const Event& e) { ids_.Erase(DedupIndex::Fingerprint(e.event_id)); }

bool ShardState::Apply(const Event& e) {
  std::string error;
  if (Admit(e, &error) != Admission::kNew) return false;
  AddToCubes(e);
  return true;
}

int ShardState::GroupSlice(int cube, const DimKey& key, size_t dims) const {
  uint64_t hashes[kMaxCubeDims];
  for (size_t i = 0; i < dims; ++i) hashes[i] = interner_.Hash(key[i]);
  return SliceOfHashes(cube, hashes, dims);
}

int ShardState::SliceOfHashes(int cube, const uint64_t* hashes, size_t dims) {
  uint64_t h = static_cast<uint64_t>(cube + 1) * 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < dims; ++i) h = (h ^ hashes[i]) * 0xBF58476D1CE4E5B9ull;
  return static_cast<int>((h >> 32) % kSlices);
}

void ShardState::HashEvent(const Event& e, EventHashes* hashes) const {
  for (Dim d : catalog_.used_dims()) {
    int i = static_cast<int>(d);
    hashes->values[i] = Interner::HashOf(e.dim(d));
    interner_.Prefetch({e.dim(d), hashes->values[i]});
  }
  hashes->user.reset();
  if (!e.user_id.empty()) hashes->user = XXH3_64bits(e.user_id.data(), e.user_id.size());
}

int ShardState::PrepareSteps(const Event& e, const EventHashes& hashes,
                             const WalPosition* replay_at, Step* steps) {
  std::array<uint32_t, kDimCount> ids{};
  const std::array<uint64_t, kDimCount>& value_hashes = hashes.values;
  for (Dim d : catalog_.used_dims()) {
    int i = static_cast<int>(d);
    ids[i] = interner_.Intern({e.dim(d), value_hashes[i]});
  }
  int n = 0;
  int cubes = static_cast<int>(catalog_.cubes().size());
  for (int c = 0; c < cubes; ++c) {
    const auto& dims = catalog_.cube(c).dims;
    Step& step = steps[n];
    step.key = DimKey{};
    uint64_t hashes[kMaxCubeDims];
    for (size_t i = 0; i < dims.size(); ++i) {
      step.key[i] = ids[static_cast<int>(dims[i])];
      hashes[i] = value_hashes[static_cast<int>(dims[i])];
    }
    Slice& slice = slices_[SliceOfHashes(c, hashes, dims.size())];
    if (replay_at && *replay_at < slice.checkpoint) continue;
    step.cube = &slice.cubes[c];
    step.timestamp_ms = e.timestamp_ms;
    step.cube->PrefetchRecent();
    ++n;
  }
  return n;
}

void ShardState::FindTables(Step* steps, int n) {
  for (int i = 0; i < n; ++i) {
    steps[i].table = &steps[i].cube->TableFor(steps[i].timestamp_ms);
    __builtin_prefetch(steps[i].table);
  }
}

void ShardState::LocateSteps(Step* steps, int n) {
  for (int i = 0; i < n; ++i) {
    steps[i].hash = GroupTable::Hash(steps[i].key);
    steps[i].table->PrefetchSlot(steps[i].hash);
  }
}

void ShardState::PeekSteps(Step* steps, int n) {
  for (int i = 0; i < n; ++i) steps[i].table->PrefetchEntry(steps[i].hash);
}

void ShardState::ProbeSteps(Step* steps, int n, std::optional<uint64_t> user_hash) {
  for (int i = 0; i < n; ++i) {
    Step& step = steps[i];
    bool created;
    step.agg = &step.cube->GroupIn(*step.table, step.key, step.hash, &created);
    groups_ += created;
    if (user_hash && step.cube->keeps_users()) step.agg->users.Prefetch(*user_hash);
  }
}

void ShardState::ApplySteps(const Event& e, const Step* steps, int n,
                            std::optional<uint64_t> user_hash) {
  for (int i = 0; i < n; ++i) {
    const Step& step = steps[i];
    // Still where it was found: a group table's entries never move.
    size_t grown = step.agg->Add(e, step.cube->keeps_users() ? user_hash : std::nullopt);
    if (grown) {
      step.cube->AddUserBytes(grown);
      user_bytes_ += grown;
    }
  }
  if (e.timestamp_ms + kLateEventMs < max_event_ms_) ++late_;
  if (e.timestamp_ms > max_event_ms_) {
    max_event_ms_ = e.timestamp_ms;
    newest_event_ms_.Set(static_cast<uint64_t>(std::max<int64_t>(e.timestamp_ms, 0)));
  }
  ++applied_;
}

void ShardState::AddToCubes(const Event& e, const WalPosition* replay_at) {
  // The stages of AddBatchToCubes one after another, each a pass over the cubes, so that the
  // cubes' cache misses at least overlap each other.
  absl::InlinedVector<Step, 16> steps(catalog_.cubes().size());
  EventHashes hashes;
  HashEvent(e, &hashes);
  int n = PrepareSteps(e, hashes, replay_at, steps.data());
  FindTables(steps.data(), n);
  LocateSteps(steps.data(), n);
  PeekSteps(steps.data(), n);
  ProbeSteps(steps.data(), n, hashes.user);
  ApplySteps(e, steps.data(), n, hashes.user);
}

namespace {
// Events between one stage of an event's updates and the next (each prefetches what the next
// one reads): the interner's slots, the cube's recent tables, the table, the group's index slot,
// the group, its HyperLogLog slot.
constexpr size_t kPipelineDistance = 3;
constexpr size_t kPipelineStages = 7;
constexpr size_t kPipelineEvents = (kPipelineStages - 1) * kPipelineDistance + 1;
}  // namespace

void ShardState::AddBatchToCubes(const Event* const* events, size_t n) {
  size_t cubes = catalog_.cubes().size();
  batch_steps_.resize(kPipelineEvents * cubes);
  int counts[kPipelineEvents];
  EventHashes hashes[kPipelineEvents];
  auto steps_of = [&](size_t i) { return &batch_steps_[(i % kPipelineEvents) * cubes]; };
  constexpr size_t d = kPipelineDistance;
  for (size_t i = 0; i < n + (kPipelineStages - 1) * d; ++i) {
    // Stage k works on event i - k * d, if there is one.
    auto at = [&](size_t k, size_t* j) {
      if (i < k * d || i - k * d >= n) return false;
      *j = i - k * d;
      return true;
    };
    size_t j;
    if (at(0, &j)) HashEvent(*events[j], &hashes[j % kPipelineEvents]);
    if (at(1, &j)) {
      counts[j % kPipelineEvents] =
          PrepareSteps(*events[j], hashes[j % kPipelineEvents], nullptr, steps_of(j));
    }
    if (at(2, &j)) FindTables(steps_of(j), counts[j % kPipelineEvents]);
    if (at(3, &j)) LocateSteps(steps_of(j), counts[j % kPipelineEvents]);
    if (at(4, &j)) PeekSteps(steps_of(j), counts[j % kPipelineEvents]);
    if (at(5, &j)) {
      ProbeSteps(steps_of(j), counts[j % kPipelineEvents], hashes[j % kPipelineEvents].user);
    }
    if (at(6, &j)) {
      ApplySteps(*events[j], steps_of(j), counts[j % kPipelineEvents],
                 hashes[j % kPipelineEvents].user);
    }
  }
}

absl::Status ShardState::LoadCheckpoints() {
  if (!store_) return absl::OkStatus();
  auto checkpoints = store_->ReadSliceCheckpoints(shard_, kSlices);
  if (!checkpoints.ok()) return checkpoints.status();
  for (int i = 0; i < kSlices; ++i) slices_[i].checkpoint = (*checkpoints)[i];
  auto dedup = store_->ReadDedupCheckpoint(shard_);
  if (!dedup.ok()) return dedup.status();
  // Without a dedup run yet (a new data dir, or one whose ids were written with the slices), the
  // store holds the id of every event before the oldest slice checkpoint.
  dedup_checkpoint_ = slices_[0].checkpoint;
  for (const Slice& slice : slices_)
    dedup_checkpoint_ = std::min(dedup_checkpoint_, slice.checkpoint);
  if (dedup->has_value()) dedup_checkpoint_ = **dedup;
  return absl::OkStatus();
}

WalPosition ShardState::OldestCheckpoint() const {
  WalPosition oldest = dedup_checkpoint_;
  for (const Slice& slice : slices_) oldest = std::min(oldest, slice.checkpoint);
  return oldest;
}

void ShardState::Replay(const Event& e, const WalPosition& at) {
  // The log holds each accepted event once; its id goes back into memory unless the store's dedup
  // runs already have it.
  if (!(at < dedup_checkpoint_)) {
    absl::uint128 fp = DedupIndex::Fingerprint(e.event_id);
    ids_.Insert(fp, static_cast<int32_t>(FloorDiv(e.timestamp_ms, kHourMs)));
    if (filter_) filter_->Add(fp, NowMs());
  }
  AddToCubes(e, &at);
}

ShardStats ShardState::CounterSnapshot() const {
  ShardStats s;
  s.events_applied = applied_.Get();
  s.duplicates = duplicates_.Get();
  s.late_events = late_.Get();
  s.flushes = flushes_.Get();
  s.flush_micros = flush_micros_.Get();
  s.write_micros = write_micros_.Get();
  s.wait_micros = wait_micros_.Get();
  s.store_dedup_lookups = store_lookups_.Get();
  s.rollups = rollups_done_.Get();
  s.rollup_micros = rollup_micros_.Get();
  s.rolled_until_ms = rolled_until_ms_.Get();
  s.newest_event_ms = static_cast<int64_t>(newest_event_ms_.Get());
  s.memory_groups = memory_groups_.Get();
  s.memory_dedup_ids = memory_ids_.Get();
  s.interned_bytes = interned_bytes_.Get();
  s.recent_hours_bytes = recent_bytes_.Get();
  return s;
}

}  // namespace adpulse
