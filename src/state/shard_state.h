// Everything one shard knows. In memory: the aggregate deltas and dedup ids accepted since the last
// flush (interned, per cube, per minute/hour/day bucket). In the state store: everything flushed
// before. A query reads both; a flush moves the memory into the store in one atomic batch with the
// shard's checkpoint. Owned and touched only by its worker thread; queries reach it as tasks.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "adpulse/event.h"
#include "base/relaxed_counter.h"
#include "state/dedup_filter.h"
#include "state/dedup_index.h"
#include "state/interner.h"
#include "storage/state_store.h"
#include "window/cube_catalog.h"
#include "window/cube_store.h"
#include "window/query.h"

namespace adpulse {

struct ShardStats {
  uint64_t events_applied = 0;
  uint64_t duplicates = 0;
  uint64_t late_events = 0;
  uint64_t flushes = 0;
  uint64_t store_dedup_lookups = 0;  // new ids the dedup filter could not rule out
};

enum class Admission { kNew, kDuplicate, kError };

// Events whose time is this far behind the newest event the shard has seen count as late.
inline constexpr int64_t kLateEventMs = 60'000;

class ShardState {
 public:
  // `store` may be null: memory only (unit tests, benchmarks).
  ShardState(const CubeCatalog& catalog, int shard, StateStore* store, int64_t dedup_horizon_ms);

  // Dedup against memory, then the store. kError (with `error`) when the store cannot be read.
  Admission Admit(const Event& e, std::string* error);
  // Forgets an admitted event whose log write failed.
  void Unadmit(const Event& e) { dedup_.Erase(e.event_id); }
  void AddToCubes(const Event& e);
  // Admit + AddToCubes, for replay and tests; false for a duplicate.
  bool Apply(const Event& e);

  // Puts a Bloom filter of `bytes` in front of the store's dedup ids and fills it from the store.
  absl::Status EnableDedupFilter(uint64_t bytes);

  // Moves everything in memory into the store with `checkpoint`, atomically. On error nothing
  // changes in memory. A no-op without a store.
  absl::Status Flush(const WalPosition& checkpoint);
  bool HasUnflushed() const { return !dedup_.empty_hint() || groups_in_memory() > 0; }
  size_t groups_in_memory() const;

  // Memory plus the store; an error when the store cannot be read.
  absl::Status RunQuery(const QuerySpec& spec, ResultTable& out) const;
  // Safe to read from any thread.
  ShardStats CounterSnapshot() const;
  int shard() const { return shard_; }

 private:
  absl::Status ScanStore(const QuerySpec& spec, ResultTable& out) const;

  const CubeCatalog& catalog_;
  int shard_;
  StateStore* store_;
  int64_t dedup_horizon_ms_;
  Interner interner_;
  std::vector<CubeStore> cubes_;
  DedupIndex dedup_;
  std::unique_ptr<DedupFilter> filter_;
  RelaxedCounter store_lookups_;
  int64_t max_event_ms_ = INT64_MIN;
  // Written by the worker, read by metrics scrapes from other threads.
  RelaxedCounter applied_;
  RelaxedCounter duplicates_;
  RelaxedCounter late_;
  RelaxedCounter flushes_;
};

}  // namespace adpulse
