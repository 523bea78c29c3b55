// libFuzzer target: any bytes as a write-ahead-log segment. The reader must never crash or read
// out of bounds; every record it returns must decode or be reported, and valid_bytes must be a
// record boundary inside the input.
#include <cstdint>
#include <string_view>

#include "base/status_macros.h"
#include "storage/wal.h"
#include "storage/wal_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  uint64_t last_end = 0;
  auto scan = adpulse::ScanWalData(bytes, [&](uint64_t offset, std::string_view payload) {
    ADPULSE_CHECK(offset >= last_end);
    last_end = offset + adpulse::kWalRecordHeaderBytes + payload.size();
    adpulse::Event e;
    (void)adpulse::DecodeEventRecord(payload, e);
    return absl::OkStatus();
  });
  if (scan.ok()) {
    ADPULSE_CHECK(scan->valid_bytes <= size);
    ADPULSE_CHECK(scan->records == 0 || scan->valid_bytes == last_end);
  }
  return 0;
}
