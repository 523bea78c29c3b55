// A shard's write-ahead log: numbered segment files under <data-dir>/wal/shard-NNN/, each a 16-byte
// header followed by records [u32 length][u32 checksum][payload] (docs/formats/wal.md). The writer
// buffers a group of records and makes them durable with one write and one fdatasync; the reader
// returns every valid record and says where a torn or corrupt tail begins. Owned by one worker.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/file_system.h"

namespace adpulse {

inline constexpr size_t kWalHeaderBytes = 16;
inline constexpr size_t kWalRecordHeaderBytes = 8;
inline constexpr uint32_t kWalMaxRecordBytes = 1 << 20;

struct WalSegment {
  uint64_t sequence = 0;
  std::string path;
};

// Segments of `dir`, oldest first. A missing directory is an empty log.
absl::StatusOr<std::vector<WalSegment>> ListWalSegments(const std::string& dir);

struct WalScan {
  uint64_t records = 0;
  uint64_t valid_bytes = 0;  // file offset just past the last valid record
  uint64_t file_bytes = 0;
  std::string problem;  // empty when the whole file is valid
  // The segment is shorter than its header: a crash while it was being created (nothing in it was
  // ever acknowledged). A whole header that is wrong is damage, not this.
  bool header_torn = false;
  // After a problem: where the first whole record with a valid checksum after it starts (0: none)
  // and how many such records follow one another from there. A crash can only tear the bytes
  // after the last fdatasync, so a valid record after an invalid one means the invalid one is
  // damage in the middle of the log, not a torn tail.
  uint64_t next_valid_offset = 0;
  uint64_t records_after_problem = 0;
};

// Calls fn(offset, payload) for each valid record of the segment at `path`, in order (offset is
// where the record starts), stopping at the first invalid one (reported in `problem`). `fn` may
// fail, which stops the scan with that error. A file that cannot be read (open, size or read
// error) is an error, never a shorter segment.
using WalRecordFn = std::function<absl::Status(uint64_t offset, std::string_view payload)>;
absl::StatusOr<WalScan> ScanWalSegment(const std::string& path, const WalRecordFn& fn,
                                       FileSystem* fs = FileSystem::Default());
// The same over a segment's bytes already in memory (an archived segment, decompressed).
absl::StatusOr<WalScan> ScanWalData(std::string_view data, const WalRecordFn& fn);

class WalWriter {
 public:
  struct Options {
    std::string dir;
    bool fsync = true;  // false: durability = "os" (write() only, the kernel flushes later)
    uint64_t segment_bytes = 64ull << 20;
    FileSystem* fs = FileSystem::Default();
  };

  // Creates the directory if needed and starts a new segment numbered `first_sequence`.
  static absl::StatusOr<std::unique_ptr<WalWriter>> Open(const Options& options,
                                                         uint64_t first_sequence);
  ~WalWriter();

  void Append(std::string_view payload);
  // Appends a record whose payload `encode(buffer)` appends to the log's own buffer, so that it
  // is encoded in place instead of being copied in.
  template <typename Encode>
  void AppendEncoded(Encode&& encode) {
    size_t at = buffer_.size();
    buffer_.append(kWalRecordHeaderBytes, '\0');
    encode(buffer_);
    FinishRecord(at);
  }
  size_t pending_records() const { return pending_records_; }

  // Writes every appended record and, with fsync, waits until it is on disk. On a write error
  // (such as a full disk) or a failed fdatasync the segment is cut back to its last synced byte
  // (and synced again) and Unavailable is returned: nothing of the group is in the log, and later
  // groups may succeed. When the cut itself fails, the log is in doubt: the writer is broken
  // (DataLoss) until Repair() succeeds.
  absl::Status Commit();
  // Commit in two steps, so that the fdatasync can run on another thread while this one does
  // other work: Write() writes every appended record (the errors of Commit's write); then, if
  // needs_sync(), fdatasync(fd()) is called, anywhere, and FinishSync gets its errno (0 for
  // success). Nothing else may use the writer between the two.
  absl::Status Write();
  bool needs_sync() const { return options_.fsync && unsynced_; }
  int fd() const { return fd_; }
  absl::Status FinishSync(int sync_errno);
  // Drops what was appended since the last Commit.
  void Discard();
  bool broken() const { return !broken_reason_.empty(); }
  const std::string& broken_reason() const { return broken_reason_; }
  // A broken writer tries again to cut its segment back to the last synced byte and sync it;
  // OK (and no longer broken) once that worked.
  absl::Status Repair();
  uint64_t current_sequence() const { return sequence_; }
  // The end of what is durable: every byte of the segment before it is written and synced (with
  // durability "os", written). Checkpoints never name a later position.
  uint64_t committed_bytes() const { return synced_bytes_; }
  // The last rotation to a new segment that failed (empty when the last one worked or none was
  // tried); a failed rotation is tried again after the next commit.
  const std::string& rotation_error() const { return rotation_error_; }
  uint64_t rotation_failures() const { return rotation_failures_; }

 private:
  explicit WalWriter(Options options) : options_(std::move(options)), fs_(options_.fs) {}
  absl::Status OpenSegment(uint64_t sequence);
  // Cuts the segment back to synced_bytes_ and makes that durable: 0 or an errno.
  int CutBack();

  Options options_;
  FileSystem* fs_;
  int fd_ = -1;
  uint64_t sequence_ = 0;
  uint64_t written_bytes_ = 0;  // the segment's size as written
  uint64_t synced_bytes_ = 0;   // of which durable
  std::string rotation_error_;
  uint64_t rotation_failures_ = 0;
  // Fills in the header at `at` for the payload after it, to the end of the buffer.
  void FinishRecord(size_t at);

  std::string buffer_;
  size_t pending_records_ = 0;
  bool unsynced_ = false;  // written since the last fdatasync
  std::string broken_reason_;
};

}  // namespace adpulse
