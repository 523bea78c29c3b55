#include "storage/file_system.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace adpulse {
namespace {

class PosixFileSystem final : public FileSystem {
 public:
  int Open(const std::string& path, int flags, int mode, int* fd) override {
    int r = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (r < 0) return errno;
    *fd = r;
    return 0;
  }
  int Close(int fd) override { return ::close(fd) == 0 ? 0 : errno; }
  int Write(int fd, const char* data, size_t n, size_t* written) override {
    while (true) {
      ssize_t r = ::write(fd, data, n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno;
      *written = static_cast<size_t>(r);
      return 0;
    }
  }
  int Read(int fd, char* buffer, size_t n, size_t* got) override {
    while (true) {
      ssize_t r = ::read(fd, buffer, n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno;
      *got = static_cast<size_t>(r);
      return 0;
    }
  }
  int Size(int fd, uint64_t* bytes) override {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno;
    *bytes = static_cast<uint64_t>(st.st_size);
    return 0;
  }
  int Truncate(int fd, uint64_t bytes) override {
    if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return errno;
    if (::lseek(fd, static_cast<off_t>(bytes), SEEK_SET) < 0) return errno;
    return 0;
  }
  int Fdatasync(int fd) override { return ::fdatasync(fd) == 0 ? 0 : errno; }
  int Fsync(int fd) override { return ::fsync(fd) == 0 ? 0 : errno; }
  int SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = ::fsync(fd) == 0 ? 0 : errno;
    ::close(fd);
    return err;
  }
  int Unlink(const std::string& path) override { return ::unlink(path.c_str()) == 0 ? 0 : errno; }
  int Rename(const std::string& from, const std::string& to) override {
    return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
  }
  int MakeDir(const std::string& dir) override {
    return ::mkdir(dir.c_str(), 0755) == 0 ? 0 : errno;
  }
};

}  // namespace

FileSystem* FileSystem::Default() {
  static PosixFileSystem* fs = new PosixFileSystem();
  return fs;
}

absl::Status SyncDirectory(FileSystem* fs, const std::string& dir) {
  int err = fs->SyncDir(dir);
  if (err != 0) {
    return absl::DataLossError(
        fmt::format("fsync of directory {} failed: {}", dir, std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status CreateDirectoriesSynced(FileSystem* fs, const std::string& dir,
                                     int always_sync_levels) {
  namespace stdfs = std::filesystem;
  stdfs::path path = stdfs::path(dir).lexically_normal();
  if (!path.has_filename()) path = path.parent_path();
  if (path.empty()) return absl::OkStatus();
  std::error_code ec;
  bool exists = stdfs::is_directory(path, ec);
  if (!exists || always_sync_levels > 1) {
    absl::Status parent = CreateDirectoriesSynced(fs, path.parent_path().string(),
                                                  std::max(0, always_sync_levels - 1));
    if (!parent.ok()) return parent;
  }
  if (exists && always_sync_levels <= 0) return absl::OkStatus();
  if (!exists) {
    int err = fs->MakeDir(path.string());
    if (err != 0 && err != EEXIST) {
      return absl::UnavailableError(
          fmt::format("cannot create directory {}: {}", path.string(), std::strerror(err)));
    }
  }
  std::string parent_dir = path.parent_path().empty() ? "." : path.parent_path().string();
  return SyncDirectory(fs, parent_dir);
}

absl::StatusOr<std::string> ReadWholeFile(FileSystem* fs, const std::string& path) {
  int fd = -1;
  int err = fs->Open(path, O_RDONLY, 0, &fd);
  if (err != 0) {
    return absl::UnavailableError(fmt::format("cannot open {}: {}", path, std::strerror(err)));
  }
  uint64_t size = 0;
  err = fs->Size(fd, &size);
  if (err != 0) {
    fs->Close(fd);
    return absl::UnavailableError(
        fmt::format("cannot read the size of {}: {}", path, std::strerror(err)));
  }
  std::string data(static_cast<size_t>(size), '\0');
  size_t done = 0;
  while (done < data.size()) {
    size_t got = 0;
    err = fs->Read(fd, data.data() + done, data.size() - done, &got);
    if (err != 0) {
      fs->Close(fd);
      return absl::UnavailableError(
          fmt::format("cannot read {} at byte {}: {}", path, done, std::strerror(err)));
    }
    if (got == 0) {
      fs->Close(fd);
      return absl::UnavailableError(fmt::format(
          "cannot read {}: it ended at byte {} of the {} it had when opened", path, done, size));
    }
    done += got;
  }
  fs->Close(fd);
  return data;
}

int WriteAll(FileSystem* fs, int fd, std::string_view data) {
  while (!data.empty()) {
    size_t n = 0;
    int err = fs->Write(fd, data.data(), data.size(), &n);
    if (err != 0) return err;
    if (n == 0) return EIO;
    data.remove_prefix(n);
  }
  return 0;
}

}  // namespace adpulse
