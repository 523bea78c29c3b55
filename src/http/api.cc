#include "http/api.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "base/json_writer.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/time_parse.h"
#include "ingest/gzip.h"
#include "state/shard_writer.h"
#include "window/query.h"

namespace adpulse {

HttpResponse ErrorResponse(unsigned status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  JsonWriter w;
  w.BeginObject().Key("error").String(message).EndObject();
  r.body = w.Take();
  r.body.push_back('\n');
  return r;
}

namespace {

HttpResponse JsonResponse(std::string body) {
  HttpResponse r;
  r.body = std::move(body);
  r.body.push_back('\n');
  return r;
}

std::string Lower(std::string_view s) {
  return absl::AsciiStrToLower(absl::string_view(s.data(), s.size()));
}

// The media type without parameters, lower case: "Application/JSON; charset=utf-8" ->
// "application/json".
std::string MediaType(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  return Lower(t);
}

const std::vector<Metric> kDefaultMetrics = {
    Metric::kImpressions, Metric::kClicks,    Metric::kConversions, Metric::kSpend,
    Metric::kCtr,         Metric::kCvr,       Metric::kUniqueUsers, Metric::kFraudImpressions,
    Metric::kFraudClicks, Metric::kFraudSpend};

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

// The parts common to every aggregate query, before the cube is chosen.
struct QueryRequest {
  QuerySpec spec;
  std::vector<Metric> metrics;
  int64_t requested_start_ms = 0;
  int64_t requested_end_ms = 0;
  std::string tz_name;
};

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

absl::Status SelectCube(const CubeCatalog& catalog, QueryRequest& q) {
  std::vector<Dim> needed = q.spec.group_by;
  for (const auto& [dim, values] : q.spec.filters) needed.push_back(dim);
  q.spec.need_users =
      std::find(q.metrics.begin(), q.metrics.end(), Metric::kUniqueUsers) != q.metrics.end();
  ASSIGN_OR_RETURN(q.spec.cube, catalog.Select(needed, q.spec.need_users));
  return absl::OkStatus();
}

// Repeats are ignored: "campaign_id,campaign_id" groups once.
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

// Reads the query-string form shared by /v1/metrics, /v1/top, /v1/funnel, /v1/billing.
absl::Status ReadCommonParams(const ParsedTarget& t, QueryRequest& q, int64_t max_buckets,
                              Granularity default_granularity) {
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

// "granularity", "start", "end" and, when given, "tz" of an aggregate answer.
void WriteRange(JsonWriter& w, const QuerySpec& spec, const std::string& tz) {
  w.Key("granularity").String(GranularityName(spec.granularity));
  w.Key("start").Int(spec.start_ms).Key("end").Int(spec.end_ms);
  if (!tz.empty()) w.Key("tz").String(tz);
}

// Exact counters as billing reads them: money as strings with 6 decimals.
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
      .String(MicrosToDecimal(c.fraud_spend_micros, true));
}

}  // namespace

struct Api::Impl {
  Api& api;
  const CubeCatalog& catalog;
  Pipeline& pipeline;
  MetricsRegistry& metrics;
  MetricsRegistry::Counter& events_accepted;
  MetricsRegistry::Counter& events_duplicate;
  MetricsRegistry::Counter& events_rejected;
  MetricsRegistry::Counter& requests_rejected_busy;
  MetricsRegistry::Counter& queries;

  Impl(Api& a, const CubeCatalog& c, Pipeline& p, MetricsRegistry& m)
      : api(a),
        catalog(c),
        pipeline(p),
        metrics(m),
        events_accepted(m.GetCounter("adpulse_events_accepted_total",
                                     "Events accepted (new, durable, counted).")),
        events_duplicate(m.GetCounter("adpulse_events_duplicate_total",
                                      "Events dropped as duplicates of an accepted event_id.")),
        events_rejected(
            m.GetCounter("adpulse_events_rejected_total", "Events rejected by validation.")),
        requests_rejected_busy(
            m.GetCounter("adpulse_ingest_saturated_total",
                         "Requests answered 503 because ingestion was saturated.")),
        queries(m.GetCounter("adpulse_queries_total", "Aggregate queries answered.")) {}

  // ---- ingestion ----

  void PostEvents(int producer, HttpRequest&& req, Responder respond) {
    const ApiOptions& opt = api.options_;
    std::string media = MediaType(req.content_type);
    BodyFormat format;
    if (media == "application/json") {
      format = BodyFormat::kJson;
    } else if (media == "application/x-ndjson" || media == "application/ndjson" ||
               media == "application/jsonl" || media == "application/json-seq") {
      format = BodyFormat::kNdjson;
    } else {
      respond(ErrorResponse(
          415, fmt::format("Content-Type '{}' is not supported; send application/json or "
                           "application/x-ndjson",
                           req.content_type.empty() ? "(none)" : req.content_type)));
      return;
    }
    std::string body;
    std::string encoding = Lower(req.content_encoding);
    if (encoding == "gzip" || encoding == "x-gzip" || encoding == "deflate") {
      auto inflated = GunzipBody(req.body, opt.max_decoded_body_bytes, simdjson::SIMDJSON_PADDING);
      if (!inflated.ok()) {
        unsigned status = absl::IsResourceExhausted(inflated.status()) ? 413 : 400;
        respond(ErrorResponse(status, Message(inflated.status())));
        return;
      }
      body = std::move(*inflated);
    } else if (encoding.empty() || encoding == "identity") {
      body = std::move(req.body);
      static_assert(simdjson::SIMDJSON_PADDING <= kBodyPaddingBytes);
      body.reserve(body.size() + simdjson::SIMDJSON_PADDING);  // the server's reserve: no copy
    } else {
      respond(
          ErrorResponse(415, fmt::format("Content-Encoding '{}' is not supported; use gzip or none",
                                         req.content_encoding)));
      return;
    }
    if (!pipeline.TryAdmit()) {
      requests_rejected_busy.fetch_add(1, std::memory_order_relaxed);
      HttpResponse r = ErrorResponse(503, "ingestion is saturated; retry after the given delay");
      r.headers.emplace_back("Retry-After", std::to_string(opt.retry_after_s));
      respond(std::move(r));
      return;
    }
    thread_local EventDecoder decoder;
    auto* request = new IngestRequest();
    absl::Status decoded = decoder.Decode(format, body, opt.validation, NowMs(), request->batch);
    if (!decoded.ok()) {
      delete request;
      pipeline.Release();
      respond(ErrorResponse(400, Message(decoded)));
      return;
    }
    request->on_done = [this, request, respond = std::move(respond)]() {
      std::unique_ptr<IngestRequest> owned(request);
      const IngestBatch& b = owned->batch;
      std::string failure = owned->Failure();
      if (!failure.empty()) {
        // Some events are not durable: the whole request is indeterminate and must be resent
        // (events that did make it are duplicates then).
        pipeline.Release();
        HttpResponse r = ErrorResponse(
            503, fmt::format("events could not be stored: {}; resend the request", failure));
        r.headers.emplace_back("Retry-After", std::to_string(api.options_.retry_after_s));
        respond(std::move(r));
        return;
      }
      uint32_t accepted = owned->CountOutcome(EventOutcome::kAccepted);
      uint32_t duplicates = owned->CountOutcome(EventOutcome::kDuplicate);
      events_accepted.fetch_add(accepted, std::memory_order_relaxed);
      events_duplicate.fetch_add(duplicates, std::memory_order_relaxed);
      events_rejected.fetch_add(b.rejected, std::memory_order_relaxed);
      JsonWriter w;
      w.BeginObject()
          .Key("accepted")
          .Uint(accepted)
          .Key("duplicates")
          .Uint(duplicates)
          .Key("rejected")
          .Uint(b.rejected)
          .Key("errors")
          .BeginArray();
      for (const EventError& e : b.errors) {
        w.BeginObject().Key("index").Uint(e.index);
        if (!e.event_id.empty()) w.Key("event_id").String(e.event_id);
        w.Key("error").String(e.message).EndObject();
      }
      w.EndArray().EndObject();
      pipeline.Release();
      respond(JsonResponse(w.Take()));
    };
    pipeline.SubmitIngest(producer, request);
  }

  // ---- queries ----

  // Runs the query on every shard and calls `finish` with the merged table (on a worker thread).
  void RunQuery(int producer, QuerySpec spec, Responder respond_error,
                std::function<void(ResultTable&&, const QuerySpec&)> finish) {
    queries.fetch_add(1, std::memory_order_relaxed);
    struct Job {
      QuerySpec spec;
      std::vector<ResultTable> partials;
      std::vector<absl::Status> statuses;
      std::unique_ptr<ShardFanOut> fan_out;
    };
    auto* job = new Job{std::move(spec), {}, {}, nullptr};
    job->partials.resize(pipeline.shard_count());
    job->statuses.resize(pipeline.shard_count());
    job->fan_out = std::make_unique<ShardFanOut>(
        [job](ShardContext& ctx) {
          job->statuses[ctx.shard] = ctx.state->RunQuery(job->spec, job->partials[ctx.shard]);
        },
        [job, finish = std::move(finish), respond_error = std::move(respond_error)]() {
          std::unique_ptr<Job> owned(job);
          for (const absl::Status& s : owned->statuses) {
            if (!s.ok()) {
              respond_error(ErrorResponse(
                  503, fmt::format("the query could not read stored data: {}", Message(s))));
              return;
            }
          }
          ResultTable merged;
          for (ResultTable& t : owned->partials)
            merged.MergeFrom(std::move(t), owned->spec.need_users);
          finish(std::move(merged), owned->spec);
        });
    // Events are routed by campaign: a query filtered on campaigns asks only their shards.
    std::vector<bool> wanted(pipeline.shard_count(), true);
    for (const auto& [dim, values] : job->spec.filters) {
      if (dim != Dim::kCampaignId || values.empty()) continue;
      wanted.assign(wanted.size(), false);
      for (const std::string& v : values) wanted[pipeline.ShardOf(v)] = true;
    }
    pipeline.QueryShards(job->fan_out.get(), wanted);
  }

  void Metrics(int producer, const QueryRequest& q, Responder respond) {
    std::vector<Metric> metrics = q.metrics;
    std::string tz = q.tz_name;
    Responder on_error = respond;  // copied first: the lambda below takes `respond`
    RunQuery(
        producer, q.spec, std::move(on_error),
        [metrics, tz, respond = std::move(respond)](ResultTable&& table, const QuerySpec& spec) {
          JsonWriter w;
          w.BeginObject();
          WriteRange(w, spec, tz);
          w.Key("rows").BeginArray();
          for (const ResultRow* row : table.SortedRows()) {
            w.BeginObject();
            if (spec.granularity != Granularity::kAll) w.Key("time").Int(row->time);
            for (size_t i = 0; i < spec.group_by.size(); ++i) {
              w.Key(DimName(spec.group_by[i])).String(row->dims[i]);
            }
            for (Metric m : metrics) WriteMetric(w, m, row->agg);
            w.EndObject();
          }
          w.EndArray().EndObject();
          respond(JsonResponse(w.Take()));
        });
  }

  absl::Status ReadMetricsParams(const ParsedTarget& t, QueryRequest& q) {
    if (const std::string* dims = t.Get("dimensions")) {
      for (const std::string& name : SplitComma(*dims)) {
        ASSIGN_OR_RETURN(Dim d, DimParam("dimensions", name));
        AddGroupBy(q, d);
      }
    }
    if (const std::string* ms = t.Get("metrics")) {
      for (const std::string& name : SplitComma(*ms)) {
        ASSIGN_OR_RETURN(Metric m, MetricParam("metrics", name));
        AddMetric(q, m);
      }
    }
    if (q.metrics.empty()) q.metrics = kDefaultMetrics;
    RETURN_IF_ERROR(ReadCommonParams(t, q, api.options_.max_query_buckets, Granularity::kAll));
    return SelectCube(catalog, q);
  }

  absl::Status ReadQueryBody(std::string_view body, QueryRequest& q) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (auto err = parser.parse(body.data(), body.size()).get(root)) {
      return absl::InvalidArgumentError(
          fmt::format("body is not valid JSON: {}", simdjson::error_message(err)));
    }
    if (!root.is_object()) return absl::InvalidArgumentError("body must be a JSON object");
    auto string_list = [](simdjson::dom::element e, std::string_view name,
                          std::vector<std::string>& out) -> absl::Status {
      if (e.is_string()) {
        for (auto& s : SplitComma(std::string_view(e.get_string().value()))) out.push_back(s);
        return absl::OkStatus();
      }
      if (!e.is_array()) {
        return absl::InvalidArgumentError(fmt::format("{} must be an array of strings", name));
      }
      for (simdjson::dom::element v : e.get_array()) {
        if (!v.is_string()) {
          return absl::InvalidArgumentError(fmt::format("{} must be an array of strings", name));
        }
        out.emplace_back(std::string_view(v.get_string().value()));
      }
      return absl::OkStatus();
    };
    auto time_value = [](simdjson::dom::element e,
                         std::string_view name) -> absl::StatusOr<int64_t> {
      if (e.is_int64()) return e.get_int64().value();
      if (e.is_string()) return ParseTimeMs(name, std::string_view(e.get_string().value()));
      return absl::InvalidArgumentError(
          fmt::format("{} must be epoch milliseconds or an RFC 3339 string", name));
    };
    std::optional<int64_t> start, end;
    q.spec.granularity = Granularity::kAll;
    for (auto [key, value] : root.get_object()) {
      if (key == "dimensions") {
        std::vector<std::string> names;
        RETURN_IF_ERROR(string_list(value, "dimensions", names));
        for (const std::string& n : names) {
          ASSIGN_OR_RETURN(Dim d, DimParam("dimensions", n));
          AddGroupBy(q, d);
        }
      } else if (key == "metrics") {
        std::vector<std::string> names;
        RETURN_IF_ERROR(string_list(value, "metrics", names));
        for (const std::string& n : names) {
          ASSIGN_OR_RETURN(Metric m, MetricParam("metrics", n));
          AddMetric(q, m);
        }
      } else if (key == "start") {
        ASSIGN_OR_RETURN(start, time_value(value, "start"));
      } else if (key == "end") {
        ASSIGN_OR_RETURN(end, time_value(value, "end"));
      } else if (key == "granularity") {
        if (!value.is_string()) return absl::InvalidArgumentError("granularity must be a string");
        std::string_view g = value.get_string().value();
        auto parsed = ParseGranularity(g);
        if (!parsed) {
          return absl::InvalidArgumentError(
              fmt::format("granularity '{}' is not one of minute, 5minute, hour, day, all", g));
        }
        q.spec.granularity = *parsed;
      } else if (key == "tz") {
        if (!value.is_string()) return absl::InvalidArgumentError("tz must be a string");
        q.tz_name = std::string(std::string_view(value.get_string().value()));
        ASSIGN_OR_RETURN(q.spec.tz, ParseTimeZone(q.tz_name));
      } else if (key == "filters") {
        if (!value.is_object()) {
          return absl::InvalidArgumentError(
              "filters must be an object such as {\"country\": [\"US\", \"CA\"]}");
        }
        for (auto [fkey, fvalue] : value.get_object()) {
          ASSIGN_OR_RETURN(Dim d, DimParam("filters", fkey));
          std::vector<std::string> values;
          if (fvalue.is_string()) {
            values.emplace_back(std::string_view(fvalue.get_string().value()));
          } else {
            RETURN_IF_ERROR(
                string_list(fvalue, fmt::format("filters.{}", std::string_view(fkey)), values));
          }
          if (values.empty()) {
            return absl::InvalidArgumentError(
                fmt::format("filters.{} has no values", std::string_view(fkey)));
          }
          for (auto& v : values) RETURN_IF_ERROR(AddFilter(q, d, std::move(v)));
        }
      }
    }
    if (!start) return absl::InvalidArgumentError("start is required (epoch ms or RFC 3339)");
    if (!end) return absl::InvalidArgumentError("end is required (epoch ms or RFC 3339)");
    if (q.metrics.empty()) q.metrics = kDefaultMetrics;
    RETURN_IF_ERROR(SetRange(q, *start, *end, api.options_.max_query_buckets));
    return SelectCube(catalog, q);
  }

  void Realtime(int producer, const ParsedTarget& t, Responder respond) {
    const std::string* campaign = t.Get("campaign_id");
    if (!campaign || campaign->empty()) {
      respond(ErrorResponse(400, "campaign_id is required"));
      return;
    }
    int64_t window_s = 300;
    if (const std::string* w = t.Get("window")) {
      char* endp = nullptr;
      long long v = std::strtoll(w->c_str(), &endp, 10);
      if (w->empty() || *endp != '\0' || v < 1 || v > 90LL * 86400) {
        respond(ErrorResponse(
            400, fmt::format("window '{}' must be whole seconds from 1 to {}", *w, 90LL * 86400)));
        return;
      }
      window_s = v;
    }
    QueryRequest q;
    q.spec.granularity = Granularity::kAll;
    q.metrics = kDefaultMetrics;
    q.spec.filters.push_back({Dim::kCampaignId, {*campaign}});
    // Whole minutes: up to the end of the current minute, back far enough to cover the window.
    int64_t to = CeilTo(NowMs() + 1, kMinuteMs);
    int64_t from = to - CeilTo(window_s * 1000, kMinuteMs);
    absl::Status s = SetRange(q, from, to, api.options_.max_query_buckets);
    if (s.ok()) s = SelectCube(catalog, q);
    if (!s.ok()) {
      respond(ErrorResponse(400, Message(s)));
      return;
    }
    std::string campaign_id = *campaign;
    Responder on_error = respond;  // copied first: the lambda below takes `respond`
    RunQuery(
        producer, q.spec, std::move(on_error),
        [campaign_id, window_s, respond = std::move(respond)](ResultTable&& table,
                                                              const QuerySpec& spec) {
          Aggregate total;
          for (const ResultRow* row : table.SortedRows()) total.Merge(row->agg, true);
          JsonWriter w;
          w.BeginObject()
              .Key("campaign_id")
              .String(campaign_id)
              .Key("window_s")
              .Int(window_s)
              .Key("from")
              .Int(spec.start_ms)
              .Key("to")
              .Int(spec.end_ms);
          for (Metric m : {Metric::kImpressions, Metric::kClicks, Metric::kConversions,
                           Metric::kSpend, Metric::kCtr, Metric::kCvr, Metric::kUniqueUsers,
                           Metric::kFraudImpressions, Metric::kFraudClicks, Metric::kFraudSpend}) {
            WriteMetric(w, m, total);
          }
          w.EndObject();
          respond(JsonResponse(w.Take()));
        });
  }

  void Top(int producer, const ParsedTarget& t, Responder respond) {
    QueryRequest q;
    auto fail = [&](const absl::Status& s) { respond(ErrorResponse(400, Message(s))); };
    const std::string* metric_name = t.Get("metric");
    const std::string* dim_name = t.Get("dimension");
    if (!metric_name)
      return fail(absl::InvalidArgumentError("metric is required, e.g. metric=ctr"));
    if (!dim_name) {
      return fail(absl::InvalidArgumentError("dimension is required, e.g. dimension=campaign_id"));
    }
    auto metric = MetricParam("metric", *metric_name);
    if (!metric.ok()) return fail(metric.status());
    auto dim = DimParam("dimension", *dim_name);
    if (!dim.ok()) return fail(dim.status());
    int64_t limit = 10;
    if (const std::string* l = t.Get("limit")) {
      char* endp = nullptr;
      limit = std::strtoll(l->c_str(), &endp, 10);
      if (l->empty() || *endp != '\0' || limit < 1 || limit > 10000) {
        return fail(absl::InvalidArgumentError(
            fmt::format("limit '{}' must be a whole number from 1 to 10000", *l)));
      }
    }
    uint64_t min_impressions = 0;
    if (const std::string* m = t.Get("min_impressions")) {
      char* endp = nullptr;
      long long v = std::strtoll(m->c_str(), &endp, 10);
      if (m->empty() || *endp != '\0' || v < 0) {
        return fail(absl::InvalidArgumentError(
            fmt::format("min_impressions '{}' must be a whole number >= 0", *m)));
      }
      min_impressions = static_cast<uint64_t>(v);
    }
    q.spec.group_by = {*dim};
    q.metrics = {*metric};
    absl::Status s = ReadCommonParams(t, q, api.options_.max_query_buckets, Granularity::kAll);
    if (s.ok() && q.spec.granularity != Granularity::kAll) {
      s = absl::InvalidArgumentError("granularity: /v1/top ranks over the whole range; omit it");
    }
    if (s.ok()) s = SelectCube(catalog, q);
    if (!s.ok()) return fail(s);
    Metric m = *metric;
    Dim d = *dim;
    Responder on_error = respond;  // copied first: the lambda below takes `respond`
    RunQuery(producer, q.spec, std::move(on_error),
             [m, d, limit, min_impressions, respond = std::move(respond)](ResultTable&& table,
                                                                          const QuerySpec& spec) {
               struct Ranked {
                 const ResultRow* row;
                 double value;
               };
               std::vector<Ranked> ranked;
               for (const ResultRow* row : table.Rows()) {
                 if (row->agg.counters.impressions < min_impressions) continue;
                 ranked.push_back({row, MetricValue(m, row->agg)});
               }
               auto better = [](const Ranked& a, const Ranked& b) {
                 if (a.value != b.value) return a.value > b.value;
                 return a.row->dims < b.row->dims;
               };
               // Only the first `limit` need an order: select them, then sort those.
               auto end = ranked.begin() + std::min<int64_t>(limit, ranked.size());
               std::nth_element(ranked.begin(), end, ranked.end(), better);
               ranked.erase(end, ranked.end());
               std::sort(ranked.begin(), ranked.end(), better);
               JsonWriter w;
               w.BeginObject()
                   .Key("metric")
                   .String(MetricName(m))
                   .Key("dimension")
                   .String(DimName(d))
                   .Key("start")
                   .Int(spec.start_ms)
                   .Key("end")
                   .Int(spec.end_ms)
                   .Key("rows")
                   .BeginArray();
               for (const Ranked& r : ranked) {
                 w.BeginObject().Key(DimName(d)).String(r.row->dims[0]);
                 w.Key("value");
                 if (m == Metric::kSpend || m == Metric::kFraudSpend) {
                   w.Micros(m == Metric::kSpend ? r.row->agg.counters.spend_micros
                                                : r.row->agg.counters.fraud_spend_micros);
                 } else if (m == Metric::kUniqueUsers) {
                   w.Uint(static_cast<uint64_t>(std::llround(r.value)));
                 } else {
                   w.Double(r.value);
                 }
                 for (Metric extra : {Metric::kImpressions, Metric::kClicks, Metric::kConversions,
                                      Metric::kSpend}) {
                   WriteMetric(w, extra, r.row->agg);
                 }
                 w.EndObject();
               }
               w.EndArray().EndObject();
               respond(JsonResponse(w.Take()));
             });
  }

  void Funnel(int producer, const ParsedTarget& t, Responder respond) {
    const std::string* campaign = t.Get("campaign_id");
    if (!campaign || campaign->empty()) {
      respond(ErrorResponse(400, "campaign_id is required"));
      return;
    }
    QueryRequest q;
    q.metrics = {Metric::kImpressions};
    q.spec.filters.push_back({Dim::kCampaignId, {*campaign}});
    absl::Status s =
        t.Get("granularity")
            ? absl::InvalidArgumentError(
                  "granularity: /v1/funnel counts over the whole range; omit it")
            : ReadCommonParams(t, q, api.options_.max_query_buckets, Granularity::kAll);
    if (s.ok()) s = SelectCube(catalog, q);
    if (!s.ok()) {
      respond(ErrorResponse(400, Message(s)));
      return;
    }
    q.spec.granularity = Granularity::kAll;
    q.spec.need_users = false;
    std::string campaign_id = *campaign;
    Responder on_error = respond;  // copied first: the lambda below takes `respond`
    RunQuery(
        producer, q.spec, std::move(on_error),
        [campaign_id, respond = std::move(respond)](ResultTable&& table, const QuerySpec& spec) {
          Aggregate total;
          for (const ResultRow* row : table.SortedRows()) total.Merge(row->agg, false);
          JsonWriter w;
          w.BeginObject()
              .Key("campaign_id")
              .String(campaign_id)
              .Key("start")
              .Int(spec.start_ms)
              .Key("end")
              .Int(spec.end_ms);
          for (Metric m : {Metric::kImpressions, Metric::kClicks, Metric::kConversions,
                           Metric::kCtr, Metric::kCvr, Metric::kSpend}) {
            WriteMetric(w, m, total);
          }
          w.EndObject();
          respond(JsonResponse(w.Take()));
        });
  }

  void Reconcile(int producer, const ParsedTarget& t, Responder respond) {
    const std::string* start = t.Get("start");
    const std::string* end = t.Get("end");
    if (!start || !end) {
      respond(ErrorResponse(400, "start and end are required (epoch ms or RFC 3339)"));
      return;
    }
    auto start_ms = ParseTimeMs("start", *start);
    auto end_ms = ParseTimeMs("end", *end);
    if (!start_ms.ok() || !end_ms.ok()) {
      respond(ErrorResponse(400, Message(start_ms.ok() ? end_ms.status() : start_ms.status())));
      return;
    }
    if (*end_ms <= *start_ms) {
      respond(ErrorResponse(400, "end must be after start"));
      return;
    }
    const std::string* rebuild_param = t.Get("rebuild");
    bool rebuild = rebuild_param && (*rebuild_param == "true" || *rebuild_param == "1");
    struct Job {
      std::vector<ReconcileReport> reports;
      std::vector<absl::Status> statuses;
      std::unique_ptr<ShardFanOut> fan_out;
    };
    auto* job = new Job;
    job->reports.resize(pipeline.shard_count());
    job->statuses.resize(pipeline.shard_count());
    int64_t from = *start_ms, to = *end_ms;
    const CubeCatalog& cubes = catalog;
    job->fan_out = std::make_unique<ShardFanOut>(
        [job, from, to, rebuild, &cubes](ShardContext& ctx) {
          job->statuses[ctx.shard] =
              ctx.writer->Reconcile(cubes, from, to, rebuild, job->reports[ctx.shard]);
        },
        [job, from, to, rebuild, respond = std::move(respond)]() {
          std::unique_ptr<Job> owned(job);
          for (const absl::Status& s : owned->statuses) {
            if (!s.ok()) {
              respond(ErrorResponse(503, fmt::format("reconciliation failed: {}", Message(s))));
              return;
            }
          }
          uint64_t events = 0, segments = 0, groups = 0, differences = 0;
          bool rebuilt = false;
          for (const ReconcileReport& r : owned->reports) {
            events += r.events;
            segments += r.segments;
            groups += r.groups_compared;
            differences += r.difference_count;
            rebuilt |= r.rebuilt;
          }
          auto counters = [](JsonWriter& w, const Counters& c) {
            w.BeginObject();
            WriteExactCounters(w, c);
            w.EndObject();
          };
          JsonWriter w;
          w.BeginObject()
              .Key("start")
              .Int(from)
              .Key("end")
              .Int(to)
              .Key("events")
              .Uint(events)
              .Key("segments")
              .Uint(segments)
              .Key("groups_compared")
              .Uint(groups)
              .Key("difference_count")
              .Uint(differences)
              .Key("rebuild")
              .Bool(rebuild)
              .Key("rebuilt")
              .Bool(rebuilt)
              .Key("differences")
              .BeginArray();
          size_t listed = 0;
          for (const ReconcileReport& r : owned->reports) {
            for (const ReconcileDifference& d : r.differences) {
              if (listed++ >= kMaxReportedDifferences) break;
              w.BeginObject()
                  .Key("shard")
                  .Int(d.shard)
                  .Key("cube")
                  .String(d.cube)
                  .Key("granularity")
                  .String(d.level == Level::kMinute ? "minute"
                          : d.level == Level::kHour ? "hour"
                                                    : "day")
                  .Key("time")
                  .Int(d.time_ms)
                  .Key("dimensions")
                  .BeginObject();
              for (const auto& [dim, value] : d.dims) w.Key(DimName(dim)).String(value);
              w.EndObject().Key("stored");
              counters(w, d.stored);
              w.Key("recomputed");
              counters(w, d.recomputed);
              w.EndObject();
            }
          }
          w.EndArray().EndObject();
          respond(JsonResponse(w.Take()));
        });
    pipeline.RunOnEveryShard(producer, job->fan_out.get());
  }

  void Billing(int producer, const ParsedTarget& t, Responder respond) {
    const std::string* advertiser = t.Get("advertiser_id");
    if (!advertiser || advertiser->empty()) {
      respond(ErrorResponse(400, "advertiser_id is required"));
      return;
    }
    QueryRequest q;
    q.metrics = {Metric::kImpressions};
    q.spec.group_by = {Dim::kCampaignId, Dim::kCurrency};
    q.spec.filters.push_back({Dim::kAdvertiserId, {*advertiser}});
    absl::Status s = ReadCommonParams(t, q, api.options_.max_query_buckets, Granularity::kDay);
    if (s.ok()) s = SelectCube(catalog, q);
    if (!s.ok()) {
      respond(ErrorResponse(400, Message(s)));
      return;
    }
    q.spec.need_users = false;
    std::string advertiser_id = *advertiser;
    std::string tz = q.tz_name;
    Responder on_error = respond;  // copied first: the lambda below takes `respond`
    RunQuery(producer, q.spec, std::move(on_error),
             [advertiser_id, tz, respond = std::move(respond)](ResultTable&& table,
                                                               const QuerySpec& spec) {
               std::map<std::string, Counters> totals;  // per currency
               JsonWriter w;
               w.BeginObject().Key("advertiser_id").String(advertiser_id);
               WriteRange(w, spec, tz);
               auto write_counters = [&w](const Counters& c) { WriteExactCounters(w, c); };
               w.Key("rows").BeginArray();
               for (const ResultRow* row : table.SortedRows()) {
                 w.BeginObject();
                 if (spec.granularity != Granularity::kAll) w.Key("time").Int(row->time);
                 w.Key("campaign_id").String(row->dims[0]).Key("currency").String(row->dims[1]);
                 write_counters(row->agg.counters);
                 w.EndObject();
                 totals[row->dims[1]].Merge(row->agg.counters);
               }
               w.EndArray().Key("totals").BeginArray();
               for (const auto& [currency, c] : totals) {
                 w.BeginObject().Key("currency").String(currency);
                 write_counters(c);
                 w.EndObject();
               }
               w.EndArray().EndObject();
               respond(JsonResponse(w.Take()));
             });
  }
};

Api::Api(const ApiOptions& options, const CubeCatalog& catalog, Pipeline& pipeline,
         MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>(*this, catalog, pipeline, metrics)), options_(options) {}

Api::~Api() = default;

void Api::Handle(int producer, HttpRequest&& request, Responder respond) {
  ParsedTarget target = ParseTarget(request.target);
  const std::string& path = target.path;
  const std::string& method = request.method;
  auto expect = [&](std::string_view m) {
    if (method == m || (m == "GET" && method == "HEAD")) return true;
    HttpResponse r =
        ErrorResponse(405, fmt::format("{} does not accept {}; use {}", path, method, m));
    r.headers.emplace_back("Allow", std::string(m));
    respond(std::move(r));
    return false;
  };
  bool data_path = path.rfind("/v1/", 0) == 0;
  if (data_path && !ready_.load()) {
    HttpResponse r = ErrorResponse(503, "adpulse is recovering its state; not ready yet");
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
    return;
  }
  if (path == "/v1/events") {
    if (expect("POST")) impl_->PostEvents(producer, std::move(request), std::move(respond));
    return;
  }
  if (path == "/healthz") {
    if (expect("GET")) respond(JsonResponse(R"({"status":"ok"})"));
    return;
  }
  if (path == "/readyz") {
    if (!expect("GET")) return;
    if (ready_.load()) {
      respond(JsonResponse(R"({"status":"ready"})"));
    } else {
      HttpResponse r = ErrorResponse(503, "recovering; not ready yet");
      r.headers.emplace_back("Retry-After", "1");
      respond(std::move(r));
    }
    return;
  }
  if (path == "/metrics") {
    if (!expect("GET")) return;
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = impl_->metrics.Render();
    respond(std::move(r));
    return;
  }
  if (path == "/v1/metrics/realtime") {
    if (expect("GET")) impl_->Realtime(producer, target, std::move(respond));
    return;
  }
  if (path == "/v1/metrics" || path == "/v1/query") {
    QueryRequest q;
    absl::Status s;
    if (path == "/v1/metrics") {
      if (!expect("GET")) return;
      s = impl_->ReadMetricsParams(target, q);
    } else {
      if (!expect("POST")) return;
      s = impl_->ReadQueryBody(request.body, q);
    }
    if (!s.ok()) {
      respond(ErrorResponse(400, Message(s)));
      return;
    }
    impl_->Metrics(producer, q, std::move(respond));
    return;
  }
  if (path == "/v1/top") {
    if (expect("GET")) impl_->Top(producer, target, std::move(respond));
    return;
  }
  if (path == "/v1/funnel") {
    if (expect("GET")) impl_->Funnel(producer, target, std::move(respond));
    return;
  }
  if (path == "/v1/admin/reconcile") {
    if (expect("POST")) impl_->Reconcile(producer, target, std::move(respond));
    return;
  }
  if (path == "/v1/billing") {
    if (expect("GET")) impl_->Billing(producer, target, std::move(respond));
    return;
  }
  respond(ErrorResponse(404, fmt::format("no endpoint {} {}", method, path)));
}

}  // namespace adpulse
