// The file operations of adpulse's own files (write-ahead log, archive), behind one interface so
// that tests can fail any of them or simulate a power cut (FaultInjectionFileSystem). Every call
// returns 0 or an errno; none sets errno for the caller. The state store (RocksDB) has its own
// Env and is not under this seam.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace adpulse {

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // The real one: POSIX calls on the local disk. Never null, never destroyed.
  static FileSystem* Default();

  virtual int Open(const std::string& path, int flags, int mode, int* fd) = 0;
  virtual int Close(int fd) = 0;
  // One write(2) or read(2) at the file's offset (EINTR is retried inside).
  virtual int Write(int fd, const char* data, size_t n, size_t* written) = 0;
  virtual int Read(int fd, char* buffer, size_t n, size_t* got) = 0;
  virtual int Size(int fd, uint64_t* bytes) = 0;
  // ftruncate to `bytes`, then the file offset to `bytes`.
  virtual int Truncate(int fd, uint64_t bytes) = 0;
  virtual int Fdatasync(int fd) = 0;
  virtual int Fsync(int fd) = 0;
  // fsync of a directory, so that an entry created, renamed or removed in it survives a crash.
  virtual int SyncDir(const std::string& dir) = 0;
  virtual int Unlink(const std::string& path) = 0;
  virtual int Rename(const std::string& from, const std::string& to) = 0;
  // mkdir of one level; EEXIST when it is there already.
  virtual int MakeDir(const std::string& dir) = 0;
};

// Status forms of the calls above, with the path and errno in the message.
absl::Status SyncDirectory(FileSystem* fs, const std::string& dir);
// Creates `dir` and any missing parents, fsyncing the parent of each directory it creates, so
// that a file made in `dir` and synced cannot vanish with its directory in a crash. The last
// `always_sync_levels` components of `dir` have their parent fsynced even when they exist: one
// made by an earlier call whose fsync failed is not durable, though it is there.
absl::Status CreateDirectoriesSynced(FileSystem* fs, const std::string& dir,
                                     int always_sync_levels = 0);
// The whole file; a read error is an error, never a shorter file.
absl::StatusOr<std::string> ReadWholeFile(FileSystem* fs, const std::string& path);
// Writes all of `data` to `fd` (several write calls if needed); the errno of the first failure.
int WriteAll(FileSystem* fs, int fd, std::string_view data);

}  // namespace adpulse
