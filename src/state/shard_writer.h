// The write path of one shard, between the worker's tasks and its state: new events are
// deduplicated and staged (and appended to the shard's write-ahead log when there is one); once per
// group the worker commits, which makes the log durable (one write, one fdatasync) and only then
// adds the staged events to the cubes. A failed commit rolls the dedup marks back and reports the
// events as failed, so nothing unacknowledged is ever counted. Also replays the log at startup.
// Owned by one worker thread.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ingest/ingest_batch.h"
#include "state/shard_state.h"
#include "storage/wal.h"

namespace adpulse {

struct RecoveryStats {
  uint64_t segments = 0;
  uint64_t records = 0;
  uint64_t truncated_bytes = 0;
};

class ShardWriter {
 public:
  // `wal` may be null: state in memory only (unit tests, benchmarks).
  ShardWriter(ShardState* state, WalWriter::Options wal_options, bool use_wal);

  // Replays every log segment into the state, cuts a torn tail off the newest one, and opens a
  // fresh segment for new writes. Corruption in an older segment is an error (refuse to start).
  absl::Status Recover(RecoveryStats* stats);

  // Dedups `e`; a new event is staged and its outcome set at CommitGroup.
  void Stage(const Event& e, EventOutcome* outcome, std::string* failure);
  void CommitGroup();
  size_t staged() const { return staged_.size(); }

  uint64_t commits() const { return commits_; }
  uint64_t commit_failures() const { return commit_failures_; }

 private:
  struct Staged {
    const Event* event;
    EventOutcome* outcome;
    std::string* failure;
  };
  ShardState* state_;
  WalWriter::Options wal_options_;
  bool use_wal_;
  std::unique_ptr<WalWriter> wal_;
  std::string unavailable_;  // set when the log cannot be written at all (recovery failed)
  std::vector<Staged> staged_;
  std::string record_;
  uint64_t commits_ = 0;
  uint64_t commit_failures_ = 0;
};

}  // namespace adpulse
