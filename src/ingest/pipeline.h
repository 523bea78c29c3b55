// The shard router and its workers. A source of events (the HTTP server today, a Kafka consumer
// later) registers as a producer once per thread and hands over decoded batches; the pipeline
// splits each batch by xxHash of campaign_id and pushes one task per shard onto that producer's
// SPSC ring to the shard's worker. Queries go on each worker's query queue (QueryEveryShard) and
// run ahead of queued ingestion; a query sees every event that was acknowledged before it was
// sent. Owned by the Application; Start/Stop once.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "ingest/ingest_batch.h"
#include "ingest/spsc_ring.h"
#include "ingest/task.h"
#include "ingest/worker.h"
#include "window/cube_catalog.h"

namespace adpulse {

struct PipelineOptions {
  // Where each shard keeps its write-ahead log (<wal_dir>/shard-NNN); empty: in memory only.
  std::string wal_dir;
  Archiver* archiver = nullptr;  // takes sealed, checkpointed segments
  bool fsync = true;
  std::function<int(int fd)> sync_file;  // ShardWriterOptions; null: fdatasync
  Histogram* fsync_seconds = nullptr;    // ShardWriterOptions
  uint64_t wal_segment_bytes = 64ull << 20;
  StateStore* store = nullptr;  // null: memory only
  int64_t flush_interval_ms = 10'000;
  int64_t rollup_delay_ms = 300'000;           // ShardWriterOptions
  int64_t max_event_age_ms = 86'400'000;       // ShardWriterOptions
  uint64_t shard_memory_bytes = 200ull << 20;  // per shard: aggregates, dedup ids, interned values
  uint64_t dedup_filter_bytes = 16ull << 20;   // per shard
  int64_t recent_hours = 0;                    // ShardWriterOptions
  uint64_t recent_hours_bytes = 64ull << 20;   // per shard
  int workers = 1;
  int max_producers = 4;
  size_t ring_capacity_tasks = 4096;
  bool pin_workers = true;
  int64_t dedup_horizon_ms = 86'400'000;
  size_t max_inflight_requests = 1024;
  WalRecoveryMode wal_recovery = WalRecoveryMode::kTornTail;  // storage.wal_recovery
  int64_t max_future_ms = 60'000;                             // ingest.max_future_s
  FileSystem* fs = FileSystem::Default();  // the log's files; tests inject faults here
};

// A decoded request in flight. `on_done` runs once, on a worker thread, after every event of
// `batch` has its outcome; the request must stay alive until then.
class IngestRequest {
 public:
  IngestBatch batch;
  std::function<void()> on_done;

  uint32_t CountOutcome(EventOutcome outcome) const;
  // Why some events could not be made durable (empty when all were).
  std::string Failure() const;
  // Calls on_done exactly once, after moving it out, so on_done may delete this request.
  void Finish() {
    auto done = std::move(on_done);
    done();
  }

 private:
  friend class Pipeline;
  struct ShardTask final : Task {
    IngestRequest* request = nullptr;
    std::vector<uint32_t> indices;  // into batch.events
    std::string failure;            // set by the shard's writer when its commit failed
    void Run(ShardContext& shard) override;
    void Complete() override;
  };
  std::vector<ShardTask> tasks_;
  std::atomic<int> pending_{0};
};

// Runs `fn` on every shard's worker thread, then `done` once (on the last worker to finish).
class ShardFanOut {
 public:
  ShardFanOut(std::function<void(ShardContext&)> fn, std::function<void()> done)
      : fn_(std::move(fn)), done_(std::move(done)) {}

 private:
  friend class Pipeline;
  struct ShardTask final : Task {
    ShardFanOut* owner = nullptr;
    void Run(ShardContext& shard) override { owner->fn_(shard); }
    void Complete() override {
      if (owner->pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        auto done = std::move(owner->done_);  // done may delete the fan-out
        done();
      }
    }
  };
  std::function<void(ShardContext&)> fn_;
  std::function<void()> done_;
  std::vector<ShardTask> tasks_;
  std::atomic<int> pending_{0};
};

class Pipeline {
 public:
  Pipeline(const CubeCatalog& catalog, const PipelineOptions& options);
  ~Pipeline();

  // Starts the workers; each first recovers its shard from its log.
  void Start();
  // Blocks until every shard has recovered; the first recovery error, if any.
  absl::Status WaitRecovered();
  // Runs every task already submitted, then stops the workers. Sources must have stopped first.
  void Stop();

  // Each producing thread calls this once and passes the id to every submit call.
  int RegisterProducer();
  int shard_count() const { return static_cast<int>(workers_.size()); }
  int ShardOf(std::string_view campaign_id) const;

  // Admission control: false when max_inflight_requests are in flight (answer 503 + Retry-After).
  bool TryAdmit();
  void Release();
  size_t inflight() const { return inflight_.load(std::memory_order_relaxed); }

  // Routes `request->batch` to its shards. With no valid events, on_done runs right away.
  void SubmitIngest(int producer, IngestRequest* request);
  void RunOnEveryShard(int producer, ShardFanOut* fan_out);
  // For read-only work (queries): runs ahead of queued ingestion (Worker::SubmitQuery) and still
  // sees every event acknowledged before the call. Any thread.
  void QueryEveryShard(ShardFanOut* fan_out);
  // The same on the shards whose entry in `wanted` is true (at least one): a query filtered on
  // campaigns needs only the shards that own them (ShardOf).
  void QueryShards(ShardFanOut* fan_out, const std::vector<bool>& wanted);

  // Sums of every shard's counters; safe from any thread.
  struct Totals {
    uint64_t events_applied = 0, duplicates = 0, late_events = 0, flushes = 0, commits = 0,
             commit_failures = 0, store_dedup_lookups = 0, memory_groups = 0, memory_dedup_ids = 0,
             interned_bytes = 0, flush_micros = 0, write_micros = 0, wait_micros = 0, rollups = 0,
             rollup_micros = 0, recent_hours_bytes = 0, rotation_failures = 0;
    // Shards refusing events now (ShardSeverity kUnavailable or kFatal).
    uint64_t shards_unavailable = 0;
    // The earliest of the shards' ends of the last hour rolled up (0: roll-ups off).
    uint64_t rolled_until_ms = 0;
  };
  Totals CounterTotals() const;

  uint64_t ring_full_waits() const { return ring_full_waits_.load(std::memory_order_relaxed); }
  size_t QueuedTasks() const;
  // Tasks waiting on the rings into one shard's worker.
  size_t QueuedTasks(int shard) const;
  // One shard's counters; safe from any thread.
  ShardStats ShardCounters(int shard) const;

 private:
  void Push(int producer, int shard, Task* task);

  PipelineOptions options_;
  // rings_[producer][shard]
  std::vector<std::vector<std::unique_ptr<SpscRing<Task*>>>> rings_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<int> next_producer_{0};
  std::atomic<size_t> inflight_{0};
  std::atomic<uint64_t> ring_full_waits_{0};
  bool started_ = false;
};

}  // namespace adpulse
