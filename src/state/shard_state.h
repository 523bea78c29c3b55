// Everything one shard knows. In memory: the aggregate deltas and dedup ids accepted since they
// were last flushed (interned, per cube, per minute bucket). In the state store: everything flushed
// before. A query reads both.
//
// The aggregate memory is cut into kSlices slices: a group belongs to the slice its cube and
// dimension values hash to. A slice is flushed on its own, in one atomic batch with its own
// checkpoint (the log position it covers), so the worker flushes a little at a time and each
// aggregate stays in memory for a whole flush interval, absorbing many events into one write,
// without ever stalling ingestion for a whole flush. The dedup ids are written apart from the
// slices, all at once, as a sorted run with a checkpoint of its own (StartDedupRun). Recovery
// replays the log from the oldest checkpoint and gives each slice, and the dedup ids, only the
// events after their own.
//
// With background writes on, a slice flush only encodes the slice on the worker: its memory moves
// aside ("in flight") and a BackgroundWriter thread writes the batch. Until the worker collects
// the finished write, queries read the in-flight memory plus the store as it was before the write
// (a snapshot), and dedup checks the in-flight ids, so nothing is counted twice or missed.
//
// Roll-ups (EnableRollups): a flush writes minute aggregates, and hour and day aggregates only
// for the periods the store has already rolled up. An hour is rolled up from its stored minutes
// once it has been over for the roll-up delay, a day from its hours once they all are: a roll-up
// first deletes the period's stored aggregates of the coarser level and marks it "written" (from
// then on flushes write that level for it too), then sums the finer level as of a snapshot taken
// right after, on a thread of its own, merges the sums in and marks the period "rolled up". Until
// the worker collects that, queries read the period's finer buckets. The marks are stored
// (docs/formats/state.md); a roll-up a crash interrupted is redone whole at startup. One flush
// then writes about a third of the keys it used to (minutes only).
// Owned and touched only by its worker thread; queries reach it as tasks.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "adpulse/event.h"
#include "base/relaxed_counter.h"
#include "base/time_parse.h"
#include "state/background_writer.h"
#include "state/dedup_filter.h"
#include "state/dedup_index.h"
#include "state/interner.h"
#include "state/recent_hours.h"
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
  uint64_t flush_micros = 0;         // time the worker spent in flushes
  uint64_t write_micros = 0;         // time the background writer spent encoding and writing
  uint64_t wait_micros = 0;          // time the worker waited for the background writer
  uint64_t store_dedup_lookups = 0;  // new ids the dedup filter could not rule out
  uint64_t rollups = 0;              // hours and days rolled up
  uint64_t rollup_micros = 0;        // time the roll-up thread spent on them
  uint64_t rolled_until_ms = 0;      // end of the last hour rolled up (0: roll-ups off)
  int64_t newest_event_ms = 0;       // the newest event time applied (0: none yet)
  // Held in memory, as of the last PublishGauges.
  uint64_t memory_groups = 0;
  uint64_t memory_dedup_ids = 0;
  uint64_t interned_bytes = 0;
  uint64_t recent_hours_bytes = 0;  // RecentHours::bytes()
};

enum class Admission { kNew, kDuplicate, kError };

// Events whose time is this far behind the newest event the shard has seen count as late.
inline constexpr int64_t kLateEventMs = 60'000;

// Sorts the ids of one DedupIndex part (all with the same top 6 fingerprint bits) by
// fingerprint; `scratch` is reused between calls.
void SortDedupPart(DedupId* first, DedupId* last, std::vector<DedupId>& scratch);

class ShardState {
 public:
  static constexpr int kSlices = 64;
  // A query whose filters fix every dimension of its cube in at most this many combinations
  // probes for those groups instead of scanning the cube's memory.
  static constexpr size_t kMaxExactKeys = 256;

  // `store` may be null: memory only (unit tests, benchmarks).
  ShardState(const CubeCatalog& catalog, int shard, StateStore* store, int64_t dedup_horizon_ms);
  ~ShardState();  // waits for a background write still running

  // Dedup against memory, then the store. kError (with `error`) when the store cannot be read.
  Admission Admit(const Event& e, std::string* error) {
    // The clock is read only for the dedup filter and the store, which are what use it.
    return Admit(e, DedupIndex::Fingerprint(e.event_id), filter_ || store_ ? NowMs() : 0, error);
  }
  // The same with the fingerprint of e.event_id and the wall-clock time given (a batch reads the
  // clock once, not once an event).
  Admission Admit(const Event& e, absl::uint128 fingerprint, int64_t now_ms, std::string* error);
  // Starts loading the memory Admit of an event with this fingerprint reads (the in-memory ids and
  // the dedup filter), so that a caller can overlap several events' cache misses.
  void PrefetchAdmit(absl::uint128 fingerprint) const;
  // Forgets an admitted event whose log write failed.
  void Unadmit(const Event& e);
  void AddToCubes(const Event& e) { AddToCubes(e, nullptr); }
  // AddToCubes for each of `n` events, in order, with the same result; software-pipelined: the
  // memory an event's updates touch is prefetched while the events before it are applied, so the
  // cache misses of several events overlap (the group commit's path).
  void AddBatchToCubes(const Event* const* events, size_t n);
  // Admit + AddToCubes, for tests; false for a duplicate.
  bool Apply(const Event& e);

  // Recovery: reads the slice checkpoints from the store; then Replay each logged event after
  // OldestCheckpoint(), with the log position of its record, to give it to the slices whose
  // checkpoint does not cover it yet.
  absl::Status LoadCheckpoints();
  WalPosition OldestCheckpoint() const;
  void Replay(const Event& e, const WalPosition& at);

  // Puts a Bloom filter of `bytes` in front of the store's dedup ids and fills it from the store.
  absl::Status EnableDedupFilter(uint64_t bytes);

  // Moves everything in memory into the store with `checkpoint` for every slice, atomically, and
  // empties the interner. On error nothing changes in memory. A no-op without a store.
  absl::Status Flush(const WalPosition& checkpoint);
  // Moves one slice into the store with `checkpoint`, atomically, and waits for it.
  absl::Status FlushSlice(int slice, const WalPosition& checkpoint);
  // From now on StartSliceFlush writes on a thread of its own.
  void EnableBackgroundWrites();
  // FlushSlice without waiting for the write (when background writes are on): first collects the
  // previous slice's write, waiting for it if it is still running, and returns its error if any.
  absl::Status StartSliceFlush(int slice, const WalPosition& checkpoint);
  // Collects a finished background write (all of it, waiting, with `wait`): the slice's checkpoint
  // advances and its memory is let go. The write's error, if any (the memory stays).
  absl::Status CollectSliceFlush(bool wait);
  bool HasUnflushed() const { return groups_ > 0 || !ids_.empty_hint(); }
  // True while a background write is still running (starting a flush would wait for it).
  bool WriteBusy() const { return in_flight_ && !writer_->Done(); }
  size_t groups_in_memory() const { return groups_; }
  // The memory those groups hold: each group's table entry and index share (kBytesPerGroup), and
  // the heap of its HyperLogLog, counted as it grows.
  static constexpr size_t kBytesPerGroup = sizeof(GroupTable::Entry) + 48;
  size_t group_bytes_in_memory() const { return groups_ * kBytesPerGroup + user_bytes_; }
  size_t dedup_ids_in_memory() const {
    return ids_.size() + (run_in_flight_ ? run_in_flight_->ids.size() : 0);
  }
  // Dedup runs (needs EnableBackgroundWrites): the ids accepted since the last run, moved aside and
  // written by a thread of their own as one sorted run with `checkpoint` (the log position every
  // one of them is before). First collects the previous run, waiting for it if still running.
  absl::Status StartDedupRun(const WalPosition& checkpoint);
  // Collects a finished dedup run (waiting, with `wait`): its checkpoint becomes the shard's.
  absl::Status CollectDedupRun(bool wait);
  bool DedupRunBusy() const { return run_in_flight_.has_value() && !run_writer_->Done(); }
  size_t dedup_ids_since_run() const { return ids_.size(); }
  size_t interner_bytes() const { return interner_.bytes(); }

  // From now on hours and days are rolled up by the store once closed for `delay_ms` (see the
  // top): reads the roll-up marks and redoes a roll-up a crash interrupted. A shard without marks
  // starts with everything before the current hour and day rolled up, or, if it has never been
  // flushed (a new data dir), everything before `oldest_event_ms` (the oldest event time
  // accepted): then every hour it can get events for is rolled up from its minutes. Call before
  // recovery's replay. A no-op without a store.
  absl::Status EnableRollups(int64_t delay_ms, int64_t now_ms, int64_t oldest_event_ms);
  // Collects a finished roll-up and starts the next one due, when no slice write is in flight.
  // Never waits for a running one. Its error, if any (sticks).
  absl::Status MaybeRollUp(int64_t now_ms);
  // Waits for a running roll-up and collects it.
  absl::Status FinishRollUp();
  // What queries read as whole hour and day buckets from the store.
  const RolledUp& rolled_up() const { return rolled_; }

  // From now on the counters of the last `hours` hours are held in memory too (RecentHours), in
  // about `budget_bytes`, and queries that need no unique users read whole hours there: fills
  // them from the store. Call after EnableRollups and LoadCheckpoints, before recovery's replay.
  // A no-op without a store or with `hours` 0.
  absl::Status EnableRecentHours(int64_t hours, size_t budget_bytes, int64_t now_ms);
  // Null unless enabled.
  const RecentHours* recent_hours() const { return recent_.get(); }
  // Fills the recent hours again from the store, after something wrote the store without going
  // through this shard's memory (reconciliation's rebuild). A no-op unless enabled.
  absl::Status ReloadRecentHours(int64_t now_ms);

  // Memory plus the store; an error when the store cannot be read.
  absl::Status RunQuery(const QuerySpec& spec, ResultTable& out) const;
  // Safe to read from any thread.
  ShardStats CounterSnapshot() const;
  // Makes the current memory figures visible to CounterSnapshot.
  void PublishGauges() {
    memory_groups_.Set(groups_);
    memory_ids_.Set(dedup_ids_in_memory());
    interned_bytes_.Set(interner_.bytes());
    recent_bytes_.Set(recent_ ? recent_->bytes() : 0);
  }
  int shard() const { return shard_; }

 private:
  struct Slice {
    std::vector<CubeStore> cubes;  // one per cube of the catalog
    WalPosition checkpoint;        // the store holds this slice's share of every event before it
  };
  int GroupSlice(int cube, const DimKey& key, size_t dims) const;
  // The same from the XXH3 of each dimension value (Interner::Hash), in the cube's order.
  static int SliceOfHashes(int cube, const uint64_t* hashes, size_t dims);
  // With `replay_at`, only the slices whose checkpoint is at or before it get the event.
  void AddToCubes(const Event& e, const WalPosition* replay_at);
  // One cube update of an event being applied (AddToCubes, AddBatchToCubes).
  struct Step {
    CubeStore* cube;
    int64_t timestamp_ms;
    GroupTable* table;
    DimKey key;
    uint64_t hash;  // GroupTable::Hash(key)
    Aggregate* agg;
  };
  // The hashes of an event's dimension values (the catalog's used ones) and user id.
  struct EventHashes {
    std::array<uint64_t, kDimCount> values;
    std::optional<uint64_t> user;
  };
  // Hashes `e`'s values and prefetches the interner's memory for them.
  void HashEvent(const Event& e, EventHashes* hashes) const;
  // The steps of `e` (one per cube, except slices whose checkpoint covers `replay_at`), their
  // cubes prefetched; returns how many. Interns its dimension values.
  int PrepareSteps(const Event& e, const EventHashes& hashes, const WalPosition* replay_at,
                   Step* steps);
  // Finds each step's table (the minute's) and prefetches it.
  void FindTables(Step* steps, int n);
  // Hashes each step's key and prefetches its table's index slot.
  void LocateSteps(Step* steps, int n);
  // Prefetches each step's group (or where a new one will go).
  void PeekSteps(Step* steps, int n);
  // Finds or creates each step's group and prefetches its HyperLogLog slot.
  void ProbeSteps(Step* steps, int n, std::optional<uint64_t> user_hash);
  // Adds `e` to each step's group.
  void ApplySteps(const Event& e, const Step* steps, int n, std::optional<uint64_t> user_hash);
  std::vector<Step> batch_steps_;  // AddBatchToCubes' pipeline
  // The batch that moves these cubes of a slice into the store. Reads the interner: safe on the
  // background writer for a slice moved aside before (Interner::Lookup).
  void AppendSlice(const std::vector<CubeStore>& cubes, const RolledUp& written,
                   StateStore::Batch& batch) const;
  // Writes `ids` as one dedup run with `checkpoint`.
  absl::Status WriteDedupRun(const DedupIndex& ids, const WalPosition& checkpoint);
  // Writes the ids in memory as a run on this thread, then lets them go.
  absl::Status WriteDedupRunNow(const WalPosition& checkpoint);
  // Roll-ups: with no slice write in flight, collects a finished one and starts the next due.
  absl::Status AdvanceRollUps(int64_t now_ms);
  // Collects the running roll-up if it has finished (waiting for it, with `wait`).
  absl::Status CollectRollUp(bool wait);
  // Deletes the stored `level` aggregates of `bucket` and writes the marks, atomically.
  absl::Status BeginRollUp(Level level, int64_t bucket, const RolledUp& written,
                           const RolledUp& rolled);
  // Merges the finer level's sums (as of `at`, or now) into `bucket`, then writes the marks.
  absl::Status RollUp(Level level, int64_t bucket, const StateStore::Snapshot* at,
                      const RolledUp& written, const RolledUp& rolled);
  void ClearSlice(int slice);
  absl::Status ScanStore(const QuerySpec& spec, ResultTable& out) const;
  // Calls fn(out_time, grouped dimension values, aggregate) for each stored aggregate `spec` reads
  // (out_time: its output bucket), except whole hours from recent_ when `use_recent` (the seek
  // choice of ScanStore allowing): those go to `recent_hours(out_time, first, end)`.
  template <typename Visit, typename Recent>
  absl::Status ScanStoreRows(const QuerySpec& spec, bool use_recent, Visit&& visit,
                             Recent&& recent_hours) const;
  // Adds the groups of `cubes` (a slice whose write has landed) to recent_.
  void AddToRecent(const std::vector<CubeStore>& cubes);
  // Sums recent_'s groups of spec.cube in the hours [first, end) into `out` as bucket `out_time`.
  void ScanRecent(const QuerySpec& spec, int64_t out_time, int64_t first, int64_t end,
                  ResultTable& out) const;
  void ResetSlice(int slice);

  const CubeCatalog& catalog_;
  int shard_;
  StateStore* store_;
  int64_t dedup_horizon_ms_;
  Interner interner_;
  std::vector<Slice> slices_;
  size_t groups_ = 0;
  size_t user_bytes_ = 0;         // HyperLogLog heap bytes of the groups counted in groups_
  DedupIndex ids_;                // accepted since the last dedup run
  WalPosition dedup_checkpoint_;  // the store holds the id of every event before it
  struct RunInFlight {
    DedupIndex ids;
    WalPosition checkpoint;
  };
  std::optional<RunInFlight> run_in_flight_;
  std::unique_ptr<BackgroundWriter> run_writer_;
  absl::Status run_error_;  // of a dedup run; sticks
  std::unique_ptr<DedupFilter> filter_;
  struct InFlight {
    int slice = -1;
    std::vector<CubeStore> cubes;
    WalPosition checkpoint;
    size_t groups = 0;
    size_t user_bytes = 0;
  };
  std::optional<InFlight> in_flight_;
  // The memory of the last slice written, freed on the writer's thread at the start of its next
  // write: freeing a slice's groups takes milliseconds the worker would spend instead.
  struct Retired {
    std::vector<CubeStore> cubes;
  };
  std::shared_ptr<Retired> retired_;
  std::shared_ptr<const StateStore::Snapshot> before_in_flight_;  // the store without it
  std::unique_ptr<BackgroundWriter> writer_;
  absl::Status write_error_;  // of a background write; sticks
  RelaxedCounter store_lookups_;
  // Roll-ups. Queries read whole hours and days up to rolled_; flushes write hour and day
  // aggregates up to written_ (ahead of rolled_ by the period being rolled up). Without roll-ups
  // both are "everything": flushes write every level.
  bool rollups_ = false;
  int64_t rollup_delay_ms_ = 0;
  RolledUp rolled_;
  RolledUp written_;
  struct RollUpJob {
    Level level;
    int64_t bucket;
  };
  std::optional<RollUpJob> rollup_;
  std::unique_ptr<BackgroundWriter> roller_;
  absl::Status rollup_error_;
  RelaxedCounter rollups_done_;
  RelaxedCounter rollup_micros_;  // written by the roll-up thread only
  RelaxedCounter rolled_until_ms_;
  int64_t max_event_ms_ = INT64_MIN;
  // Written by the worker, read by metrics scrapes from other threads.
  RelaxedCounter applied_;
  RelaxedCounter duplicates_;
  RelaxedCounter late_;
  RelaxedCounter newest_event_ms_;  // max_event_ms_, for other threads
  RelaxedCounter flushes_;
  RelaxedCounter flush_micros_;
  RelaxedCounter write_micros_;  // written by the background writer thread only
  RelaxedCounter wait_micros_;
  RelaxedCounter memory_groups_;
  RelaxedCounter memory_ids_;
  RelaxedCounter interned_bytes_;
  RelaxedCounter recent_bytes_;
  // The recent hours' counters (null: not enabled), and the ids recent_ gives the interner's
  // values, by interner id (kNoId: not looked up yet), valid for recent_ids_generation_.
  std::unique_ptr<RecentHours> recent_;
  int64_t recent_hours_ = 0;  // as enabled
  size_t recent_budget_bytes_ = 0;
  static constexpr uint32_t kNoId = UINT32_MAX;
  std::vector<uint32_t> recent_ids_;
  uint64_t recent_ids_generation_ = 0;
};

}  // namespace adpulse
