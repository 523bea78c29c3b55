#include "state/click_attribution.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "state/dedup_index.h"
#include "storage/click_store.h"

namespace adpulse {
namespace {

// The stored click's layout version (docs/formats/clicks.md).
constexpr uint8_t kClickFormat = 1;

// The store's key of a click: the 128-bit hash of its event_id that dedup uses too, big-endian.
// Fixed and short, so the memtable compares keys in one step.
std::string ClickKey(std::string_view click_id) {
  absl::uint128 h = DedupIndex::Fingerprint(click_id);
  std::string k(16, '\0');
  uint64_t parts[2] = {absl::Uint128High64(h), absl::Uint128Low64(h)};
  for (int p = 0; p < 2; ++p) {
    for (int i = 0; i < 8; ++i) k[p * 8 + i] = static_cast<char>(parts[p] >> (56 - 8 * i));
  }
  return k;
}

}  // namespace

ClickAttribution::ClickAttribution(ClickStore& store, const AttributionOptions& options)
    : store_(store), options_(options) {
  if (options_.enabled) writer_ = std::thread([this] { WriterLoop(); });
}

ClickAttribution::~ClickAttribution() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
}

void ClickAttribution::WriteClicksAsync(Clicks clicks, std::function<void(absl::Status)> done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({std::move(clicks), std::move(done)});
  }
  cv_.notify_one();
}

void ClickAttribution::WriterLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything written
    std::deque<Pending> group;
    group.swap(queue_);
    lock.unlock();
    // One write and one sync for every request that queued while the last one ran.
    Clicks all;
    for (Pending& p : group) {
      for (auto& c : p.clicks) all.push_back(std::move(c));
    }
    absl::Status s = WriteClicks(all);
    for (Pending& p : group) p.done(s);
    lock.lock();
  }
}

std::string ClickAttribution::EncodeClick(const Event& click) {
  // u8 version, u8 verdict flags, i64 LE timestamp, then each dimension as u16 LE length, bytes.
  size_t size = 2 + 8 + 2 * kDimCount;
  for (std::string_view d : click.dims) size += d.size();
  std::string out;
  out.reserve(size);
  out.push_back(static_cast<char>(kClickFormat));
  out.push_back(static_cast<char>(click.fraud_flags));
  out.append(reinterpret_cast<const char*>(&click.timestamp_ms), 8);
  for (std::string_view d : click.dims) {
    uint16_t n = static_cast<uint16_t>(d.size());
    out.append(reinterpret_cast<const char*>(&n), 2);
    out.append(d);
  }
  return out;
}

bool ClickAttribution::DecodeClick(std::string_view value, StoredClick* out) {
  if (value.size() < 10 || static_cast<uint8_t>(value[0]) != kClickFormat) return false;
  out->invalid = value[1] != 0;
  std::memcpy(&out->timestamp_ms, value.data() + 2, 8);
  value.remove_prefix(10);
  for (std::string_view& d : out->dims) {
    if (value.size() < 2) return false;
    uint16_t n;
    std::memcpy(&n, value.data(), 2);
    value.remove_prefix(2);
    if (value.size() < n) return false;
    d = value.substr(0, n);
    value.remove_prefix(n);
  }
  return value.empty();
}

ClickAttribution::Clicks ClickAttribution::PrepareClicks(const Event* events, size_t n) const {
  Clicks clicks;
  if (!options_.enabled) return clicks;
  for (size_t i = 0; i < n; ++i) {
    const Event& e = events[i];
    if (e.type != EventType::kClick || e.event_id.empty()) continue;
    clicks.emplace_back(ClickKey(e.event_id), EncodeClick(e));
  }
  return clicks;
}

absl::Status ClickAttribution::WriteClicks(const Clicks& clicks) {
  if (clicks.empty()) return absl::OkStatus();
  absl::Status s = store_.Put(clicks);
  if (!s.ok()) {
    if (write_failures_.fetch_add(1, std::memory_order_relaxed) % 1000 == 0) {
      LOG_ERROR("attribution: {} clicks not indexed (their conversions will count as unknown): {}",
                clicks.size(), Message(s));
    }
    return s;
  }
  clicks_indexed_.fetch_add(clicks.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ClickAttribution::Process(Event* events, size_t n, StableArena& arena) {
  absl::Status s = Attribute(events, n, arena);
  if (!s.ok()) return s;
  return WriteClicks(PrepareClicks(events, n));
}

absl::Status ClickAttribution::Attribute(Event* events, size_t n, StableArena& arena) {
  if (!options_.enabled) return absl::OkStatus();
  // A conversion may name a click of the same request (taken from the request: it is not in the
  // store yet; the first of a reused id, as the store keeps); the timestamps, not the order,
  // decide the window.
  absl::flat_hash_map<std::string_view, size_t> clicks_here;
  bool conversions = false;
  for (size_t i = 0; i < n; ++i) {
    if (events[i].type == EventType::kConversion) conversions = true;
  }
  if (!conversions) return absl::OkStatus();
  for (size_t i = 0; i < n; ++i) {
    if (events[i].type == EventType::kClick) clicks_here.emplace(events[i].event_id, i);
  }
  for (size_t i = 0; i < n; ++i) {
    Event& e = events[i];
    if (e.type != EventType::kConversion) continue;
    if (e.click_id.empty()) {
      e.attribution = Attribution::kNoClickId;
      outcomes_[static_cast<int>(e.attribution)].fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    StoredClick click;
    bool found = false;
    auto here = clicks_here.find(e.click_id);
    std::optional<std::string> stored;
    if (here != clicks_here.end()) {
      const Event& c = events[here->second];
      click.timestamp_ms = c.timestamp_ms;
      click.invalid = c.invalid();
      click.dims = c.dims;
      found = true;
    } else {
      auto got = store_.Get(ClickKey(e.click_id));
      if (!got.ok()) return got.status();
      if (got->has_value()) {
        stored = std::move(**got);
        found = DecodeClick(*stored, &click);
        if (!found) {
          // Refusing the request would refuse its every resend too: the click is lost instead.
          if (unreadable_.fetch_add(1, std::memory_order_relaxed) % 1000 == 0) {
            LOG_WARN("attribution: the stored click {} cannot be read; counted as unknown",
                     std::string(e.click_id));
          }
        }
      }
    }
    if (!found) {
      e.attribution = Attribution::kUnknownClick;
    } else if (click.invalid) {
      e.attribution = Attribution::kInvalidClick;
    } else if (e.timestamp_ms < click.timestamp_ms ||
               e.timestamp_ms - click.timestamp_ms > options_.window_ms) {
      e.attribution = Attribution::kOutsideWindow;
    } else {
      e.attribution = Attribution::kAttributed;
      for (int d = 0; d < kDimCount; ++d) {
        // Money stays in the currency it was sent in (USD when the event named none).
        if (d == static_cast<int>(Dim::kCurrency)) continue;
        e.dims[d] = stored ? arena.Copy(click.dims[d]) : click.dims[d];
      }
    }
    outcomes_[static_cast<int>(e.attribution)].fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

}  // namespace adpulse
