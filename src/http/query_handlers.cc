// The read endpoints: /v1/metrics, POST /v1/query, /v1/metrics/realtime, /v1/top, /v1/funnel and
// /v1/billing, each turned into a QuerySpec, run on the shards that hold its campaigns, and written
// as JSON.
#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
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
using namespace api_internal;

// Runs the query on every shard and calls `finish` with the merged table (on a worker thread).
void Api::Impl::RunQuery(int producer, const Caller& caller, QuerySpec spec,
                         Responder respond_error,
                         std::function<void(ResultTable&&, const QuerySpec&)> finish) {
  if (!ScopedTo(caller, spec)) {
    // Every handler scopes its query in SelectCube; one that did not is a bug, and must not
    // answer with other advertisers' rows.
    LOG_ERROR("a query of token '{}' was not limited to its advertisers; refused", caller.name);
    respond_error(ErrorResponse(500,
                                "internal error: the query was not limited to the token's "
                                "advertisers; refused"));
    return;
  }
  queries.fetch_add(1, std::memory_order_relaxed);
  struct Job {
    QuerySpec spec;
    std::vector<ResultTable> partials;
    std::vector<absl::Status> statuses;
    std::unique_ptr<ShardFanOut> fan_out;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  };
  auto* job = new Job{std::move(spec), {}, {}, nullptr};
  job->partials.resize(pipeline.shard_count());
  job->statuses.resize(pipeline.shard_count());
  job->fan_out = std::make_unique<ShardFanOut>(
      [job](ShardContext& ctx) {
        job->statuses[ctx.shard] = ctx.state->RunQuery(job->spec, job->partials[ctx.shard]);
      },
      [this, job, finish = std::move(finish), respond_error = std::move(respond_error)]() {
        std::unique_ptr<Job> owned(job);
        query_seconds.Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - job->started).count());
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

void Api::Impl::Metrics(int producer, const Caller& caller, const QueryRequest& q,
                        Responder respond) {
  std::vector<Metric> metrics = q.metrics;
  std::string tz = q.tz_name;
  bool csv = q.csv;
  Responder on_error = respond;  // copied first: the lambda below takes `respond`
  RunQuery(
      producer, caller, q.spec, std::move(on_error),
      [metrics, tz, csv, respond = std::move(respond)](ResultTable&& table, const QuerySpec& spec) {
        bool timed = spec.granularity != Granularity::kAll;
        if (csv) {
          CsvWriter c;
          if (timed) c.Field("time").Field("time_rfc3339");
          for (Dim d : spec.group_by) c.Field(DimName(d));
          for (Metric m : metrics) c.Field(MetricName(m));
          c.EndRow();
          for (const ResultRow* row : table.SortedRows()) {
            if (timed) c.Int(row->time).Field(TimeText(row->time, spec.tz));
            for (const std::string& v : row->dims) c.Field(v);
            for (Metric m : metrics) c.Metric(m, row->agg);
            c.EndRow();
          }
          respond(CsvResponse(c.Take()));
          return;
        }
        JsonWriter w;
        w.BeginObject();
        WriteRange(w, spec, tz);
        w.Key("rows").BeginArray();
        for (const ResultRow* row : table.SortedRows()) {
          w.BeginObject();
          if (timed) w.Key("time").Int(row->time);
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

absl::Status Api::Impl::ReadMetricsParams(const Caller& caller, const ParsedTarget& t,
                                          QueryRequest& q) {
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
  bool defaulted = q.metrics.empty();
  if (defaulted) q.metrics = kDefaultMetrics;
  RETURN_IF_ERROR(ReadCommonParams(t, q, api.options_.max_query_buckets, Granularity::kAll));
  return SelectCubeForDefaults(catalog, caller, defaulted, q);
}

absl::Status Api::Impl::ReadQueryBody(const Caller& caller, std::string_view body,
                                      QueryRequest& q) {
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
  auto time_value = [](simdjson::dom::element e, std::string_view name) -> absl::StatusOr<int64_t> {
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
    } else if (key == "format") {
      if (!value.is_string()) return absl::InvalidArgumentError("format must be json or csv");
      RETURN_IF_ERROR(ReadFormat(std::string_view(value.get_string().value()), q));
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
  bool defaulted = q.metrics.empty();
  if (defaulted) q.metrics = kDefaultMetrics;
  RETURN_IF_ERROR(SetRange(q, *start, *end, api.options_.max_query_buckets));
  return SelectCubeForDefaults(catalog, caller, defaulted, q);
}

void Api::Impl::Realtime(int producer, const Caller& caller, const ParsedTarget& t,
                         Responder respond) {
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
  absl::Status range = SetRange(q, from, to, api.options_.max_query_buckets);
  QueryRequest scoped = q;
  absl::Status s = range.ok() ? SelectCube(catalog, caller, q) : range;
  bool users = true;
  if (range.ok() && !s.ok() && !caller.ReadsAll() &&
      s.code() != absl::StatusCode::kPermissionDenied) {
    // An advertiser's token reads cubes with advertiser_id: the default ones (billing) have no
    // unique users, which the answer then leaves out rather than failing.
    scoped.metrics.erase(
        std::remove(scoped.metrics.begin(), scoped.metrics.end(), Metric::kUniqueUsers),
        scoped.metrics.end());
    if (SelectCube(catalog, caller, scoped).ok()) {
      q = std::move(scoped);
      users = false;
      s = absl::OkStatus();
    }
  }
  if (!s.ok()) {
    respond(StatusResponse(s));
    return;
  }
  std::string campaign_id = *campaign;
  Responder on_error = respond;  // copied first: the lambda below takes `respond`
  RunQuery(
      producer, caller, q.spec, std::move(on_error),
      [campaign_id, window_s, users, respond = std::move(respond)](ResultTable&& table,
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
          if (m == Metric::kUniqueUsers && !users) continue;
          WriteMetric(w, m, total);
        }
        w.EndObject();
        respond(JsonResponse(w.Take()));
      });
}

void Api::Impl::Top(int producer, const Caller& caller, const ParsedTarget& t, Responder respond) {
  QueryRequest q;
  auto fail = [&](const absl::Status& s) { respond(StatusResponse(s)); };
  const std::string* metric_name = t.Get("metric");
  const std::string* dim_name = t.Get("dimension");
  if (!metric_name) return fail(absl::InvalidArgumentError("metric is required, e.g. metric=ctr"));
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
  if (s.ok()) s = SelectCube(catalog, caller, q);
  if (!s.ok()) return fail(s);
  Metric m = *metric;
  Dim d = *dim;
  bool csv = q.csv;
  Responder on_error = respond;  // copied first: the lambda below takes `respond`
  RunQuery(producer, caller, q.spec, std::move(on_error),
           [m, d, limit, min_impressions, csv, respond = std::move(respond)](
               ResultTable&& table, const QuerySpec& spec) {
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
             static constexpr Metric kExtra[] = {Metric::kImpressions, Metric::kClicks,
                                                 Metric::kConversions, Metric::kSpend};
             if (csv) {
               CsvWriter c;
               // The ranked metric is `value`, as in JSON: it may also be one of the columns after.
               c.Field("rank").Field(DimName(d)).Field("value");
               for (Metric extra : kExtra) c.Field(MetricName(extra));
               c.EndRow();
               int64_t rank = 0;
               for (const Ranked& r : ranked) {
                 c.Int(++rank).Field(r.row->dims[0]).Metric(m, r.row->agg);
                 for (Metric extra : kExtra) c.Metric(extra, r.row->agg);
                 c.EndRow();
               }
               respond(CsvResponse(c.Take()));
               return;
             }
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
               for (Metric extra : kExtra) WriteMetric(w, extra, r.row->agg);
               w.EndObject();
             }
             w.EndArray().EndObject();
             respond(JsonResponse(w.Take()));
           });
}

void Api::Impl::Funnel(int producer, const Caller& caller, const ParsedTarget& t,
                       Responder respond) {
  const std::string* campaign = t.Get("campaign_id");
  if (!campaign || campaign->empty()) {
    respond(ErrorResponse(400, "campaign_id is required"));
    return;
  }
  // by=ad: the funnel of each ad of the campaign too.
  bool by_ad = false;
  if (const std::string* by = t.Get("by")) {
    if (*by == "ad" || *by == "ad_id") {
      by_ad = true;
    } else if (*by != "campaign" && *by != "campaign_id") {
      respond(ErrorResponse(400, fmt::format("by '{}' is not campaign or ad", *by)));
      return;
    }
  }
  QueryRequest q;
  q.metrics = {Metric::kImpressions};
  q.spec.filters.push_back({Dim::kCampaignId, {*campaign}});
  if (by_ad) q.spec.group_by = {Dim::kAdId};
  absl::Status s = t.Get("granularity")
                       ? absl::InvalidArgumentError(
                             "granularity: /v1/funnel counts over the whole range; omit it")
                       : ReadCommonParams(t, q, api.options_.max_query_buckets, Granularity::kAll);
  if (s.ok()) s = SelectCube(catalog, caller, q);
  if (!s.ok()) {
    respond(StatusResponse(s));
    return;
  }
  q.spec.granularity = Granularity::kAll;
  q.spec.need_users = false;
  std::string campaign_id = *campaign;
  bool csv = q.csv;
  Responder on_error = respond;  // copied first: the lambda below takes `respond`
  RunQuery(producer, caller, q.spec, std::move(on_error),
           [campaign_id, csv, by_ad, respond = std::move(respond)](ResultTable&& table,
                                                                   const QuerySpec& spec) {
             Aggregate total;
             std::vector<const ResultRow*> rows = table.SortedRows();
             for (const ResultRow* row : rows) total.Merge(row->agg, false);
             // Before attribution's two columns, the ones there were, in their order.
             static constexpr Metric kFunnel[] = {Metric::kImpressions,
                                                  Metric::kClicks,
                                                  Metric::kConversions,
                                                  Metric::kCtr,
                                                  Metric::kCvr,
                                                  Metric::kSpend,
                                                  Metric::kUnattributedConversions,
                                                  Metric::kCpa};
             if (csv) {
               CsvWriter c;
               c.Field("campaign_id");
               if (by_ad) c.Field("ad_id");
               c.Field("start").Field("end");
               for (Metric m : kFunnel) c.Field(MetricName(m));
               c.EndRow();
               auto row_of = [&](const std::string* ad, const Aggregate& a) {
                 c.Field(campaign_id);
                 if (ad) c.Field(*ad);
                 c.Int(spec.start_ms).Int(spec.end_ms);
                 for (Metric m : kFunnel) c.Metric(m, a);
                 c.EndRow();
               };
               if (by_ad) {
                 for (const ResultRow* row : rows) row_of(&row->dims[0], row->agg);
               } else {
                 row_of(nullptr, total);
               }
               respond(CsvResponse(c.Take()));
               return;
             }
             JsonWriter w;
             w.BeginObject()
                 .Key("campaign_id")
                 .String(campaign_id)
                 .Key("start")
                 .Int(spec.start_ms)
                 .Key("end")
                 .Int(spec.end_ms);
             for (Metric m : kFunnel) WriteMetric(w, m, total);
             if (by_ad) {
               w.Key("ads").BeginArray();
               for (const ResultRow* row : rows) {
                 w.BeginObject().Key("ad_id").String(row->dims[0]);
                 for (Metric m : kFunnel) WriteMetric(w, m, row->agg);
                 w.EndObject();
               }
               w.EndArray();
             }
             w.EndObject();
             respond(JsonResponse(w.Take()));
           });
}

void Api::Impl::Billing(int producer, const Caller& caller, const ParsedTarget& t,
                        Responder respond) {
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
  if (s.ok()) s = SelectCube(catalog, caller, q);
  if (!s.ok()) {
    respond(StatusResponse(s));
    return;
  }
  q.spec.need_users = false;
  std::string advertiser_id = *advertiser;
  std::string tz = q.tz_name;
  bool csv = q.csv;
  Responder on_error = respond;  // copied first: the lambda below takes `respond`
  RunQuery(producer, caller, q.spec, std::move(on_error),
           [advertiser_id, tz, csv, respond = std::move(respond)](ResultTable&& table,
                                                                  const QuerySpec& spec) {
             bool timed = spec.granularity != Granularity::kAll;
             if (csv) {
               // One row per campaign, currency and bucket; the totals are their sums per
               // currency (in the JSON answer), left out so that a spreadsheet's sum is right.
               CsvWriter c;
               c.Field("advertiser_id");
               if (timed) c.Field("time").Field("time_rfc3339");
               for (const char* name :
                    {"campaign_id", "currency", "impressions", "clicks", "conversions", "spend",
                     "fraud_impressions", "fraud_clicks", "fraud_conversions", "fraud_spend"}) {
                 c.Field(name);
               }
               c.EndRow();
               for (const ResultRow* row : table.SortedRows()) {
                 const Counters& k = row->agg.counters;
                 c.Field(advertiser_id);
                 if (timed) c.Int(row->time).Field(TimeText(row->time, spec.tz));
                 c.Field(row->dims[0]).Field(row->dims[1]);
                 c.Uint(k.impressions).Uint(k.clicks).Uint(k.conversions).Micros(k.spend_micros);
                 c.Uint(k.fraud_impressions).Uint(k.fraud_clicks).Uint(k.fraud_conversions);
                 c.Micros(k.fraud_spend_micros).EndRow();
               }
               respond(CsvResponse(c.Take()));
               return;
             }
             std::map<std::string, Counters> totals;  // per currency
             JsonWriter w;
             w.BeginObject().Key("advertiser_id").String(advertiser_id);
             WriteRange(w, spec, tz);
             auto write_counters = [&w](const Counters& c) { WriteExactCounters(w, c); };
             w.Key("rows").BeginArray();
             for (const ResultRow* row : table.SortedRows()) {
               w.BeginObject();
               if (timed) w.Key("time").Int(row->time);
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

}  // namespace adpulse
