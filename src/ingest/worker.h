// A shard's worker thread: pops tasks from one ring per producer, runs them against the shard's
// state (which only this thread touches), completes them in groups, and parks when idle. Queries
// come on a queue of their own and run ahead of queued ingestion: before each ingest task, before
// a group's fdatasync and between slice flushes.
// Created and started by the Pipeline, which also stops and joins it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ingest/spsc_ring.h"
#include "ingest/task.h"
#include "state/shard_state.h"
#include "state/shard_writer.h"
#include "storage/file_syncer.h"

namespace adpulse {

class Worker {
 public:
  Worker(int shard, std::unique_ptr<ShardState> state, ShardWriterOptions writer_options,
         std::vector<SpscRing<Task*>*> rings, int pin_cpu);
  ~Worker();

  // Starts the thread, which first recovers the shard from its log.
  void Start();
  absl::Status WaitRecovered();
  // Finishes every task already on the rings, then joins.
  void StopAndJoin();
  // Called by a producer after a push, in case the worker is parked.
  void Notify();
  // A read-only task (a query): run soon, and completed right after it runs, since it changes
  // nothing that needs the log. It sees every event acknowledged before it was submitted, as
  // events are applied before their requests complete. Safe from any thread.
  void SubmitQuery(Task* task);

  // Safe from any thread.
  ShardStats CounterSnapshot() const { return state_->CounterSnapshot(); }
  uint64_t commits() const { return writer_.commits(); }
  uint64_t commit_failures() const { return writer_.commit_failures(); }
  ShardSeverity severity() const { return writer_.severity(); }
  uint64_t rotation_failures() const { return writer_.rotation_failures(); }

 private:
  void Loop();
  bool RingsEmpty() const;
  void RunQueries(ShardContext& ctx);
  // fdatasync(fd) on the syncer's thread, answering queries until it returns; its errno.
  int SyncAnsweringQueries(int fd, ShardContext& ctx);
  // Sleeps until Notify() (or kParkTimeout), unless `ready()` or a query is waiting already.
  template <typename Ready>
  void Park(Ready ready);

  int shard_;
  std::unique_ptr<ShardState> state_;
  ShardWriter writer_;
  std::mutex recovery_mutex_;
  std::condition_variable recovery_cv_;
  bool recovered_ = false;
  absl::Status recovery_status_;
  std::vector<SpscRing<Task*>*> rings_;
  int pin_cpu_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> sleeping_{false};
  std::mutex park_mutex_;
  std::condition_variable park_cv_;
  std::mutex query_mutex_;
  std::vector<Task*> queries_;  // guarded by query_mutex_
  std::vector<Task*> running_queries_;
  std::atomic<bool> has_queries_{false};
  // Last: destroyed first, while what its wake-up (Notify) touches still exists. Null without
  // fsync durability.
  std::unique_ptr<FileSyncer> syncer_;
};

}  // namespace adpulse
