// The write path of one shard, between the worker's tasks and its state: new events are
// deduplicated and staged (and appended to the shard's write-ahead log); once per group the worker
// commits, which makes the log durable (one write, one fdatasync) and only then adds the staged
// events to the in-memory aggregates. A failed commit rolls the dedup marks back and reports the
// events as failed, so nothing unacknowledged is ever counted. Every flush interval the memory is
// flushed to the state store with a checkpoint (the log position it covers); log segments wholly
// before the checkpoint move to the raw-event archive. At startup, replays the log after the
// checkpoint. Owned by one worker thread.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "base/histogram.h"
#include "ingest/ingest_batch.h"
#include "state/reconciler.h"
#include "state/shard_state.h"
#include "storage/archive.h"
#include "storage/wal.h"

namespace adpulse {

struct RecoveryStats {
  uint64_t segments = 0;
  uint64_t records = 0;
  uint64_t skipped_records = 0;  // already covered by the checkpoint
  uint64_t truncated_bytes = 0;
};

// What recovery does with a log segment that does not read back whole (storage.wal_recovery).
enum class WalRecoveryMode : uint8_t {
  // A bad tail of the newest segment with no valid record after it (what a crash mid-write
  // leaves) is cut off; damage anywhere else refuses to start.
  kTornTail,
  // Any bad byte refuses to start, a torn tail too (RocksDB's kAbsoluteConsistency).
  kStrict,
  // The newest segment is cut at its first bad record even when valid records follow (they are
  // lost, and counted in the log line); damage in an older segment still refuses to start.
  kCutDamage,
};

// The health of a shard's write path, worst last (RocksDB's ErrorHandler has the same ladder).
enum class ShardSeverity : uint8_t {
  kOk = 0,
  // The last group failed (a write or fdatasync error, a full disk), but the log was cut back to
  // its last synced byte: the next group is tried as usual.
  kRetryable = 1,
  // The log could not be cut back after a failure, so its tail is in doubt: every event of the
  // shard is answered 503 and nothing is flushed or checkpointed; once a second the cut is tried
  // again, and the shard resumes when it works (the fault was cleared).
  kUnavailable = 2,
  // Recovery failed or the state store refused a write: the shard stays unavailable until a
  // restart, which replays the log.
  kFatal = 3,
};
std::string_view ShardSeverityName(ShardSeverity s);

struct ShardWriterOptions {
  bool use_wal = false;  // false: memory only (unit tests, benchmarks)
  WalWriter::Options wal;
  // How the worker's syncer makes the log durable: null for fdatasync (tests hold it up).
  std::function<int(int fd)> sync_file;
  Histogram* fsync_seconds = nullptr;  // each group commit's fdatasync is observed here
  Archiver* archiver = nullptr;        // takes covered segments; null: they stay in the log dir
  StateStore* store = nullptr;
  // Each slice of the shard's memory is flushed once per interval, one slice at a time.
  int64_t flush_interval_ms = 10'000;
  // Slices are flushed early while the memory held (estimated) is over this.
  uint64_t memory_bytes = 200ull << 20;
  uint64_t dedup_filter_bytes = 16ull << 20;  // 0: every new id is looked up in the store
  // The dedup ids accepted since the last run are written as a new run once there are this many,
  // once a flush interval has passed, or once they hold a quarter of the memory (ShardState).
  uint64_t dedup_run_ids = 1ull << 19;
  // Hours and days are rolled up in the store this long after they end (ShardState); < 0: no
  // roll-ups, every flush writes every level.
  int64_t rollup_delay_ms = 300'000;
  // The oldest event time accepted, as an age (ingest.max_age_s): a new data dir rolls up every
  // hour from then on.
  int64_t max_event_age_ms = 86'400'000;
  // The counters of this many recent hours are held in memory too (ShardState::EnableRecentHours),
  // in about recent_hours_bytes; 0: none.
  int64_t recent_hours = 0;
  uint64_t recent_hours_bytes = 64ull << 20;
  WalRecoveryMode recovery = WalRecoveryMode::kTornTail;
  int64_t max_future_ms = 60'000;  // ingest.max_future_s: bounds what expired segments held
  // At kUnavailable, how often the log's repair is tried.
  int64_t repair_interval_ms = 1000;
};

class ShardWriter {
 public:
  // Memory estimate of a dedup id in its hash map (the groups' memory is counted by ShardState).
  static constexpr uint64_t kBytesPerDedupId = 48;
  static constexpr int kMaxSlicesPerCall = 4;

  ShardWriter(ShardState* state, ShardWriterOptions options);

  absl::Status Recover(RecoveryStats* stats);

  // Dedups `e`; a new event is staged and its outcome set at CommitGroup.
  void Stage(const Event& e, EventOutcome* outcome, std::string* failure) {
    Stage(e, DedupIndex::Fingerprint(e.event_id), NowMs(), outcome, failure);
  }
  // Stage for events[i] (outcome outcomes[i]) for each i of `indices`, in order; the memory each
  // event's dedup check reads is prefetched a few events ahead.
  void StageAll(const std::vector<Event>& events, const std::vector<uint32_t>& indices,
                std::vector<EventOutcome>& outcomes, std::string* failure);
  // Writes the staged events to the log, makes them durable and applies them. `sync`, if given,
  // makes the log's file durable instead of a plain fdatasync(fd) and returns its errno (0: done):
  // the worker runs it on another thread and answers queries meanwhile.
  void CommitGroup(const std::function<int(int fd)>& sync = {});
  // Flushes the slices that are due (one every flush_interval / ShardState::kSlices, more while
  // memory is over its share); force: everything, now. `between` runs between two slices (the
  // worker runs waiting queries there).
  void MaybeFlush(int64_t now_ms, bool force, const std::function<void()>& between = {});

  // Reconciliation over this shard's archive and log (see reconciler.h).
  absl::Status Reconcile(const CubeCatalog& catalog, int64_t start_ms, int64_t end_ms, bool rebuild,
                         ReconcileReport& report);

  uint64_t commits() const { return commits_.Get(); }
  uint64_t commit_failures() const { return commit_failures_.Get(); }
  // Any thread: the shard's health and, when not kOk, why.
  ShardSeverity severity() const { return severity_.load(std::memory_order_relaxed); }
  std::string error_reason() const;
  uint64_t rotation_failures() const { return rotation_failures_.Get(); }

 private:
  struct Staged {
    const Event* event;
    EventOutcome* outcome;
    std::string* failure;
  };
  void Stage(const Event& e, absl::uint128 fingerprint, int64_t now_ms, EventOutcome* outcome,
             std::string* failure);
  // False while the shard refuses events (kUnavailable, kFatal); at kUnavailable first tries,
  // at most once a second, to repair the log.
  bool AcceptingEvents(int64_t now_ms);
  void SetError(ShardSeverity severity, std::string reason);
  absl::Status RecoverLog(WalPosition checkpoint, RecoveryStats* stats);
  ShardState* state_;
  ShardWriterOptions options_;
  std::unique_ptr<WalWriter> wal_;
  std::atomic<ShardSeverity> severity_{ShardSeverity::kOk};
  mutable std::mutex reason_mutex_;
  std::string reason_;  // guarded by reason_mutex_; written by the worker only
  int64_t next_repair_ms_ = 0;
  std::string last_rotation_error_;
  std::vector<Staged> staged_;
  std::vector<const Event*> batch_;  // the staged events, applied together
  RelaxedCounter commits_;           // group commits (one write + fdatasync each)
  RelaxedCounter commit_failures_;
  RelaxedCounter rotation_failures_;
  uint64_t MemoryEstimate() const;

  int64_t next_slice_due_ms_ = 0;
  int64_t next_run_due_ms_ = 0;
  int next_slice_ = 0;
  uint64_t archive_requested_below_ = 0;
};

}  // namespace adpulse
