#include "state/shard_state.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/time_parse.h"
#include "window/aggregate_codec.h"

namespace adpulse {

ShardState::ShardState(const CubeCatalog& catalog, int shard, StateStore* store,
                       int64_t dedup_horizon_ms)
    : catalog_(catalog), shard_(shard), store_(store), dedup_horizon_ms_(dedup_horizon_ms) {
  cubes_.reserve(catalog.cubes().size());
  for (const CubeSpec& spec : catalog.cubes()) cubes_.emplace_back(spec);
}

Admission ShardState::Admit(const Event& e, std::string* error) {
  absl::uint128 fp = DedupIndex::Fingerprint(e.event_id);
  int32_t hour = static_cast<int32_t>(FloorDiv(e.timestamp_ms, kHourMs));
  if (!dedup_.Insert(fp, hour)) {
    ++duplicates_;
    return Admission::kDuplicate;
  }
  if (store_ && (!filter_ || filter_->MayContain(fp))) {
    ++store_lookups_;
    int32_t min_hour = static_cast<int32_t>(FloorDiv(NowMs() - dedup_horizon_ms_, kHourMs)) - 1;
    auto seen = store_->DedupContains(shard_, fp, min_hour);
    if (!seen.ok()) {
      dedup_.Erase(fp);
      *error = std::string(seen.status().message());
      return Admission::kError;
    }
    if (*seen) {
      dedup_.Erase(fp);
      ++duplicates_;
      return Admission::kDuplicate;
    }
  }
  return Admission::kNew;
}

bool ShardState::Apply(const Event& e) {
  std::string error;
  if (Admit(e, &error) != Admission::kNew) return false;
  AddToCubes(e);
  return true;
}

void ShardState::AddToCubes(const Event& e) {
  std::array<uint32_t, kDimCount> ids{};
  for (Dim d : catalog_.used_dims()) ids[static_cast<int>(d)] = interner_.Intern(e.dim(d));
  std::optional<uint64_t> user_hash;
  if (!e.user_id.empty()) user_hash = XXH3_64bits(e.user_id.data(), e.user_id.size());
  for (CubeStore& cube : cubes_) {
    DimKey key{};
    const auto& dims = cube.spec().dims;
    for (size_t i = 0; i < dims.size(); ++i) key[i] = ids[static_cast<int>(dims[i])];
    cube.Add(key, e, user_hash);
  }
  if (e.timestamp_ms + kLateEventMs < max_event_ms_) ++late_;
  if (e.timestamp_ms > max_event_ms_) max_event_ms_ = e.timestamp_ms;
  ++applied_;
}

absl::Status ShardState::EnableDedupFilter(uint64_t bytes) {
  if (!store_) return absl::OkStatus();
  filter_ = std::make_unique<DedupFilter>(bytes, dedup_horizon_ms_ / 2);
  int64_t now = NowMs();
  return store_->ForEachDedup(shard_, [&](absl::uint128 fp, int32_t) { filter_->Add(fp, now); });
}

size_t ShardState::groups_in_memory() const {
  size_t n = 0;
  for (const CubeStore& c : cubes_) n += c.GroupCount();
  return n;
}

absl::Status ShardState::Flush(const WalPosition& checkpoint) {
  if (!store_) return absl::OkStatus();
  StateStore::Batch batch;
  // Sorted, so RocksDB inserts them into its memtable with hints instead of a full skiplist
  // search each (see StateStore::Open).
  std::vector<std::pair<std::string, const Aggregate*>> entries;
  for (size_t c = 0; c < cubes_.size(); ++c) {
    const CubeStore& cube = cubes_[c];
    size_t dims = cube.spec().dims.size();
    cube.ForEachAggregate([&](Level level, int64_t bucket, const DimKey& k, const Aggregate& agg) {
      std::string key;
      AppendAggregateKeyPrefix(key, shard_, static_cast<int>(c), level, bucket);
      for (size_t i = 0; i < dims; ++i) AppendAggregateKeyDim(key, interner_.Lookup(k[i]));
      entries.emplace_back(std::move(key), &agg);
    });
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string value;
  for (const auto& [key, agg] : entries) {
    value.clear();
    EncodeAggregate(*agg, value);
    batch.MergeAggregate(key, value);
  }
  dedup_.ForEach([&](absl::uint128 fp, int32_t hour) { batch.PutDedup(shard_, fp, hour); });
  batch.PutCheckpoint(shard_, checkpoint);
  absl::Status s = store_->Write(batch);
  if (!s.ok()) return s;
  if (filter_) {
    int64_t now = NowMs();
    dedup_.ForEach([&](absl::uint128 fp, int32_t) { filter_->Add(fp, now); });
  }
  for (CubeStore& cube : cubes_) cube.Clear();
  dedup_.Clear();
  interner_.Clear();
  ++flushes_;
  return absl::OkStatus();
}

absl::Status ShardState::RunQuery(const QuerySpec& spec, ResultTable& out) const {
  const CubeStore& store = cubes_[spec.cube];
  std::vector<ResolvedFilter> filters;
  for (const auto& [dim, values] : spec.filters) {
    ResolvedFilter f;
    f.position = store.spec().PositionOf(dim);
    for (const std::string& v : values) {
      int64_t id = interner_.Find(v);
      if (id >= 0) f.ids.push_back(static_cast<uint32_t>(id));
    }
    filters.push_back(std::move(f));
  }
  ExecuteOnCube(
      spec, store, filters,
      [this](uint32_t id) -> const std::string& { return interner_.Lookup(id); }, out);
  return store_ ? ScanStore(spec, out) : absl::OkStatus();
}

absl::Status ShardState::ScanStore(const QuerySpec& spec, ResultTable& out) const {
  const CubeSpec& cube = catalog_.cube(spec.cube);
  std::vector<std::pair<int, const std::vector<std::string>*>> filters;
  for (const auto& [dim, values] : spec.filters)
    filters.emplace_back(cube.PositionOf(dim), &values);
  std::vector<int> positions;
  for (Dim d : spec.group_by) positions.push_back(cube.PositionOf(d));
  std::string from, to;
  AggregateKey key;
  absl::Status status = absl::OkStatus();
  ForEachOutputBucket(spec, [&](int64_t out_time, int64_t from_ms, int64_t to_ms) {
    DecomposeRange(from_ms, to_ms, [&](Level level, int64_t first, int64_t end) {
      if (!status.ok()) return;
      from.clear();
      to.clear();
      AppendAggregateKeyPrefix(from, shard_, spec.cube, level, first);
      AppendAggregateKeyPrefix(to, shard_, spec.cube, level, end);
      absl::Status s = store_->Scan(from, to, [&](std::string_view k, std::string_view v) {
        if (!DecodeAggregateKey(k, key) || key.dims.size() != cube.dims.size()) return true;
        for (const auto& [pos, values] : filters) {
          bool match = false;
          for (const std::string& want : *values) match |= (key.dims[pos] == want);
          if (!match) return true;
        }
        Aggregate agg;
        if (!DecodeAggregate(v, agg)) return true;
        std::vector<std::string> dims;
        dims.reserve(positions.size());
        for (int p : positions) dims.emplace_back(key.dims[p]);
        out.Add(out_time, std::move(dims), agg, spec.need_users);
        return true;
      });
      if (!s.ok()) status = s;
    });
  });
  return status;
}

ShardStats ShardState::CounterSnapshot() const {
  ShardStats s;
  s.events_applied = applied_.Get();
  s.duplicates = duplicates_.Get();
  s.late_events = late_.Get();
  s.flushes = flushes_.Get();
  s.store_dedup_lookups = store_lookups_.Get();
  return s;
}

}  // namespace adpulse
