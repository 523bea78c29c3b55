#include "storage/wal.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>

#include "storage/file_syncer.h"
#include "storage/wal_record.h"

namespace adpulse {
namespace {

std::string TempDir() {
  std::string dir =
      (std::filesystem::temp_directory_path() / ("adpulse-wal-test-" + std::to_string(::getpid()) +
                                                 "-" + std::to_string(std::random_device{}())))
          .string();
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<std::string> ReadAll(const std::string& path, WalScan* scan_out = nullptr) {
  std::vector<std::string> out;
  auto scan = ScanWalSegment(path, [&](uint64_t, std::string_view p) {
    out.emplace_back(p);
    return absl::OkStatus();
  });
  REQUIRE(scan.ok());
  if (scan_out) *scan_out = *scan;
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

}  // namespace

TEST_CASE("an event record round-trips every field", "[wal]") {
  Event e;
  e.event_id = "ev-1";
  e.type = EventType::kConversion;
  e.timestamp_ms = 1'764'340'800'123;
  e.bid_micros = 1'234'567;
  e.fraud_flags = 3;
  for (int i = 0; i < kDimCount; ++i) e.dims[i] = DimName(static_cast<Dim>(i));
  e.user_id = "u";
  e.session_id = "s";
  e.ip_address = "203.0.113.9";
  e.user_agent = "Mozilla/5.0";
  e.page_url = "https://x.example/";
  e.click_id = "ev-0";
  e.browser_version = "120.0.6099";
  e.os_version = "10";
  e.lat_e4 = -338688;
  e.lon_e4 = 1512093;
  e.fraud_score_milli = 913;
  e.fraud_signals = 0x80000401u;
  e.attribution = Attribution::kOutsideWindow;
  std::string payload;
  EncodeEventRecord(e, payload);
  CHECK(payload[0] == kWalEventRecordV3);
  Event d;
  REQUIRE(DecodeEventRecord(payload, d));
  CHECK(d.event_id == e.event_id);
  CHECK(d.type == e.type);
  CHECK(d.timestamp_ms == e.timestamp_ms);
  CHECK(d.bid_micros == e.bid_micros);
  CHECK(d.fraud_flags == 3);
  CHECK(d.fraud_score_milli == 913);
  CHECK(d.fraud_signals == 0x80000401u);
  CHECK(d.lat_e4 == -338688);
  CHECK(d.lon_e4 == 1512093);
  CHECK(d.browser_version == "120.0.6099");
  CHECK(d.os_version == "10");
  CHECK(d.dims == e.dims);
  CHECK(d.user_agent == e.user_agent);
  CHECK(d.click_id == e.click_id);
  CHECK(d.attribution == Attribution::kOutsideWindow);
  CHECK_FALSE(DecodeEventRecord(payload.substr(0, payload.size() - 1), d));
  CHECK_FALSE(DecodeEventRecord(payload + "x", d));
  std::string bad = payload;
  bad[3] = static_cast<char>(kAttributionCount);  // no such attribution
  CHECK_FALSE(DecodeEventRecord(bad, d));
}

TEST_CASE("a version 2 record (before attribution) decodes with no attribution", "[wal]") {
  Event e;
  e.event_id = "ev-2";
  e.type = EventType::kConversion;
  e.attribution = Attribution::kAttributed;
  std::string v3;
  EncodeEventRecord(e, v3);
  // Version 2 is version 3 without the attribution byte.
  std::string v2 = v3.substr(0, 3) + v3.substr(4);
  v2[0] = static_cast<char>(kWalEventRecordV2);
  Event d;
  REQUIRE(DecodeEventRecord(v2, d));
  CHECK(d.event_id == "ev-2");
  CHECK(d.type == EventType::kConversion);
  CHECK(d.attribution == Attribution::kNone);
}

TEST_CASE("a version 1 record (written before the fraud stage) still decodes", "[wal]") {
  // Version 1 layout: version, type, flags, timestamp, bid, then 18 strings of u16 length + bytes.
  std::string v1;
  v1.push_back(static_cast<char>(kWalEventRecordV1));
  v1.push_back(static_cast<char>(EventType::kClick));
  v1.push_back(1);
  int64_t ts = 1'764'340'800'000, bid = 500'000;
  v1.append(reinterpret_cast<const char*>(&ts), 8);
  v1.append(reinterpret_cast<const char*>(&bid), 8);
  auto put = [&v1](std::string_view s) {
    uint16_t n = static_cast<uint16_t>(s.size());
    v1.append(reinterpret_cast<const char*>(&n), 2);
    v1.append(s);
  };
  put("ev-9");
  for (int i = 0; i < kDimCount; ++i) put(i == 0 ? "camp" : "");
  for (const char* s : {"u", "s", "198.51.100.1", "ua", "url", ""}) put(s);
  Event d;
  REQUIRE(DecodeEventRecord(v1, d));
  CHECK(d.event_id == "ev-9");
  CHECK(d.type == EventType::kClick);
  CHECK(d.invalid());
  CHECK(d.timestamp_ms == ts);
  CHECK(d.bid_micros == bid);
  CHECK(d.dim(Dim::kCampaignId) == "camp");
  CHECK(d.user_agent == "ua");
  CHECK(d.fraud_signals == 0);
  CHECK(d.lat_e4 == kNoCoordinate);
  CHECK(d.browser_version.empty());
}

TEST_CASE("committed records are read back in order across segments", "[wal]") {
  std::string dir = TempDir();
  WalWriter::Options options{dir, true, 4096};
  auto w = WalWriter::Open(options, 1);
  REQUIRE(w.ok());
  for (int group = 0; group < 20; ++group) {
    for (int i = 0; i < 10; ++i) {
      (*w)->Append("record-" + std::to_string(group * 10 + i) + std::string(100, '.'));
    }
    REQUIRE((*w)->Commit().ok());
  }
  auto segments = ListWalSegments(dir);
  REQUIRE(segments.ok());
  CHECK(segments->size() > 1);  // rotated at 4 KiB
  std::vector<std::string> all;
  for (const auto& seg : *segments) {
    for (auto& r : ReadAll(seg.path)) all.push_back(r);
  }
  REQUIRE(all.size() == 200);
  for (int i = 0; i < 200; ++i)
    CHECK(all[i] == "record-" + std::to_string(i) + std::string(100, '.'));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a segment cut at any byte yields exactly the whole records before the cut", "[wal]") {
  std::string dir = TempDir();
  {
    auto w = WalWriter::Open({dir, false, 1 << 20}, 7);
    REQUIRE(w.ok());
    for (int i = 0; i < 5; ++i) {
      (*w)->Append(std::string(10 + i, static_cast<char>('a' + i)));
      REQUIRE((*w)->Commit().ok());
    }
  }
  auto segments = ListWalSegments(dir);
  REQUIRE(segments->size() == 1);
  CHECK((*segments)[0].sequence == 7);
  std::string path = (*segments)[0].path;
  std::string full = ReadFile(path);
  // Record boundaries: header 16, then 8 + (10 + i) bytes each.
  std::vector<size_t> ends;
  size_t at = kWalHeaderBytes;
  for (int i = 0; i < 5; ++i) ends.push_back(at += kWalRecordHeaderBytes + 10 + i);
  REQUIRE(ends.back() == full.size());
  for (size_t cut = 0; cut <= full.size(); ++cut) {
    WriteFile(path, full.substr(0, cut));
    WalScan scan;
    auto records = ReadAll(path, &scan);
    size_t whole = std::count_if(ends.begin(), ends.end(), [&](size_t e) { return e <= cut; });
    CAPTURE(cut);
    CHECK(records.size() == whole);
    CHECK(scan.problem.empty() ==
          (cut == full.size() || (whole > 0 && ends[whole - 1] == cut) || cut == kWalHeaderBytes));
    if (cut >= kWalHeaderBytes)
      CHECK(scan.valid_bytes == (whole ? ends[whole - 1] : kWalHeaderBytes));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("a flipped bit stops the scan at the damaged record", "[wal]") {
  std::string dir = TempDir();
  {
    auto w = WalWriter::Open({dir, false, 1 << 20}, 1);
    REQUIRE(w.ok());
    for (int i = 0; i < 3; ++i) (*w)->Append("payload-" + std::to_string(i));
    REQUIRE((*w)->Commit().ok());
  }
  std::string path = (*ListWalSegments(dir))[0].path;
  std::string full = ReadFile(path);
  size_t second = kWalHeaderBytes + kWalRecordHeaderBytes + 9;
  for (size_t byte = second; byte < second + kWalRecordHeaderBytes + 9; ++byte) {
    std::string damaged = full;
    damaged[byte] ^= 0x10;
    WriteFile(path, damaged);
    WalScan scan;
    auto records = ReadAll(path, &scan);
    CAPTURE(byte);
    CHECK(records.size() == 1);
    CHECK_FALSE(scan.problem.empty());
    CHECK(scan.valid_bytes == second);
  }
  WriteFile(path, full + "garbage appended");
  WalScan scan;
  CHECK(ReadAll(path, &scan).size() == 3);
  CHECK_FALSE(scan.problem.empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("discarded records never reach the log", "[wal]") {
  std::string dir = TempDir();
  auto w = WalWriter::Open({dir, true, 1 << 20}, 1);
  REQUIRE(w.ok());
  (*w)->Append("kept");
  REQUIRE((*w)->Commit().ok());
  (*w)->Append("dropped");
  (*w)->Discard();
  REQUIRE((*w)->Commit().ok());
  CHECK(ReadAll((*ListWalSegments(dir))[0].path) == std::vector<std::string>{"kept"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("a commit whose fdatasync runs on a syncer thread reads back the same", "[wal]") {
  std::string dir = TempDir();
  auto w = WalWriter::Open({dir, true, 4096}, 1);
  REQUIRE(w.ok());
  std::atomic<int> wakeups{0};
  FileSyncer syncer("test-fs", [&] { wakeups.fetch_add(1); });
  for (int group = 0; group < 20; ++group) {
    for (int i = 0; i < 10; ++i)
      (*w)->Append("r" + std::to_string(group * 10 + i) + std::string(50, '.'));
    REQUIRE((*w)->Write().ok());
    REQUIRE((*w)->needs_sync());
    uint64_t sequence = (*w)->current_sequence();
    syncer.Start((*w)->fd());
    while (!syncer.done()) std::this_thread::yield();
    CHECK(syncer.sync_errno() == 0);
    CHECK((*w)->current_sequence() == sequence);  // no rotation before the sync is finished
    REQUIRE((*w)->FinishSync(syncer.sync_errno()).ok());
    CHECK_FALSE((*w)->needs_sync());
  }
  CHECK(wakeups.load() == 20);
  auto segments = ListWalSegments(dir);
  REQUIRE(segments.ok());
  CHECK(segments->size() > 1);  // rotated at 4 KiB, after the syncs
  std::vector<std::string> all;
  for (const auto& seg : *segments) {
    for (auto& r : ReadAll(seg.path)) all.push_back(r);
  }
  REQUIRE(all.size() == 200);
  for (int i = 0; i < 200; ++i) CHECK(all[i] == "r" + std::to_string(i) + std::string(50, '.'));
  std::filesystem::remove_all(dir);
}

TEST_CASE("a failed fdatasync cuts its group off the log; later commits go on", "[wal]") {
  std::string dir = TempDir();
  auto w = WalWriter::Open({dir, true, 1 << 20}, 1);
  REQUIRE(w.ok());
  (*w)->Append("kept");
  REQUIRE((*w)->Commit().ok());
  uint64_t synced = (*w)->committed_bytes();
  (*w)->Append("in doubt");
  REQUIRE((*w)->Write().ok());
  CHECK((*w)->committed_bytes() == synced);  // written is not durable: no checkpoint may pass it
  absl::Status s = (*w)->FinishSync(EIO);
  CHECK(s.code() == absl::StatusCode::kUnavailable);
  CHECK(!(*w)->broken());
  CHECK((*w)->committed_bytes() == synced);
  (*w)->Append("later");
  CHECK((*w)->Commit().ok());
  auto segments = ListWalSegments(dir);
  REQUIRE(segments.ok());
  CHECK(ReadAll((*segments)[0].path) == std::vector<std::string>{"kept", "later"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("the syncer reports fdatasync's errno", "[wal]") {
  FileSyncer syncer("test-fs", [] {});
  CHECK(syncer.done());  // idle
  std::string dir = TempDir();
  int fd = ::open((dir + "/f").c_str(), O_CREAT | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "x", 1) == 1);
  syncer.Start(fd);
  while (!syncer.done()) std::this_thread::yield();
  CHECK(syncer.sync_errno() == 0);
  ::close(fd);
  syncer.Start(fd);  // closed: EBADF
  while (!syncer.done()) std::this_thread::yield();
  CHECK(syncer.sync_errno() == EBADF);
  std::filesystem::remove_all(dir);
}

}  // namespace adpulse
