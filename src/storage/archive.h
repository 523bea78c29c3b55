// The raw-event archive: log segments that a checkpoint covers are compressed with zstd into
// <data-dir>/archive/<YYYY-MM-DDTHH>/shard-NNN/<sequence>.wal.zst (the hour the segment was
// sealed) and kept for the archive retention. A background thread does the work, so neither the
// compression nor the expiry ever runs on a worker. Reconciliation reads archived and live
// segments alike. Owned by the Application.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "storage/state_store.h"
#include "storage/wal.h"

namespace adpulse {

struct ArchivedSegment {
  uint64_t sequence = 0;
  std::string path;
};

// Archived segments of `shard`, oldest first.
std::vector<ArchivedSegment> ListArchivedSegments(const std::string& archive_dir, int shard);
absl::StatusOr<std::string> ReadArchivedSegment(const std::string& path,
                                                FileSystem* fs = FileSystem::Default());
// Compresses `from` into a new file `to` (written as `to`.tmp, synced, renamed, directory synced).
absl::Status CompressFile(const std::string& from, const std::string& to,
                          FileSystem* fs = FileSystem::Default());

class Archiver {
 public:
  struct Options {
    std::string archive_dir;
    int64_t retention_ms = 90ll * 86'400'000;
    StateStore* store = nullptr;  // made durable before any segment it covers leaves the log
    FileSystem* fs = FileSystem::Default();
  };
  explicit Archiver(Options options);
  ~Archiver();

  void Start();
  void Stop();
  // Asks for the segments of `wal_dir` below `sequence` to be archived (the caller's checkpoint
  // covers them). Cheap; the work happens on the archiver's thread.
  void Submit(int shard, const std::string& wal_dir, uint64_t sequence);
  // Held while segments move; reconciliation holds it to see each segment exactly once.
  std::mutex& move_mutex() { return move_mutex_; }
  const std::string& archive_dir() const { return options_.archive_dir; }
  int64_t retention_ms() const { return options_.retention_ms; }
  uint64_t archived_segments() const { return archived_; }

 private:
  struct Request {
    int shard;
    std::string wal_dir;
    uint64_t sequence;
  };
  void Loop();
  void Archive(const Request& r);
  void Expire();

  Options options_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Request> queue_;
  bool stop_ = false;
  std::thread thread_;
  std::mutex move_mutex_;
  std::atomic<uint64_t> archived_{0};
};

}  // namespace adpulse
