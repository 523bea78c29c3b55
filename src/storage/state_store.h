// The aggregates, dedup ids and checkpoints of every shard in one RocksDB database under
// <data-dir>/state/. Aggregates are written as merge operands (the merge operator adds counters
// and unions HyperLogLogs), so a flush or a replay adds to a bucket without reading it first.
// A shard's flush is one atomic write batch holding its aggregate deltas and its checkpoint: the
// write-ahead-log position the batch covers. Dedup ids live in a column family of their own,
// written as sorted runs (built table files, ingested) that each carry the shard's dedup
// checkpoint. Compaction filters drop expired buckets and dedup ids in the background. Thread-safe
// (RocksDB is); the only code that includes RocksDB. Owned by the Application.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/numeric/int128.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adpulse {

struct WalPosition {
  uint64_t sequence = 0;  // segment
  uint64_t offset = 0;    // bytes of that segment covered
  auto operator<=>(const WalPosition&) const = default;
};

struct DedupId {
  absl::uint128 fingerprint;
  int32_t hour;  // of the event's time
};

struct StateStoreOptions {
  std::string path;
  size_t block_cache_bytes = 256ull << 20;
  size_t write_buffer_bytes = 64ull << 20;  // each of up to 3 memtables
  int64_t dedup_horizon_ms = 86'400'000;
  int64_t minute_retention_ms = 90ll * 86'400'000;
  int64_t hour_retention_ms = 730ll * 86'400'000;
  int64_t day_retention_ms = 730ll * 86'400'000;
};

class StateStore {
 public:
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const StateStoreOptions& options);
  ~StateStore();

  class Batch {
   public:
    Batch();
    ~Batch();
    void MergeAggregate(std::string_view key, std::string_view value);
    // Replaces an aggregate outright (reconciliation's rebuild).
    void PutAggregate(std::string_view key, std::string_view value);
    void DeleteAggregate(std::string_view key);
    // A named setting (GetMeta) written atomically with the rest of the batch.
    void PutMeta(std::string_view name, std::string_view value);
    void PutDedup(int shard, absl::uint128 fingerprint, int32_t hour);
    // The log position a shard's state covers: the whole shard, or (with `slice`) one slice of it
    // (ShardState keeps its memory in slices that are flushed one at a time).
    void PutCheckpoint(int shard, const WalPosition& position);
    void PutCheckpoint(int shard, int slice, const WalPosition& position);
    size_t Count() const;

   private:
    friend class StateStore;
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  // A consistent view of the store as of its creation; released when the last holder drops it.
  class Snapshot;
  std::shared_ptr<const Snapshot> GetSnapshot();

  // Applies the batch atomically. Any error is returned as-is; callers treat it as fatal for
  // ingestion (RELIABILITY.md: RocksDB 7.8 must not auto-recover from write errors).
  absl::Status Write(Batch& batch);
  absl::StatusOr<std::optional<WalPosition>> ReadCheckpoint(int shard);
  // The checkpoints of slices 0..slices-1 of `shard`; a slice without one gets the whole shard's
  // (ReadCheckpoint), or the start of the log.
  absl::StatusOr<std::vector<WalPosition>> ReadSliceCheckpoints(int shard, int slices);
  // Writes a shard's dedup ids, sorted by fingerprint (duplicates skipped), as one run of the dedup
  // column family together with `checkpoint`: the log position before which every id the shard
  // accepted is in the store. Atomic and durable when it returns (a built table file, ingested).
  absl::Status WriteDedupRun(int shard, const std::vector<DedupId>& sorted_ids,
                             const WalPosition& checkpoint);
  // The checkpoint of the shard's newest dedup run, if any.
  absl::StatusOr<std::optional<WalPosition>> ReadDedupCheckpoint(int shard);
  // Calls fn(fingerprint, hour) for every dedup id of `shard`.
  absl::Status ForEachDedup(int shard, const std::function<void(absl::uint128, int32_t)>& fn);
  // True when `fingerprint` was accepted by `shard` in an hour >= min_hour.
  absl::StatusOr<bool> DedupContains(int shard, absl::uint128 fingerprint, int32_t min_hour);
  // Calls fn(key, value) for every key in [from, to), in order; fn returns false to stop.
  absl::Status Scan(std::string_view from, std::string_view to,
                    const std::function<bool(std::string_view, std::string_view)>& fn);
  // The same over several ranges, sorted and disjoint, with one iterator that seeks to each: the
  // keys between ranges are never read (nor their merge operands merged). With `at`, as of that
  // snapshot.
  absl::Status ScanRanges(const std::vector<std::pair<std::string, std::string>>& ranges,
                          const std::function<void(std::string_view, std::string_view)>& fn,
                          const Snapshot* at = nullptr);
  // A k-way merge of several sorted ranges whose keys share a prefix of `prefix_bytes` per range
  // (the buckets of one cube and level): calls fn(suffix, values) once per distinct suffix (a
  // group's dimensions), in order, with the values every range holds for it. Views are valid
  // during the call. With `at`, as of that snapshot.
  absl::Status MergeRanges(
      const std::vector<std::pair<std::string, std::string>>& ranges, size_t prefix_bytes,
      const std::function<absl::Status(std::string_view, const std::vector<std::string_view>&)>& fn,
      const Snapshot* at = nullptr);
  // Small named settings of the data dir (such as its shard count), written durably.
  absl::StatusOr<std::optional<std::string>> GetMeta(std::string_view name);
  absl::Status PutMeta(std::string_view name, std::string_view value);
  // Makes every write so far durable: writes the memtable out as a table file. Writes are not
  // durable before (RocksDB's own log is off; ours is the durable record).
  absl::Status Sync();
  // Compacts everything (runs the retention filter now); for tests and operators.
  absl::Status CompactAll();
  // Approximate memory held by memtables and the block cache.
  uint64_t MemoryBytes() const;
  // What the store holds on disk, from RocksDB's properties (estimates, cheap to read).
  struct Sizes {
    uint64_t aggregate_sst_bytes = 0;  // table files of the aggregates (and roll-up marks)
    uint64_t dedup_sst_bytes = 0;      // table files of the dedup ids
    uint64_t dedup_ids = 0;            // dedup ids stored (RocksDB's estimate of its keys)
    uint64_t pending_compaction_bytes = 0;
    uint64_t running_compactions = 0;
  };
  Sizes DiskSizes() const;

 private:
  struct Impl;
  explicit StateStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace adpulse
