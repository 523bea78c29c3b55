#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "base/json_writer.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/time_parse.h"
#include "http/api_internal.h"
#include "state/shard_writer.h"
#include "window/query.h"

namespace adpulse {
namespace api_internal {

const std::vector<Metric> kDefaultMetrics = {
    Metric::kImpressions, Metric::kClicks,    Metric::kConversions, Metric::kSpend,
    Metric::kCtr,         Metric::kCvr,       Metric::kUniqueUsers, Metric::kFraudImpressions,
    Metric::kFraudClicks, Metric::kFraudSpend};

HttpResponse JsonResponse(std::string body) {
  HttpResponse r;
  r.body = std::move(body);
  r.body.push_back('\n');
  return r;
}

std::string Lower(std::string_view s) {
  return absl::AsciiStrToLower(absl::string_view(s.data(), s.size()));
}

std::string MediaType(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  return Lower(t);
}

std::string DimList() {
  std::vector<std::string_view> names;
  for (int i = 0; i < kDimCount; ++i) names.push_back(DimName(static_cast<Dim>(i)));
  return fmt::format("{}", fmt::join(names, ", "));
}

std::string MetricList() {
  std::vector<std::string_view> names;
  for (int i = 0; i < kMetricCount; ++i) names.push_back(MetricName(static_cast<Metric>(i)));
  return fmt::format("{}", fmt::join(names, ", "));
}

absl::StatusOr<Dim> DimParam(std::string_view param, std::string_view value) {
  auto d = ParseDim(value);
  if (!d) {
    return absl::InvalidArgumentError(
        fmt::format("{}: '{}' is not a dimension; use one of {}", param, value, DimList()));
  }
  return *d;
}

absl::StatusOr<Metric> MetricParam(std::string_view param, std::string_view value) {
  auto m = ParseMetric(value);
  if (!m) {
    return absl::InvalidArgumentError(
        fmt::format("{}: '{}' is not a metric; use one of {}", param, value, MetricList()));
  }
  return *m;
}

std::vector<std::string> SplitComma(std::string_view s) {
  std::vector<std::string> out;
  while (true) {
    size_t comma = s.find(',');
    std::string_view part = s.substr(0, comma);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (!part.empty()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

absl::Status SetRange(QueryRequest& q, int64_t start_ms, int64_t end_ms, int64_t max_buckets) {
  if (end_ms <= start_ms) {
    return absl::InvalidArgumentError(
        fmt::format("end ({}) must be after start ({})", end_ms, start_ms));
  }
  q.requested_start_ms = start_ms;
  q.requested_end_ms = end_ms;
  // Minutes are the finest stored resolution: the range is widened to whole minutes.
  q.spec.start_ms = FloorTo(start_ms, kMinuteMs);
  q.spec.end_ms = CeilTo(end_ms, kMinuteMs);
  int64_t unit = 0;
  switch (q.spec.granularity) {
    case Granularity::kMinute:
      unit = kMinuteMs;
      break;
    case Granularity::kFiveMinute:
      unit = 5 * kMinuteMs;
      break;
    case Granularity::kHour:
      unit = kHourMs;
      break;
    case Granularity::kDay:
      // Days too: a range of millennia by day was minutes of work (found by tests/fuzz/api_fuzz).
      unit = kDayMs;
      break;
    default:
      break;
  }
  if (unit > 0 && (q.spec.end_ms - q.spec.start_ms) / unit > max_buckets) {
    return absl::InvalidArgumentError(fmt::format(
        "granularity: {} buckets of {} would be returned (limit {}); use a coarser granularity "
        "or a shorter range",
        (q.spec.end_ms - q.spec.start_ms) / unit, GranularityName(q.spec.granularity),
        max_buckets));
  }
  return absl::OkStatus();
}

HttpResponse StatusResponse(const absl::Status& s) {
  return ErrorResponse(s.code() == absl::StatusCode::kPermissionDenied ? 403 : 400, Message(s));
}

namespace {

std::string AdvertiserList(const Caller& caller) {
  std::string out;
  for (const std::string& a : caller.advertisers) {
    out += fmt::format("{}'{}'", out.empty() ? "" : ", ", a);
  }
  return out;
}

// Forces the caller's advertisers on the query's filters.
absl::Status ScopeQuery(const Caller& caller, QueryRequest& q) {
  if (caller.ReadsAll()) return absl::OkStatus();
  if (!caller.Has(Scope::kAdvertiser) || caller.advertisers.empty()) {
    return absl::PermissionDeniedError(
        fmt::format("token '{}' has no scope read or advertiser:<id>", caller.name));
  }
  for (auto& [dim, values] : q.spec.filters) {
    if (dim != Dim::kAdvertiserId) continue;
    std::vector<std::string> kept;
    for (std::string& v : values) {
      if (caller.Allows(v) && std::find(kept.begin(), kept.end(), v) == kept.end()) {
        kept.push_back(std::move(v));
      }
    }
    if (kept.empty()) {
      return absl::PermissionDeniedError(
          fmt::format("token '{}' reads advertiser {} only", caller.name, AdvertiserList(caller)));
    }
    values = std::move(kept);
    return absl::OkStatus();
  }
  q.spec.filters.push_back({Dim::kAdvertiserId, caller.advertisers});
  return absl::OkStatus();
}

}  // namespace

bool ScopedTo(const Caller& caller, const QuerySpec& spec) {
  if (caller.ReadsAll()) return true;
  for (const auto& [dim, values] : spec.filters) {
    if (dim != Dim::kAdvertiserId || values.empty()) continue;
    for (const std::string& v : values) {
      if (!caller.Allows(v)) return false;
    }
    return true;
  }
  return false;
}

absl::Status SelectCube(const CubeCatalog& catalog, const Caller& caller, QueryRequest& q) {
  RETURN_IF_ERROR(ScopeQuery(caller, q));
  std::vector<Dim> needed = q.spec.group_by;
  for (const auto& [dim, values] : q.spec.filters) needed.push_back(dim);
  q.spec.need_users =
      std::find(q.metrics.begin(), q.metrics.end(), Metric::kUniqueUsers) != q.metrics.end();
  auto cube = catalog.Select(needed, q.spec.need_users);
  if (!cube.ok() && !caller.ReadsAll()) {
    // The forced filter is what the caller did not write: say so.
    return absl::InvalidArgumentError(
        fmt::format("token '{}' reads advertiser {} only, so its queries are answered from cubes "
                    "with advertiser_id: {}",
                    caller.name, AdvertiserList(caller), Message(cube.status())));
  }
  if (!cube.ok()) return cube.status();
  q.spec.cube = *cube;
  return absl::OkStatus();
}

absl::Status SelectCubeForDefaults(const CubeCatalog& catalog, const Caller& caller,
                                   bool metrics_defaulted, QueryRequest& q) {
  QueryRequest without_users = q;
  absl::Status s = SelectCube(catalog, caller, q);
  if (s.ok() || !metrics_defaulted || caller.ReadsAll() ||
      s.code() == absl::StatusCode::kPermissionDenied) {
    return s;
  }
  auto& m = without_users.metrics;
  m.erase(std::remove(m.begin(), m.end(), Metric::kUniqueUsers), m.end());
  if (!SelectCube(catalog, caller, without_users).ok()) return s;
  q = std::move(without_users);
  return absl::OkStatus();
}

void AddGroupBy(QueryRequest& q, Dim d) {
  auto& g = q.spec.group_by;
  if (std::find(g.begin(), g.end(), d) == g.end()) g.push_back(d);
}

void AddMetric(QueryRequest& q, Metric m) {
  if (std::find(q.metrics.begin(), q.metrics.end(), m) == q.metrics.end()) q.metrics.push_back(m);
}

absl::Status AddFilter(QueryRequest& q, Dim dim, std::string value) {
  for (auto& [d, values] : q.spec.filters) {
    if (d == dim) {
      values.push_back(std::move(value));
      return absl::OkStatus();
    }
  }
  q.spec.filters.push_back({dim, {std::move(value)}});
  return absl::OkStatus();
}

CsvWriter& CsvWriter::Field(std::string_view value) {
  if (row_started_) out_.push_back(',');
  row_started_ = true;
  if (value.find_first_of(",\"\r\n") == std::string_view::npos) {
    out_.append(value);
    return *this;
  }
  out_.push_back('"');
  for (char c : value) {
    if (c == '"') out_.push_back('"');
    out_.push_back(c);
  }
  out_.push_back('"');
  return *this;
}

CsvWriter& CsvWriter::Micros(MoneySum micros) { return Field(MicrosToDecimal(micros, true)); }

CsvWriter& CsvWriter::Metric(adpulse::Metric m, const Aggregate& a) {
  switch (m) {
    case Metric::kSpend:
      return Micros(a.counters.spend_micros);
    case Metric::kFraudSpend:
      return Micros(a.counters.fraud_spend_micros);
    default:
      break;
  }
  // Everything else exactly as the JSON writes it.
  JsonWriter w;
  WriteMetric(w, m, a);
  std::string s = w.Take();
  return Field(std::string_view(s).substr(s.find(':') + 1));
}

CsvWriter& CsvWriter::EndRow() {
  out_.append("\r\n");
  row_started_ = false;
  return *this;
}

HttpResponse CsvResponse(std::string body) {
  HttpResponse r;
  r.content_type = "text/csv; charset=utf-8; header=present";
  r.body = std::move(body);
  return r;
}

std::string TimeText(int64_t ms, const absl::TimeZone& tz) {
  bool utc = tz == absl::UTCTimeZone();
  return absl::FormatTime(utc ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%dT%H:%M:%S%Ez",
                          absl::FromUnixMillis(ms), tz);
}

absl::Status ReadFormat(std::string_view value, QueryRequest& q) {
  if (value == "csv") {
    q.csv = true;
  } else if (value == "json") {
    q.csv = false;
  } else {
    return absl::InvalidArgumentError(fmt::format("format '{}' is not json or csv", value));
  }
  return absl::OkStatus();
}

absl::Status ReadCommonParams(const ParsedTarget& t, QueryRequest& q, int64_t max_buckets,
                              Granularity default_granularity) {
  if (const std::string* f = t.Get("format")) RETURN_IF_ERROR(ReadFormat(*f, q));
  const std::string* g = t.Get("granularity");
  if (g) {
    auto parsed = ParseGranularity(*g);
    if (!parsed) {
      return absl::InvalidArgumentError(
          fmt::format("granularity '{}' is not one of minute, 5minute, hour, day, all", *g));
    }
    q.spec.granularity = *parsed;
  } else {
    q.spec.granularity = default_granularity;
  }
  if (const std::string* tz = t.Get("tz")) {
    ASSIGN_OR_RETURN(q.spec.tz, ParseTimeZone(*tz));
    q.tz_name = *tz;
  }
  for (const std::string& f : t.GetAll("filter")) {
    size_t colon = f.find(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          fmt::format("filter '{}' must be dimension:value, e.g. filter=country:US", f));
    }
    ASSIGN_OR_RETURN(Dim d, DimParam("filter", f.substr(0, colon)));
    RETURN_IF_ERROR(AddFilter(q, d, f.substr(colon + 1)));
  }
  const std::string* start = t.Get("start");
  const std::string* end = t.Get("end");
  if (!start) return absl::InvalidArgumentError("start is required (epoch ms or RFC 3339)");
  if (!end) return absl::InvalidArgumentError("end is required (epoch ms or RFC 3339)");
  ASSIGN_OR_RETURN(int64_t start_ms, ParseTimeMs("start", *start));
  ASSIGN_OR_RETURN(int64_t end_ms, ParseTimeMs("end", *end));
  return SetRange(q, start_ms, end_ms, max_buckets);
}

void WriteMetric(JsonWriter& w, Metric m, const Aggregate& a) {
  const Counters& c = a.counters;
  w.Key(MetricName(m));
  switch (m) {
    case Metric::kImpressions:
      w.Uint(c.impressions);
      break;
    case Metric::kClicks:
      w.Uint(c.clicks);
      break;
    case Metric::kConversions:
      w.Uint(c.conversions);
      break;
    case Metric::kSpend:
      w.Micros(c.spend_micros);
      break;
    case Metric::kFraudImpressions:
      w.Uint(c.fraud_impressions);
      break;
    case Metric::kFraudClicks:
      w.Uint(c.fraud_clicks);
      break;
    case Metric::kFraudConversions:
      w.Uint(c.fraud_conversions);
      break;
    case Metric::kUnattributedConversions:
      w.Uint(c.unattributed_conversions);
      break;
    case Metric::kFraudSpend:
      w.Micros(c.fraud_spend_micros);
      break;
    case Metric::kUniqueUsers:
      w.Uint(static_cast<uint64_t>(std::llround(a.users.Estimate())));
      break;
    default:
      w.Double(MetricValue(m, a));
      break;
  }
}

void WriteRange(JsonWriter& w, const QuerySpec& spec, const std::string& tz) {
  w.Key("granularity").String(GranularityName(spec.granularity));
  w.Key("start").Int(spec.start_ms).Key("end").Int(spec.end_ms);
  if (!tz.empty()) w.Key("tz").String(tz);
}

void WriteExactCounters(JsonWriter& w, const Counters& c) {
  w.Key("impressions")
      .Uint(c.impressions)
      .Key("clicks")
      .Uint(c.clicks)
      .Key("conversions")
      .Uint(c.conversions)
      .Key("spend")
      .String(MicrosToDecimal(c.spend_micros, true))
      .Key("fraud_impressions")
      .Uint(c.fraud_impressions)
      .Key("fraud_clicks")
      .Uint(c.fraud_clicks)
      .Key("fraud_conversions")
      .Uint(c.fraud_conversions)
      .Key("fraud_spend")
      .String(MicrosToDecimal(c.fraud_spend_micros, true))
      .Key("unattributed_conversions")
      .Uint(c.unattributed_conversions);
}

}  // namespace api_internal
}  // namespace adpulse
