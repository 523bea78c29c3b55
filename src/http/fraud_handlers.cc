// GET /v1/fraud (who and what was flagged over a range) and GET /v1/fraud/events (the flagged
// events of one campaign, with their signals: "why was this click not billed?"). Both read the
// logged events themselves (archive and live log), where every verdict is kept with its signals,
// so they answer for IPs and users, which no cube holds. Reading raw events costs time in
// proportion to the range's traffic, so the scan runs on a thread of its own, never on an I/O
// thread or a worker, at most kMaxScans at once, over at most options.fraud_max_range_ms.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "base/json_writer.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/time_parse.h"
#include "fraud/signals.h"
#include "http/api_internal.h"
#include "ingest/pipeline.h"
#include "storage/event_log_scan.h"

namespace adpulse {
using namespace api_internal;

namespace {

constexpr int kMaxScans = 2;
std::atomic<int> g_scans{0};

struct Range {
  int64_t start_ms = 0, end_ms = 0;
};

absl::StatusOr<Range> ReadRange(const ParsedTarget& t, int64_t max_range_ms) {
  const std::string* start = t.Get("start");
  const std::string* end = t.Get("end");
  Range r;
  r.end_ms = NowMs() + 60'000;
  r.start_ms = r.end_ms - 3'600'000 - 60'000;  // the last hour by default
  if (start) {
    ASSIGN_OR_RETURN(r.start_ms, ParseTimeMs("start", *start));
  }
  if (end) {
    ASSIGN_OR_RETURN(r.end_ms, ParseTimeMs("end", *end));
  }
  if (r.end_ms <= r.start_ms) return absl::InvalidArgumentError("end must be after start");
  if (r.end_ms - r.start_ms > max_range_ms) {
    return absl::InvalidArgumentError(
        fmt::format("the range is {} s long; fraud reports read raw events and cover at most {} s "
                    "(api.fraud_max_range_s); ask for a shorter range, or use fraud_* metrics of "
                    "/v1/metrics for long ones",
                    (r.end_ms - r.start_ms) / 1000, max_range_ms / 1000));
  }
  return r;
}

absl::StatusOr<int> ReadLimit(const ParsedTarget& t, int def, int max) {
  const std::string* s = t.Get("limit");
  if (!s) return def;
  char* end = nullptr;
  long v = std::strtol(s->c_str(), &end, 10);
  if (s->empty() || *end != '\0' || v < 1 || v > max) {
    return absl::InvalidArgumentError(
        fmt::format("limit '{}' must be a number from 1 to {}", *s, max));
  }
  return static_cast<int>(v);
}

void WriteSignals(JsonWriter& w, uint32_t signals) {
  w.BeginArray();
  for (int s = 0; s < kSignalCount; ++s) {
    if (signals & (1u << s)) w.String(SignalName(static_cast<Signal>(s)));
  }
  w.EndArray();
}

// Flagged events and signal counts of one key (an IP, a user, a publisher, a campaign).
struct Tally {
  uint64_t events = 0, invalid = 0;
  uint32_t by_signal[kSignalCount] = {};
  void Add(const Event& e) {
    ++events;
    if (!e.invalid()) return;
    ++invalid;
    for (int s = 0; s < kSignalCount; ++s) by_signal[s] += (e.fraud_signals >> s) & 1;
  }
};

using TallyMap = absl::flat_hash_map<std::string, Tally>;

void WriteTop(JsonWriter& w, std::string_view key_name, const TallyMap& map, int limit,
              bool with_share) {
  std::vector<const std::pair<const std::string, Tally>*> rows;
  for (const auto& kv : map) {
    if (kv.second.invalid > 0 || with_share) rows.push_back(&kv);
  }
  // Most invalid events first; with shares, the highest share first (a small publisher that is
  // all bots before a big one with a little).
  auto worse = [with_share](const auto* a, const auto* b) {
    const Tally &x = a->second, &y = b->second;
    if (with_share && x.invalid * y.events != y.invalid * x.events) {
      return x.invalid * y.events > y.invalid * x.events;
    }
    return x.invalid != y.invalid ? x.invalid > y.invalid : a->first < b->first;
  };
  size_t n = std::min(rows.size(), static_cast<size_t>(limit));
  std::partial_sort(rows.begin(), rows.begin() + static_cast<ptrdiff_t>(n), rows.end(), worse);
  w.BeginArray();
  for (size_t i = 0; i < n; ++i) {
    const Tally& t = rows[i]->second;
    w.BeginObject().Key(key_name).String(rows[i]->first);
    w.Key("events").Uint(t.events).Key("invalid_events").Uint(t.invalid);
    if (with_share) {
      w.Key("invalid_share").Double(t.events ? static_cast<double>(t.invalid) / t.events : 0);
    }
    w.Key("signals").BeginObject();
    for (int s = 0; s < kSignalCount; ++s) {
      if (t.by_signal[s]) w.Key(SignalName(static_cast<Signal>(s))).Uint(t.by_signal[s]);
    }
    w.EndObject().EndObject();
  }
  w.EndArray();
}

}  // namespace

bool Api::Impl::StartScan(Responder& respond) {
  if (g_scans.fetch_add(1) >= kMaxScans) {
    g_scans.fetch_sub(1);
    HttpResponse r = ErrorResponse(503, "fraud reports are busy (two scans run); retry shortly");
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
    return false;
  }
  return true;
}

EventLogScanOptions Api::Impl::ScanOptionsFor(int shard, int64_t from, int64_t to) const {
  const ApiOptions& opt = api.options_;
  EventLogScanOptions o;
  o.shard_wal_dir =
      (std::filesystem::path(opt.wal_dir) / fmt::format("shard-{:03}", shard)).string();
  o.archiver = opt.archiver;
  o.shard = shard;
  o.from_ms = from;
  o.to_ms = to;
  o.max_future_ms = opt.validation.max_future_ms;
  return o;
}

void Api::Impl::FraudReport(const Caller& caller, const ParsedTarget& t, Responder respond) {
  const ApiOptions& opt = api.options_;
  auto range = ReadRange(t, opt.fraud_max_range_ms);
  auto limit = ReadLimit(t, 10, 1000);
  if (!range.ok() || !limit.ok()) {
    respond(ErrorResponse(400, Message(range.ok() ? limit.status() : range.status())));
    return;
  }
  if (opt.wal_dir.empty()) {
    respond(ErrorResponse(404, "fraud reports need the log (this daemon keeps none)"));
    return;
  }
  if (!caller.Reads()) {
    respond(ErrorResponse(403, "fraud reports need scope read or advertiser:<id>"));
    return;
  }
  if (!StartScan(respond)) return;
  // An advertiser's token sees the report of its own events only.
  std::thread([this, caller, r = *range, limit = *limit, respond = std::move(respond)]() mutable {
    TallyMap ips, users, publishers, campaigns;
    uint64_t events = 0, invalid = 0;
    uint64_t by_signal[kSignalCount] = {};
    absl::Status status;
    for (int shard = 0; shard < pipeline.shard_count() && status.ok(); ++shard) {
      status = ScanLoggedEvents(ScanOptionsFor(shard, r.start_ms, r.end_ms), [&](const Event& e) {
        if (!caller.Allows(e.dim(Dim::kAdvertiserId))) return true;
        ++events;
        publishers[std::string(e.dim(Dim::kPublisherId))].Add(e);
        campaigns[std::string(e.dim(Dim::kCampaignId))].Add(e);
        if (!e.invalid()) return true;
        ++invalid;
        for (int s = 0; s < kSignalCount; ++s) by_signal[s] += (e.fraud_signals >> s) & 1;
        ips[std::string(e.ip_address)].Add(e);
        users[std::string(e.user_id)].Add(e);
        return true;
      });
    }
    g_scans.fetch_sub(1);
    if (!status.ok()) {
      respond(ErrorResponse(503, fmt::format("the log could not be read: {}", Message(status))));
      return;
    }
    JsonWriter w;
    w.BeginObject()
        .Key("start")
        .Int(r.start_ms)
        .Key("end")
        .Int(r.end_ms)
        .Key("events")
        .Uint(events)
        .Key("invalid_events")
        .Uint(invalid)
        .Key("invalid_share")
        .Double(events ? static_cast<double>(invalid) / events : 0)
        .Key("signals")
        .BeginObject();
    for (int s = 0; s < kSignalCount; ++s) {
      w.Key(SignalName(static_cast<Signal>(s))).Uint(by_signal[s]);
    }
    w.EndObject();
    w.Key("top_ips");
    WriteTop(w, "ip_address", ips, limit, false);
    w.Key("top_users");
    WriteTop(w, "user_id", users, limit, false);
    w.Key("top_campaigns");
    WriteTop(w, "campaign_id", campaigns, limit, false);
    w.Key("top_publishers");
    WriteTop(w, "publisher_id", publishers, limit, false);
    // Every publisher's share of invalid traffic, worst first: the figure networks act on.
    w.Key("publishers");
    WriteTop(w, "publisher_id", publishers, static_cast<int>(publishers.size()), true);
    w.EndObject();
    respond(JsonResponse(w.Take()));
  }).detach();
}

void Api::Impl::FraudEvents(const Caller& caller, const ParsedTarget& t, Responder respond) {
  const ApiOptions& opt = api.options_;
  const std::string* campaign = t.Get("campaign_id");
  if (!campaign || campaign->empty()) {
    respond(ErrorResponse(400, "campaign_id is required"));
    return;
  }
  auto range = ReadRange(t, opt.fraud_max_range_ms);
  auto limit = ReadLimit(t, 100, 10'000);
  if (!range.ok() || !limit.ok()) {
    respond(ErrorResponse(400, Message(range.ok() ? limit.status() : range.status())));
    return;
  }
  uint32_t wanted_signals = 0;
  for (const std::string& name : t.GetAll("signal")) {
    for (const std::string& one : SplitComma(name)) {
      std::optional<Signal> s = ParseSignal(one);
      if (!s) {
        std::string all;
        for (int i = 0; i < kSignalCount; ++i) {
          all += fmt::format("{}{}", i ? ", " : "", SignalName(static_cast<Signal>(i)));
        }
        respond(ErrorResponse(400, fmt::format("signal '{}' is not one of {}", one, all)));
        return;
      }
      wanted_signals |= SignalBit(*s);
    }
  }
  const std::string* event_id = t.Get("event_id");
  const std::string* valid_param = t.Get("include_valid");
  bool include_valid = valid_param && (*valid_param == "true" || *valid_param == "1");
  if (opt.wal_dir.empty()) {
    respond(ErrorResponse(404, "fraud reports need the log (this daemon keeps none)"));
    return;
  }
  if (!caller.Reads()) {
    respond(ErrorResponse(403, "fraud reports need scope read or advertiser:<id>"));
    return;
  }
  if (!StartScan(respond)) return;
  std::thread([this, caller, r = *range, limit = *limit, campaign = *campaign, wanted_signals,
               event_id = event_id ? *event_id : std::string(), include_valid,
               respond = std::move(respond)]() mutable {
    JsonWriter w;
    w.BeginObject()
        .Key("campaign_id")
        .String(campaign)
        .Key("start")
        .Int(r.start_ms)
        .Key("end")
        .Int(r.end_ms)
        .Key("events")
        .BeginArray();
    int count = 0;
    bool truncated = false;
    int shard = pipeline.ShardOf(campaign);
    absl::Status status =
        ScanLoggedEvents(ScanOptionsFor(shard, r.start_ms, r.end_ms), [&](const Event& e) {
          if (e.dim(Dim::kCampaignId) != campaign) return true;
          if (!caller.Allows(e.dim(Dim::kAdvertiserId))) return true;
          if (!event_id.empty() && e.event_id != event_id) return true;
          if (!include_valid && !e.invalid()) return true;
          if (wanted_signals && !(e.fraud_signals & wanted_signals)) return true;
          if (count == limit) {
            truncated = true;
            return false;
          }
          ++count;
          w.BeginObject()
              .Key("event_id")
              .String(e.event_id)
              .Key("event_type")
              .String(EventTypeName(e.type))
              .Key("timestamp")
              .Int(e.timestamp_ms)
              .Key("invalid")
              .Bool(e.invalid())
              .Key("score")
              .Double(e.fraud_score_milli / 1000.0)
              .Key("signals");
          WriteSignals(w, e.fraud_signals);
          w.Key("bid_price").String(MicrosToDecimal(e.bid_micros, true));
          for (Dim d : {Dim::kAdId, Dim::kAdvertiserId, Dim::kPublisherId, Dim::kPlacementId,
                        Dim::kCountry, Dim::kCity, Dim::kDeviceType, Dim::kOs, Dim::kBrowser}) {
            w.Key(DimName(d)).String(e.dim(d));
          }
          w.Key("browser_version").String(e.browser_version);
          w.Key("os_version").String(e.os_version);
          w.Key("user_id").String(e.user_id);
          w.Key("session_id").String(e.session_id);
          w.Key("ip_address").String(e.ip_address);
          w.Key("user_agent").String(e.user_agent);
          if (e.lat_e4 != kNoCoordinate) {
            w.Key("latitude").Double(e.lat_e4 / 1e4).Key("longitude").Double(e.lon_e4 / 1e4);
          }
          if (!e.click_id.empty()) w.Key("click_id").String(e.click_id);
          w.EndObject();
          return true;
        });
    g_scans.fetch_sub(1);
    if (!status.ok()) {
      respond(ErrorResponse(503, fmt::format("the log could not be read: {}", Message(status))));
      return;
    }
    w.EndArray().Key("count").Int(count).Key("truncated").Bool(truncated).EndObject();
    respond(JsonResponse(w.Take()));
  }).detach();
}

}  // namespace adpulse
