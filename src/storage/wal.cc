#include "storage/wal.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "storage/file_syncer.h"

namespace adpulse {
namespace {

constexpr char kMagic[8] = {'A', 'D', 'P', 'W', 'A', 'L', '0', '1'};

uint32_t Checksum(std::string_view payload) {
  return static_cast<uint32_t>(
      XXH3_64bits_withSeed(payload.data(), payload.size(), payload.size() * 0x9E3779B97F4A7C15ull));
}

std::string SegmentName(uint64_t sequence) { return fmt::format("{:020}.wal", sequence); }

std::string Errno(int err) { return std::strerror(err); }

}  // namespace

absl::Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(fmt::format("cannot open directory {}: {}", dir, Errno(errno)));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return absl::DataLossError(fmt::format("fsync of directory {} failed: {}", dir, Errno(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<WalSegment>> ListWalSegments(const std::string& dir) {
  std::vector<WalSegment> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() != 24 || name.substr(20) != ".wal") continue;
    uint64_t seq = 0;
    bool digits =
        std::all_of(name.begin(), name.begin() + 20, [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) continue;
    seq = std::stoull(name.substr(0, 20));
    out.push_back({seq, entry.path().string()});
  }
  if (ec) return absl::UnavailableError(fmt::format("cannot list {}: {}", dir, ec.message()));
  std::sort(out.begin(), out.end(),
            [](const WalSegment& a, const WalSegment& b) { return a.sequence < b.sequence; });
  return out;
}

absl::StatusOr<WalScan> ScanWalSegment(const std::string& path, const WalRecordFn& fn) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(fmt::format("cannot open {}: {}", path, Errno(errno)));
  }
  struct stat st {};
  ::fstat(fd, &st);
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  data.resize(got);
  return ScanWalData(data, fn);
}

absl::StatusOr<WalScan> ScanWalData(std::string_view data, const WalRecordFn& fn) {
  WalScan scan;
  scan.file_bytes = data.size();
  if (data.size() < kWalHeaderBytes || std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    scan.problem = data.size() < kWalHeaderBytes ? "segment header is incomplete"
                                                 : "segment header is not an adpulse WAL header";
    return scan;
  }
  size_t offset = kWalHeaderBytes;
  scan.valid_bytes = offset;
  while (offset < data.size()) {
    if (data.size() - offset < kWalRecordHeaderBytes) {
      scan.problem = fmt::format("record header cut off at byte {}", offset);
      break;
    }
    uint32_t length, checksum;
    std::memcpy(&length, data.data() + offset, 4);
    std::memcpy(&checksum, data.data() + offset + 4, 4);
    if (length == 0 || length > kWalMaxRecordBytes) {
      scan.problem = fmt::format("record at byte {} has an impossible length {}", offset, length);
      break;
    }
    if (data.size() - offset - kWalRecordHeaderBytes < length) {
      scan.problem = fmt::format("record at byte {} is cut off ({} of {} bytes)", offset,
                                 data.size() - offset - kWalRecordHeaderBytes, length);
      break;
    }
    std::string_view payload(data.data() + offset + kWalRecordHeaderBytes, length);
    if (Checksum(payload) != checksum) {
      scan.problem = fmt::format("record at byte {} fails its checksum", offset);
      break;
    }
    absl::Status s = fn(offset, payload);
    if (!s.ok()) return s;
    offset += kWalRecordHeaderBytes + length;
    scan.valid_bytes = offset;
    ++scan.records;
  }
  return scan;
}

absl::StatusOr<std::unique_ptr<WalWriter>> WalWriter::Open(const Options& options,
                                                           uint64_t first_sequence) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return absl::UnavailableError(
        fmt::format("cannot create WAL directory {}: {}", options.dir, ec.message()));
  }
  std::unique_ptr<WalWriter> w(new WalWriter(options));
  absl::Status s = w->OpenSegment(first_sequence);
  if (!s.ok()) return s;
  return w;
}

WalWriter::~WalWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status WalWriter::OpenSegment(uint64_t sequence) {
  std::string path = (std::filesystem::path(options_.dir) / SegmentName(sequence)).string();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        fmt::format("cannot create WAL segment {}: {}", path, Errno(errno)));
  }
  char header[kWalHeaderBytes];
  std::memcpy(header, kMagic, 8);
  std::memcpy(header + 8, &sequence, 8);
  if (::write(fd, header, sizeof(header)) != static_cast<ssize_t>(sizeof(header)) ||
      (options_.fsync && ::fdatasync(fd) != 0)) {
    int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return absl::UnavailableError(fmt::format("cannot write WAL segment {}: {}", path, Errno(err)));
  }
  if (options_.fsync) {
    absl::Status s = SyncDirectory(options_.dir);
    if (!s.ok()) {
      ::close(fd);
      return s;
    }
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  sequence_ = sequence;
  file_bytes_ = sizeof(header);
  return absl::OkStatus();
}

void WalWriter::Append(std::string_view payload) {
  AppendEncoded([payload](std::string& out) { out.append(payload); });
}

void WalWriter::FinishRecord(size_t at) {
  char* header = buffer_.data() + at;
  std::string_view payload(header + kWalRecordHeaderBytes,
                           buffer_.size() - at - kWalRecordHeaderBytes);
  uint32_t length = static_cast<uint32_t>(payload.size());
  uint32_t checksum = Checksum(payload);
  std::memcpy(header, &length, 4);
  std::memcpy(header + 4, &checksum, 4);
  ++pending_records_;
}

void WalWriter::Discard() {
  buffer_.clear();
  pending_records_ = 0;
}

absl::Status WalWriter::Commit() {
  absl::Status s = Write();
  if (!s.ok() || !needs_sync()) return s;
  return FinishSync(FileSyncer::Fdatasync(fd_));
}

absl::Status WalWriter::Write() {
  if (broken()) {
    Discard();
    return absl::DataLossError(broken_reason_);
  }
  if (buffer_.empty()) return absl::OkStatus();
  size_t written = 0;
  while (written < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + written, buffer_.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      Discard();
      // Cut the segment back so no part of this group stays in the log.
      if (::ftruncate(fd_, static_cast<off_t>(file_bytes_)) != 0 ||
          ::lseek(fd_, static_cast<off_t>(file_bytes_), SEEK_SET) < 0) {
        broken_reason_ =
            fmt::format("WAL write failed ({}) and the segment could not be cut back: {}",
                        Errno(err), Errno(errno));
        return absl::DataLossError(broken_reason_);
      }
      return absl::UnavailableError(fmt::format("WAL write failed: {}", Errno(err)));
    }
    written += static_cast<size_t>(n);
  }
  file_bytes_ += buffer_.size();
  Discard();
  unsynced_ = true;
  if (!options_.fsync) return FinishSync(0);
  return absl::OkStatus();
}

absl::Status WalWriter::FinishSync(int sync_errno) {
  unsynced_ = false;
  if (sync_errno != 0) {
    broken_reason_ =
        fmt::format("WAL fdatasync failed: {}; restart adpulse to recover", Errno(sync_errno));
    return absl::DataLossError(broken_reason_);
  }
  if (file_bytes_ >= options_.segment_bytes) {
    absl::Status s = OpenSegment(sequence_ + 1);
    if (!s.ok()) {
      // The group is durable; only the rotation failed. Keep writing to the current segment.
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

}  // namespace adpulse
