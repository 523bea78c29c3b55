#include "storage/archive.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "base/log.h"
#include "base/thread_priority.h"

namespace adpulse {
namespace fs = std::filesystem;

namespace {
constexpr int kZstdLevel = 3;

std::string HourDir(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour);
}

// Writes all of `data` to a new file `path` and fsyncs it.
absl::Status WriteFileSynced(FileSystem* fs, const std::string& path, std::string_view data) {
  int fd = -1;
  int err = fs->Open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644, &fd);
  if (err != 0)
    return absl::UnavailableError(fmt::format("cannot write {}: {}", path, strerror(err)));
  err = WriteAll(fs, fd, data);
  if (err == 0) err = fs->Fsync(fd);
  fs->Close(fd);
  if (err != 0)
    return absl::UnavailableError(fmt::format("cannot write {}: {}", path, strerror(err)));
  return absl::OkStatus();
}
}  // namespace

std::vector<ArchivedSegment> ListArchivedSegments(const std::string& archive_dir, int shard) {
  std::vector<ArchivedSegment> out;
  std::error_code ec;
  std::string shard_name = fmt::format("shard-{:03}", shard);
  for (const auto& hour : fs::directory_iterator(archive_dir, ec)) {
    fs::path dir = hour.path() / shard_name;
    std::error_code ec2;
    for (const auto& f : fs::directory_iterator(dir, ec2)) {
      std::string name = f.path().filename().string();
      if (name.size() != 28 || name.substr(20) != ".wal.zst") continue;
      out.push_back({std::stoull(name.substr(0, 20)), f.path().string()});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.sequence < b.sequence; });
  return out;
}

absl::StatusOr<std::string> ReadArchivedSegment(const std::string& path, FileSystem* fs) {
  auto compressed = ReadWholeFile(fs, path);
  if (!compressed.ok()) return compressed.status();
  unsigned long long size = ZSTD_getFrameContentSize(compressed->data(), compressed->size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return absl::DataLossError(fmt::format("{} is not a zstd frame of known size", path));
  }
  std::string out(size, '\0');
  size_t n = ZSTD_decompress(out.data(), out.size(), compressed->data(), compressed->size());
  if (ZSTD_isError(n) || n != size) {
    return absl::DataLossError(fmt::format("{} does not decompress: {}", path,
                                           ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short"));
  }
  return out;
}

absl::Status CompressFile(const std::string& from, const std::string& to, FileSystem* fs) {
  auto data = ReadWholeFile(fs, from);
  if (!data.ok()) return data.status();
  std::string out(ZSTD_compressBound(data->size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data->data(), data->size(), kZstdLevel);
  if (ZSTD_isError(n)) {
    return absl::InternalError(fmt::format("zstd failed on {}: {}", from, ZSTD_getErrorName(n)));
  }
  std::string tmp = to + ".tmp";
  absl::Status written = WriteFileSynced(fs, tmp, std::string_view(out.data(), n));
  if (!written.ok()) {
    fs->Unlink(tmp);
    return written;
  }
  int err = fs->Rename(tmp, to);
  if (err != 0) {
    fs->Unlink(tmp);
    return absl::UnavailableError(fmt::format("cannot rename {}: {}", tmp, strerror(err)));
  }
  return SyncDirectory(fs, fs::path(to).parent_path().string());
}

Archiver::Archiver(Options options) : options_(std::move(options)) {}

Archiver::~Archiver() { Stop(); }

void Archiver::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Archiver::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Archiver::Submit(int shard, const std::string& wal_dir, uint64_t sequence) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back({shard, wal_dir, sequence});
  }
  cv_.notify_one();
}

void Archiver::Loop() {
  pthread_setname_np(pthread_self(), "adpulse-archive");
  SetCurrentThreadBackground(kNiceBackground);
  auto next_expiry = std::chrono::steady_clock::now();
  while (true) {
    Request r;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait_for(lock, std::chrono::seconds(60), [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stop_) return;
        lock.unlock();
        if (std::chrono::steady_clock::now() >= next_expiry) {
          Expire();
          next_expiry = std::chrono::steady_clock::now() + std::chrono::minutes(10);
        }
        continue;
      }
      r = std::move(queue_.front());
      queue_.pop_front();
    }
    Archive(r);
  }
}

void Archiver::Archive(const Request& r) {
  auto segments = ListWalSegments(r.wal_dir);
  if (!segments.ok()) return;
  bool any = false;
  for (const WalSegment& s : *segments) any |= s.sequence < r.sequence;
  if (!any) return;
  if (options_.store) {
    absl::Status synced = options_.store->Sync();
    if (!synced.ok()) {
      LOG_WARN("not archiving log segments of shard {}: {}", r.shard,
               std::string_view(synced.message().data(), synced.message().size()));
      return;
    }
  }
  std::lock_guard<std::mutex> move(move_mutex_);
  for (const WalSegment& seg : *segments) {
    if (seg.sequence >= r.sequence) continue;
    struct stat st {};
    ::stat(seg.path.c_str(), &st);
    fs::path dir =
        fs::path(options_.archive_dir) / HourDir(st.st_mtime) / fmt::format("shard-{:03}", r.shard);
    // archive/<hour>/shard-NNN is new once an hour: its entries are synced into their parents,
    // or a power cut could take a compressed segment whose log copy is already gone.
    absl::Status s = CreateDirectoriesSynced(options_.fs, dir.string(), 3);
    std::string target = (dir / (fs::path(seg.path).filename().string() + ".zst")).string();
    if (s.ok()) s = CompressFile(seg.path, target, options_.fs);
    if (!s.ok()) {
      LOG_WARN("cannot archive {}: {}", seg.path,
               std::string_view(s.message().data(), s.message().size()));
      return;
    }
    // The segment leaves the log only once its compressed copy is durable (above). If this unlink
    // is lost in a crash, the segment is archived again (the same bytes).
    options_.fs->Unlink(seg.path);
    archived_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Archiver::Expire() {
  std::time_t cutoff = static_cast<std::time_t>(
      std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()) -
      options_.retention_ms / 1000);
  std::string oldest_kept = HourDir(cutoff);
  std::error_code ec;
  std::lock_guard<std::mutex> move(move_mutex_);
  for (const auto& hour : fs::directory_iterator(options_.archive_dir, ec)) {
    std::string name = hour.path().filename().string();
    if (name.size() == 13 && name < oldest_kept) {  // names sort as times
      fs::remove_all(hour.path(), ec);
      LOG_INFO("archive: removed {} (older than the retention)", hour.path().string());
    }
  }
}

}  // namespace adpulse
