// A FileSystem for tests that passes every call to the real one but can fail chosen calls with a
// chosen errno, and can simulate a power cut: every byte not yet made durable by an fdatasync or
// fsync is dropped, and every file or directory whose entry was not made durable by an fsync of
// its directory disappears (what RocksDB's FaultInjectionTestFS does; kill -9 cannot show it,
// since the kernel keeps the page cache). Thread-safe.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "storage/file_system.h"

namespace adpulse {

class FaultInjectionFileSystem final : public FileSystem {
 public:
  enum class Op {
    kOpen,
    kWrite,
    kRead,
    kSize,
    kTruncate,
    kSync,
    kSyncDir,
    kUnlink,
    kRename,
    kMakeDir
  };

  explicit FaultInjectionFileSystem(FileSystem* base = FileSystem::Default()) : base_(base) {}

  // The next `count` calls of `op` on a path containing `path_part` (any path when empty), after
  // `skip` matching calls have passed, fail with `err`. Rules are checked in the order added.
  void FailNext(Op op, int err, int count = 1, std::string path_part = {}, int skip = 0);
  // Every later call of `op` fails, until ClearFaults.
  void FailAlways(Op op, int err, std::string path_part = {});
  void ClearFaults();
  // With this on, a failed fdatasync also throws away the file's bytes written since its last
  // successful sync, as Linux may do with the dirty pages of a failed writeback.
  void set_drop_unsynced_on_failed_sync(bool on) { drop_on_failed_sync_ = on; }
  // How many calls failed by injection so far.
  uint64_t injected() const;

  // The power cut. Files still open stay open (their descriptors point at the cut files); tests
  // destroy everything that uses the file system first.
  void DropUnsyncedData();

  int Open(const std::string& path, int flags, int mode, int* fd) override;
  int Close(int fd) override;
  int Write(int fd, const char* data, size_t n, size_t* written) override;
  int Read(int fd, char* buffer, size_t n, size_t* got) override;
  int Size(int fd, uint64_t* bytes) override;
  int Truncate(int fd, uint64_t bytes) override;
  int Fdatasync(int fd) override;
  int Fsync(int fd) override;
  int SyncDir(const std::string& dir) override;
  int Unlink(const std::string& path) override;
  int Rename(const std::string& from, const std::string& to) override;
  int MakeDir(const std::string& dir) override;

 private:
  struct Rule {
    Op op;
    int err;
    int count;  // < 0: always
    std::string path_part;
    int skip;
  };
  struct FileState {
    uint64_t size = 0;     // as written
    uint64_t durable = 0;  // bytes that survive a power cut
  };
  // 0, or the errno to fail this call with. Called with mu_ held.
  int Inject(Op op, const std::string& path);
  std::string PathOf(int fd) const;
  void SyncedLocked(int fd);
  static std::string Parent(const std::string& path);

  FileSystem* base_;
  mutable std::mutex mu_;
  std::vector<Rule> rules_;
  uint64_t injected_ = 0;
  bool drop_on_failed_sync_ = false;
  std::map<int, std::string> open_;          // fd -> path
  std::map<std::string, FileState> files_;   // files written through this object
  std::set<std::string> undurable_entries_;  // created or renamed here, parent not synced since
};

}  // namespace adpulse
