// Everything one shard knows: interned dimension values, one CubeStore per configured cube, and the
// dedup index. Owned and touched only by its worker thread; queries reach it as tasks on the ring.
#pragma once
#include <cstdint>
#include <vector>

#include "adpulse/event.h"
#include "state/dedup_index.h"
#include "state/interner.h"
#include "window/cube_catalog.h"
#include "window/cube_store.h"
#include "window/query.h"

namespace adpulse {

struct ShardStats {
  uint64_t events_applied = 0;
  uint64_t duplicates = 0;
  size_t dedup_ids = 0;
  size_t interned_values = 0;
  size_t groups_minute = 0;
};

class ShardState {
 public:
  ShardState(const CubeCatalog& catalog, int64_t dedup_horizon_ms);

  // Dedups and, if new, adds the event to every cube. Returns false for a duplicate.
  bool Apply(const Event& e);
  // Adds without the dedup check (the caller has decided the event is new).
  void AddToCubes(const Event& e);

  DedupIndex& dedup() { return dedup_; }
  void CountDuplicate() { ++duplicates_; }

  void RunQuery(const QuerySpec& spec, ResultTable& out) const;
  void Housekeep(int64_t now_ms) { dedup_.Expire(now_ms); }
  ShardStats Stats() const;

 private:
  const CubeCatalog& catalog_;
  Interner interner_;
  std::vector<CubeStore> cubes_;
  DedupIndex dedup_;
  uint64_t applied_ = 0;
  uint64_t duplicates_ = 0;
};

}  // namespace adpulse
