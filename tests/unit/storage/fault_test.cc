// The log and the archive under injected faults (FaultInjectionFileSystem): failed writes,
// fdatasyncs, directory fsyncs and reads, and power cuts that drop every byte not yet synced.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "storage/archive.h"
#include "storage/fault_injection_fs.h"
#include "storage/wal.h"

namespace adpulse {
namespace {

using Op = FaultInjectionFileSystem::Op;

std::string TempDir() {
  std::string dir = (std::filesystem::temp_directory_path() /
                     ("adpulse-fault-test-" + std::to_string(::getpid()) + "-" +
                      std::to_string(std::random_device{}())))
                        .string();
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<std::string> Records(const std::string& dir, FileSystem* fs = FileSystem::Default()) {
  std::vector<std::string> out;
  auto segments = ListWalSegments(dir);
  REQUIRE(segments.ok());
  for (const auto& seg : *segments) {
    auto scan = ScanWalSegment(
        seg.path,
        [&](uint64_t, std::string_view p) {
          out.emplace_back(p);
          return absl::OkStatus();
        },
        fs);
    REQUIRE(scan.ok());
    CHECK(scan->problem == "");
  }
  return out;
}

WalWriter::Options Opts(const std::string& dir, FileSystem* fs, uint64_t segment_bytes = 1 << 20) {
  WalWriter::Options o;
  o.dir = dir;
  o.segment_bytes = segment_bytes;
  o.fs = fs;
  return o;
}

}  // namespace

TEST_CASE("fault fs: a power cut drops what was not synced, and entries not synced", "[fault]") {
  std::string dir = TempDir();
  FaultInjectionFileSystem fs;
  int fd = -1;
  REQUIRE(fs.Open(dir + "/a", O_WRONLY | O_CREAT, 0644, &fd) == 0);
  REQUIRE(WriteAll(&fs, fd, "synced") == 0);
  REQUIRE(fs.Fdatasync(fd) == 0);
  REQUIRE(fs.SyncDir(dir) == 0);
  REQUIRE(WriteAll(&fs, fd, " and not") == 0);
  fs.Close(fd);
  REQUIRE(fs.Open(dir + "/b", O_WRONLY | O_CREAT, 0644, &fd) == 0);
  REQUIRE(WriteAll(&fs, fd, "never in its directory") == 0);
  REQUIRE(fs.Fdatasync(fd) == 0);
  fs.Close(fd);
  fs.DropUnsyncedData();
  auto a = ReadWholeFile(&fs, dir + "/a");
  REQUIRE(a.ok());
  CHECK(*a == "synced");
  CHECK(!std::filesystem::exists(dir + "/b"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a failed fdatasync leaves only synced groups in the log, through a power cut",
          "[fault]") {
  std::string dir = TempDir();
  FaultInjectionFileSystem fs;
  auto w = WalWriter::Open(Opts(dir + "/wal/shard-000", &fs), 1);
  REQUIRE(w.ok());
  (*w)->Append("one");
  REQUIRE((*w)->Commit().ok());
  fs.FailNext(Op::kSync, EIO);
  (*w)->Append("two");
  CHECK((*w)->Commit().code() == absl::StatusCode::kUnavailable);
  (*w)->Append("three");
  REQUIRE((*w)->Commit().ok());
  w->reset();
  CHECK(Records(dir + "/wal/shard-000") == std::vector<std::string>{"one", "three"});
  // The directories the writer made were synced into their parents: a power cut keeps them.
  fs.DropUnsyncedData();
  CHECK(Records(dir + "/wal/shard-000") == std::vector<std::string>{"one", "three"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("the new log directories are synced into their parents", "[fault]") {
  std::string dir = TempDir();
  FaultInjectionFileSystem fs;
  fs.FailNext(Op::kSyncDir, EIO, 1, dir + "/wal");  // the sync of wal/ (for shard-000's entry)
  CHECK(!WalWriter::Open(Opts(dir + "/wal/shard-000", &fs), 1).ok());
  CHECK(fs.injected() == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a failed write or fdatasync whose cut-back fails breaks the log until repaired",
          "[fault]") {
  std::string dir = TempDir();
  FaultInjectionFileSystem fs;
  auto w = WalWriter::Open(Opts(dir, &fs), 1);
  REQUIRE(w.ok());
  (*w)->Append("one");
  REQUIRE((*w)->Commit().ok());
  SECTION("write") {
    fs.FailNext(Op::kWrite, ENOSPC);
    fs.FailAlways(Op::kTruncate, EIO);
  }
  SECTION("fdatasync") {
    fs.FailNext(Op::kSync, EIO);
    fs.FailAlways(Op::kTruncate, EIO);
  }
  (*w)->Append("two");
  CHECK((*w)->Commit().code() == absl::StatusCode::kDataLoss);
  CHECK((*w)->broken());
  (*w)->Append("refused");
  CHECK((*w)->Commit().code() == absl::StatusCode::kDataLoss);
  CHECK(!(*w)->Repair().ok());  // the disk still fails
  fs.ClearFaults();
  REQUIRE((*w)->Repair().ok());
  (*w)->Append("three");
  REQUIRE((*w)->Commit().ok());
  w->reset();
  CHECK(Records(dir) == std::vector<std::string>{"one", "three"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("a full disk cuts the group back and the next group is written", "[fault]") {
  std::string dir = TempDir();
  FaultInjectionFileSystem fs;
  auto w = WalWriter::Open(Opts(dir, &fs), 1);
  REQUIRE(w.ok());
  (*w)->Append("one");
  REQUIRE((*w)->Commit().ok());
  fs.FailNext(Op::kWrite, ENOSPC);
  (*w)->Append("two");
  CHECK((*w)->Commit().code() == absl::StatusCode::kUnavailable);
  CHECK(!(*w)->broken());
  (*w)->Append("three");
  REQUIRE((*w)->Commit().ok());
  w->reset();
  CHECK(Records(dir) == std::vector<std::string>{"one", "three"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("a rotation whose directory fsync fails leaves no file behind and is tried again",
          "[fault]") {
  std::string dir = TempDir();
  FaultInjectionFileSystem fs;
  auto w = WalWriter::Open(Opts(dir, &fs, 64), 1);  // every commit fills a segment
  REQUIRE(w.ok());
  (*w)->Append(std::string(100, 'a'));
  REQUIRE((*w)->Commit().ok());  // rotates to segment 2
  CHECK((*w)->current_sequence() == 2);
  fs.FailNext(Op::kSyncDir, EIO);
  (*w)->Append(std::string(100, 'b'));
  CHECK((*w)->Commit().ok());  // the group is durable; only the rotation to 3 failed
  CHECK((*w)->current_sequence() == 2);
  CHECK((*w)->rotation_failures() == 1);
  CHECK((*w)->rotation_error().find("cannot fsync the directory") != std::string::npos);
  CHECK(!std::filesystem::exists(dir + "/00000000000000000003.wal"));
  (*w)->Append(std::string(100, 'c'));
  REQUIRE((*w)->Commit().ok());  // tried again, and it works: no EEXIST
  CHECK((*w)->current_sequence() == 3);
  CHECK((*w)->rotation_error().empty());
  w->reset();
  auto records = Records(dir);
  REQUIRE(records.size() == 3);
  CHECK(records[2] == std::string(100, 'c'));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a rotation that left its file behind is not wedged by it", "[fault]") {
  std::string dir = TempDir();
  FaultInjectionFileSystem fs;
  auto w = WalWriter::Open(Opts(dir, &fs, 64), 1);
  REQUIRE(w.ok());
  // The directory fsync fails and so does the unlink that undoes the creation.
  fs.FailNext(Op::kSyncDir, EIO);
  fs.FailNext(Op::kUnlink, EIO);
  (*w)->Append(std::string(100, 'a'));
  CHECK((*w)->Commit().ok());
  CHECK((*w)->current_sequence() == 1);
  CHECK(std::filesystem::exists(dir + "/00000000000000000002.wal"));
  (*w)->Append(std::string(100, 'b'));
  REQUIRE((*w)->Commit().ok());
  CHECK((*w)->current_sequence() == 2);  // the leftover (a bare header) was replaced
  (*w)->Append(std::string(100, 'c'));
  REQUIRE((*w)->Commit().ok());
  w->reset();
  CHECK(Records(dir).size() == 3);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a read error is an error, never the end of the segment", "[fault]") {
  std::string dir = TempDir();
  {
    auto w = WalWriter::Open(Opts(dir, FileSystem::Default()), 1);
    REQUIRE(w.ok());
    for (int i = 0; i < 100; ++i) (*w)->Append(std::string(1000, 'x'));
    REQUIRE((*w)->Commit().ok());
  }
  auto segments = ListWalSegments(dir);
  REQUIRE(segments.ok());
  FaultInjectionFileSystem fs;
  int calls = 0;
  auto count = [&](uint64_t, std::string_view) {
    ++calls;
    return absl::OkStatus();
  };
  fs.FailNext(Op::kRead, EIO);
  auto scan = ScanWalSegment((*segments)[0].path, count, &fs);
  CHECK(scan.status().code() == absl::StatusCode::kUnavailable);
  CHECK(std::string(scan.status().message()).find("Input/output error") != std::string::npos);
  fs.FailNext(Op::kSize, EIO);
  CHECK(!ScanWalSegment((*segments)[0].path, count, &fs).ok());
  CHECK(calls == 0);
  auto whole = ScanWalSegment((*segments)[0].path, count, &fs);
  REQUIRE(whole.ok());
  CHECK(whole->records == 100);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a valid record after a bad one is found: damage, not a torn tail", "[fault]") {
  std::string dir = TempDir();
  {
    auto w = WalWriter::Open(Opts(dir, FileSystem::Default()), 1);
    REQUIRE(w.ok());
    for (int i = 0; i < 10; ++i) {
      (*w)->Append("record " + std::to_string(i));
      REQUIRE((*w)->Commit().ok());
    }
  }
  std::string path = (*ListWalSegments(dir))[0].path;
  std::string data;
  {
    std::ifstream in(path, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto none = [](uint64_t, std::string_view) { return absl::OkStatus(); };
  // The fourth record's payload damaged: six whole records follow it.
  size_t fourth = kWalHeaderBytes + 3 * (kWalRecordHeaderBytes + 8);
  std::string damaged = data;
  damaged[fourth + kWalRecordHeaderBytes + 2] ^= 0x10;
  auto scan = ScanWalData(damaged, none);
  REQUIRE(scan.ok());
  CHECK(scan->records == 3);
  CHECK(scan->records_after_problem == 6);
  CHECK(scan->next_valid_offset == fourth + kWalRecordHeaderBytes + 8);
  // A tail cut mid-record, or zeros where the last group's pages never reached the disk: torn.
  auto cut = ScanWalData(std::string_view(data).substr(0, data.size() - 3), none);
  REQUIRE(cut.ok());
  CHECK(cut->records == 9);
  CHECK(cut->records_after_problem == 0);
  std::string zeros = data.substr(0, fourth) + std::string(data.size() - fourth, '\0');
  auto z = ScanWalData(zeros, none);
  REQUIRE(z.ok());
  CHECK(z->records == 3);
  CHECK(z->records_after_problem == 0);
  // A header shorter than 16 bytes is torn; 16 wrong bytes are damage.
  CHECK(ScanWalData(data.substr(0, 9), none)->header_torn);
  std::string bad_header = data;
  bad_header[3] = 'X';
  auto h = ScanWalData(bad_header, none);
  CHECK(!h->header_torn);
  CHECK(h->valid_bytes == 0);
  std::filesystem::remove_all(dir);
}

TEST_CASE("archive: a compressed segment and its directories survive a power cut", "[fault]") {
  std::string dir = TempDir();
  FaultInjectionFileSystem fs;
  std::string wal_dir = dir + "/wal/shard-000";
  {
    auto w = WalWriter::Open(Opts(wal_dir, &fs, 64), 1);
    REQUIRE(w.ok());
    (*w)->Append(std::string(100, 'a'));
    REQUIRE((*w)->Commit().ok());  // segment 1 sealed
  }
  Archiver::Options options;
  options.archive_dir = dir + "/archive";
  options.fs = &fs;
  SECTION("power cut after archiving") {
    Archiver archiver(options);
    archiver.Start();
    archiver.Submit(0, wal_dir, 2);
    for (int i = 0; i < 500 && archiver.archived_segments() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    archiver.Stop();
    REQUIRE(archiver.archived_segments() == 1);
    fs.DropUnsyncedData();
    auto archived = ListArchivedSegments(dir + "/archive", 0);
    REQUIRE(archived.size() == 1);
    auto data = ReadArchivedSegment(archived[0].path, &fs);
    REQUIRE(data.ok());
    auto scan = ScanWalData(*data, [](uint64_t, std::string_view) { return absl::OkStatus(); });
    CHECK(scan->records == 1);
  }
  SECTION("a failed directory fsync keeps the segment in the log") {
    fs.FailNext(Op::kSyncDir, EIO, 1, "/archive");
    Archiver archiver(options);
    archiver.Start();
    archiver.Submit(0, wal_dir, 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    archiver.Stop();
    CHECK(fs.injected() == 1);
    CHECK(archiver.archived_segments() == 0);
    CHECK(std::filesystem::exists(wal_dir + "/00000000000000000001.wal"));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace adpulse
