#include "state/shard_state.h"

namespace adpulse {

ShardState::ShardState(const CubeCatalog& catalog, int64_t dedup_horizon_ms)
    : catalog_(catalog), dedup_(dedup_horizon_ms) {
  cubes_.reserve(catalog.cubes().size());
  for (const CubeSpec& spec : catalog.cubes()) cubes_.emplace_back(spec);
}

bool ShardState::Apply(const Event& e) {
  if (!dedup_.Insert(e.event_id, e.timestamp_ms)) {
    ++duplicates_;
    return false;
  }
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
  ++applied_;
}

void ShardState::RunQuery(const QuerySpec& spec, ResultTable& out) const {
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
  ExecuteOnCube(spec, store, filters,
                [this](uint32_t id) -> const std::string& { return interner_.Lookup(id); }, out);
}

ShardStats ShardState::Stats() const {
  ShardStats s;
  s.events_applied = applied_;
  s.duplicates = duplicates_;
  s.dedup_ids = dedup_.size();
  s.interned_values = interner_.size();
  for (const CubeStore& c : cubes_) s.groups_minute += c.GroupCount();
  return s;
}

}  // namespace adpulse
