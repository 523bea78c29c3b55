#include "storage/fault_injection_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

namespace adpulse {

void FaultInjectionFileSystem::FailNext(Op op, int err, int count, std::string path_part,
                                        int skip) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.push_back({op, err, count, std::move(path_part), skip});
}

void FaultInjectionFileSystem::FailAlways(Op op, int err, std::string path_part) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.push_back({op, err, -1, std::move(path_part), 0});
}

void FaultInjectionFileSystem::ClearFaults() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
}

uint64_t FaultInjectionFileSystem::injected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return injected_;
}

int FaultInjectionFileSystem::Inject(Op op, const std::string& path) {
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    if (it->op != op) continue;
    if (!it->path_part.empty() && path.find(it->path_part) == std::string::npos) continue;
    if (it->skip > 0) {
      --it->skip;
      continue;
    }
    int err = it->err;
    if (it->count > 0 && --it->count == 0) rules_.erase(it);
    ++injected_;
    return err;
  }
  return 0;
}

std::string FaultInjectionFileSystem::PathOf(int fd) const {
  auto it = open_.find(fd);
  return it == open_.end() ? std::string() : it->second;
}

std::string FaultInjectionFileSystem::Parent(const std::string& path) {
  std::string p = std::filesystem::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

int FaultInjectionFileSystem::Open(const std::string& path, int flags, int mode, int* fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (int err = Inject(Op::kOpen, path)) return err;
  std::error_code ec;
  bool existed = std::filesystem::exists(path, ec);
  int err = base_->Open(path, flags, mode, fd);
  if (err != 0) return err;
  open_[*fd] = path;
  FileState& f = files_[path];
  if (!existed) {
    undurable_entries_.insert(path);
    f = FileState{};
  } else if (flags & O_TRUNC) {
    f.size = 0;  // the old bytes are gone once this is durable; until then a cut keeps none
    f.durable = 0;
  } else if (f.size == 0 && f.durable == 0) {
    uint64_t size = 0;
    if (base_->Size(*fd, &size) == 0) f.size = f.durable = size;  // a file from before
  }
  return 0;
}

int FaultInjectionFileSystem::Close(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  open_.erase(fd);
  return base_->Close(fd);
}

int FaultInjectionFileSystem::Write(int fd, const char* data, size_t n, size_t* written) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string path = PathOf(fd);
  if (int err = Inject(Op::kWrite, path)) return err;
  int err = base_->Write(fd, data, n, written);
  if (err == 0) {
    uint64_t size = 0;
    if (base_->Size(fd, &size) == 0) files_[path].size = size;
  }
  return err;
}

int FaultInjectionFileSystem::Read(int fd, char* buffer, size_t n, size_t* got) {
  std::lock_guard<std::mutex> lock(mu_);
  if (int err = Inject(Op::kRead, PathOf(fd))) return err;
  return base_->Read(fd, buffer, n, got);
}

int FaultInjectionFileSystem::Size(int fd, uint64_t* bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (int err = Inject(Op::kSize, PathOf(fd))) return err;
  return base_->Size(fd, bytes);
}

int FaultInjectionFileSystem::Truncate(int fd, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string path = PathOf(fd);
  if (int err = Inject(Op::kTruncate, path)) return err;
  int err = base_->Truncate(fd, bytes);
  if (err == 0) {
    FileState& f = files_[path];
    f.size = bytes;
    // A cut that is not synced may be undone by a power cut, but never brings bytes back past
    // what was durable; keep the smaller.
    f.durable = std::min(f.durable, bytes);
  }
  return err;
}

void FaultInjectionFileSystem::SyncedLocked(int fd) {
  std::string path = PathOf(fd);
  FileState& f = files_[path];
  f.durable = f.size;
}

int FaultInjectionFileSystem::Fdatasync(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string path = PathOf(fd);
  if (int err = Inject(Op::kSync, path)) {
    if (drop_on_failed_sync_) {
      FileState& f = files_[path];
      if (base_->Truncate(fd, f.durable) == 0) f.size = f.durable;
    }
    return err;
  }
  int err = base_->Fdatasync(fd);
  if (err == 0) SyncedLocked(fd);
  return err;
}

int FaultInjectionFileSystem::Fsync(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string path = PathOf(fd);
  if (int err = Inject(Op::kSync, path)) return err;
  int err = base_->Fsync(fd);
  if (err == 0) SyncedLocked(fd);
  return err;
}

int FaultInjectionFileSystem::SyncDir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  if (int err = Inject(Op::kSyncDir, dir)) return err;
  int err = base_->SyncDir(dir);
  if (err != 0) return err;
  std::string normal = std::filesystem::path(dir).lexically_normal().string();
  for (auto it = undurable_entries_.begin(); it != undurable_entries_.end();) {
    std::string parent = std::filesystem::path(Parent(*it)).lexically_normal().string();
    it = parent == normal ? undurable_entries_.erase(it) : std::next(it);
  }
  return 0;
}

int FaultInjectionFileSystem::Unlink(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (int err = Inject(Op::kUnlink, path)) return err;
  int err = base_->Unlink(path);
  if (err == 0) {
    files_.erase(path);
    undurable_entries_.erase(path);
  }
  return err;
}

int FaultInjectionFileSystem::Rename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  if (int err = Inject(Op::kRename, from)) return err;
  int err = base_->Rename(from, to);
  if (err == 0) {
    auto it = files_.find(from);
    if (it != files_.end()) {
      files_[to] = it->second;
      files_.erase(it);
    }
    undurable_entries_.erase(from);
    undurable_entries_.insert(to);
    for (auto& [fd, path] : open_) {
      if (path == from) path = to;
    }
  }
  return err;
}

int FaultInjectionFileSystem::MakeDir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  if (int err = Inject(Op::kMakeDir, dir)) return err;
  int err = base_->MakeDir(dir);
  if (err == 0) undurable_entries_.insert(std::filesystem::path(dir).lexically_normal().string());
  return err;
}

void FaultInjectionFileSystem::DropUnsyncedData() {
  std::lock_guard<std::mutex> lock(mu_);
  std::error_code ec;
  for (auto& [path, f] : files_) {
    if (f.size > f.durable && std::filesystem::exists(path, ec)) {
      std::filesystem::resize_file(path, f.durable, ec);
      f.size = f.durable;
    }
  }
  // Entries whose directory was never synced after they appeared: gone, with what is in them.
  for (const std::string& path : undurable_entries_) {
    std::filesystem::remove_all(path, ec);
    files_.erase(path);
  }
  undurable_entries_.clear();
}

}  // namespace adpulse
