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
  if (e.timestamp_ms > max_event_ms_) max_event_ms_ = e.timestamp_ms;
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

namespace {
uint64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - start)
                                   .count());
}
}  // namespace

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
  InFlight& f = in_flight_.emplace();
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
  s.memory_groups = memory_groups_.Get();
  s.memory_dedup_ids = memory_ids_.Get();
  s.interned_bytes = interned_bytes_.Get();
  s.recent_hours_bytes = recent_bytes_.Get();
  return s;
}

}  // namespace adpulse
