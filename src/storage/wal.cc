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

absl::StatusOr<WalScan> ScanWalSegment(const std::string& path, const WalRecordFn& fn,
                                       FileSystem* fs) {
  auto data = ReadWholeFile(fs, path);
  if (!data.ok()) return data.status();
  return ScanWalData(*data, fn);
}

namespace {
// The record at `offset` if it is whole and its checksum holds: its length, else 0.
uint32_t ValidRecordAt(std::string_view data, size_t offset) {
  if (data.size() - offset < kWalRecordHeaderBytes) return 0;
  uint32_t length, checksum;
  std::memcpy(&length, data.data() + offset, 4);
  std::memcpy(&checksum, data.data() + offset + 4, 4);
  if (length == 0 || length > kWalMaxRecordBytes ||
      data.size() - offset - kWalRecordHeaderBytes < length) {
    return 0;
  }
  std::string_view payload(data.data() + offset + kWalRecordHeaderBytes, length);
  return Checksum(payload) == checksum ? length : 0;
}
}  // namespace

absl::StatusOr<WalScan> ScanWalData(std::string_view data, const WalRecordFn& fn) {
  WalScan scan;
  scan.file_bytes = data.size();
  if (data.size() < kWalHeaderBytes) {
    scan.problem = "segment header is incomplete";
    scan.header_torn = true;
    return scan;
  }
  if (std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    scan.problem = "segment header is not an adpulse WAL header";
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
  if (!scan.problem.empty()) {
    // Look for whole, valid records further on: each byte offset is a candidate, and almost all
    // are refused by their length before any checksum is computed.
    for (size_t at = scan.valid_bytes + 1; at + kWalRecordHeaderBytes < data.size(); ++at) {
      uint32_t length = ValidRecordAt(data, at);
      if (length == 0) continue;
      scan.next_valid_offset = at;
      while (length != 0) {
        ++scan.records_after_problem;
        at += kWalRecordHeaderBytes + length;
        length = at < data.size() ? ValidRecordAt(data, at) : 0;
      }
      break;
    }
  }
  return scan;
}

absl::StatusOr<std::unique_ptr<WalWriter>> WalWriter::Open(const Options& options,
                                                           uint64_t first_sequence) {
  // Each directory made here is synced into its parent: a synced segment in a directory whose
  // own entry is lost in a power cut would be lost with it.
  absl::Status made = CreateDirectoriesSynced(options.fs, options.dir, 2);
  if (!made.ok()) {
    return absl::UnavailableError(fmt::format("cannot create WAL directory {}: {}", options.dir,
                                              std::string(made.message())));
  }
  std::unique_ptr<WalWriter> w(new WalWriter(options));
  absl::Status s = w->OpenSegment(first_sequence);
  if (!s.ok()) return s;
  return w;
}

WalWriter::~WalWriter() {
  if (fd_ >= 0) fs_->Close(fd_);
}

absl::Status WalWriter::OpenSegment(uint64_t sequence) {
  std::string path = (std::filesystem::path(options_.dir) / SegmentName(sequence)).string();
  int fd = -1;
  int err = fs_->Open(path, O_WRONLY | O_CREAT | O_EXCL, 0644, &fd);
  if (err == EEXIST && fd_ >= 0) {
    // Left by an earlier rotation that failed after creating it: nothing was ever written to it
    // but (perhaps) its header, since the writer only appends to the segment it rotated to.
    uint64_t size = 0;
    int probe = -1;
    if (fs_->Open(path, O_RDONLY, 0, &probe) == 0) {
      int size_err = fs_->Size(probe, &size);
      fs_->Close(probe);
      if (size_err == 0 && size <= kWalHeaderBytes && fs_->Unlink(path) == 0) {
        err = fs_->Open(path, O_WRONLY | O_CREAT | O_EXCL, 0644, &fd);
      }
    }
  }
  if (err != 0) {
    return absl::UnavailableError(
        fmt::format("cannot create WAL segment {}: {}", path, Errno(err)));
  }
  // Undoes the creation: the segment is not used, so it must not stay behind.
  auto abandon = [&](const std::string& what, int why) {
    fs_->Close(fd);
    int unlinked = fs_->Unlink(path);
    if (unlinked == 0 && options_.fsync) fs_->SyncDir(options_.dir);
    return absl::UnavailableError(
        fmt::format("{} {}: {}{}", what, path, Errno(why),
                    unlinked == 0 ? "" : " (and it could not be removed)"));
  };
  char header[kWalHeaderBytes];
  std::memcpy(header, kMagic, 8);
  std::memcpy(header + 8, &sequence, 8);
  err = WriteAll(fs_, fd, std::string_view(header, sizeof(header)));
  if (err == 0 && options_.fsync) err = fs_->Fdatasync(fd);
  if (err != 0) return abandon("cannot write the header of WAL segment", err);
  if (options_.fsync) {
    err = fs_->SyncDir(options_.dir);
    if (err != 0) return abandon("cannot fsync the directory of new WAL segment", err);
  }
  if (fd_ >= 0) fs_->Close(fd_);
  fd_ = fd;
  sequence_ = sequence;
  written_bytes_ = synced_bytes_ = sizeof(header);
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
  return FinishSync(fs_->Fdatasync(fd_));
}

int WalWriter::CutBack() {
  int err = fs_->Truncate(fd_, synced_bytes_);
  if (err == 0 && options_.fsync) err = fs_->Fdatasync(fd_);
  if (err == 0) written_bytes_ = synced_bytes_;
  return err;
}

absl::Status WalWriter::Repair() {
  if (!broken()) return absl::OkStatus();
  int err = CutBack();
  if (err != 0) {
    return absl::DataLossError(
        fmt::format("{}; cutting it back failed again: {}", broken_reason_, Errno(err)));
  }
  broken_reason_.clear();
  return absl::OkStatus();
}

absl::Status WalWriter::Write() {
  if (broken()) {
    Discard();
    return absl::DataLossError(broken_reason_);
  }
  if (buffer_.empty()) return absl::OkStatus();
  int err = WriteAll(fs_, fd_, buffer_);
  size_t bytes = buffer_.size();
  Discard();
  if (err != 0) {
    // Cut the segment back so no part of this group stays in the log.
    int cut = CutBack();
    if (cut != 0) {
      broken_reason_ =
          fmt::format("WAL write failed ({}) and the segment could not be cut back: {}", Errno(err),
                      Errno(cut));
      return absl::DataLossError(broken_reason_);
    }
    return absl::UnavailableError(fmt::format("WAL write failed: {}", Errno(err)));
  }
  written_bytes_ += bytes;
  unsynced_ = true;
  return options_.fsync ? absl::OkStatus() : FinishSync(0);
}

absl::Status WalWriter::FinishSync(int sync_errno) {
  unsynced_ = false;
  if (sync_errno != 0) {
    // The group's bytes may or may not be on disk (Linux may have dropped the dirty pages), so
    // it is not acknowledged; cut it off, so that the log holds exactly the acknowledged groups.
    int cut = CutBack();
    if (cut != 0) {
      broken_reason_ = fmt::format(
          "WAL fdatasync failed ({}) and the segment could not be cut back to its last synced "
          "byte: {}",
          Errno(sync_errno), Errno(cut));
      return absl::DataLossError(broken_reason_);
    }
    return absl::UnavailableError(fmt::format(
        "WAL fdatasync failed: {} (the group was cut from the log)", Errno(sync_errno)));
  }
  synced_bytes_ = written_bytes_;
  if (written_bytes_ >= options_.segment_bytes) {
    absl::Status s = OpenSegment(sequence_ + 1);
    if (!s.ok()) {
      // The group is durable; only the rotation failed. Keep writing to the current segment and
      // try again after the next commit.
      rotation_error_ = std::string(s.message());
      ++rotation_failures_;
    } else {
      rotation_error_.clear();
    }
  }
  return absl::OkStatus();
}

}  // namespace adpulse
