// What the API handlers share: the parsing of query parameters into a QuerySpec, the JSON writers
// of metrics and counters, and Api::Impl, whose handlers live in api.cc (routing, ingestion),
// query_handlers.cc (the read endpoints), grafana_handlers.cc (/grafana) and admin_handlers.cc
// (/v1/admin/*). Private to src/http/.
#pragma once
#include <fmt/format.h>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/histogram.h"
#include "base/json_writer.h"
#include "http/api.h"
#include "http/auth.h"
#include "storage/event_log_scan.h"
#include "window/query.h"

namespace adpulse {
namespace api_internal {

// What a route needs of its caller.
enum class Access {
  kOpen,     // anyone: health, readiness, the dashboard's files (no data)
  kIngest,   // scope ingest
  kQuery,    // scope read, or advertiser:<id> (answered for that advertiser only)
  kMonitor,  // scope read or admin: /metrics
  kAdmin,    // scope admin
};

// 403 for a status of PermissionDenied (a scope that does not reach), 400 for any other.
HttpResponse StatusResponse(const absl::Status& s);

HttpResponse JsonResponse(std::string body);
std::string Lower(std::string_view s);
// The media type without parameters, lower case: "Application/JSON; charset=utf-8" ->
// "application/json".
std::string MediaType(std::string_view content_type);
std::string DimList();
std::string MetricList();
absl::StatusOr<Dim> DimParam(std::string_view param, std::string_view value);
absl::StatusOr<Metric> MetricParam(std::string_view param, std::string_view value);
std::vector<std::string> SplitComma(std::string_view s);
// The metrics an aggregate answer has when the query names none.
extern const std::vector<Metric> kDefaultMetrics;

// The parts common to every aggregate query, before the cube is chosen.
struct QueryRequest {
  QuerySpec spec;
  std::vector<Metric> metrics;
  int64_t requested_start_ms = 0;
  int64_t requested_end_ms = 0;
  std::string tz_name;
  bool csv = false;  // format=csv: RFC 4180 text instead of JSON
};

// RFC 4180 CSV: CRLF line ends, a field quoted when it holds a comma, quote, CR or LF.
class CsvWriter {
 public:
  CsvWriter& Field(std::string_view value);
  CsvWriter& Int(int64_t value) { return Field(std::to_string(value)); }
  CsvWriter& Uint(uint64_t value) { return Field(std::to_string(value)); }
  // Money as an exact decimal with 6 decimals ("12.500000").
  CsvWriter& Micros(MoneySum micros);
  // A metric's value as the JSON answer writes it (money as exact decimals).
  CsvWriter& Metric(adpulse::Metric m, const Aggregate& a);
  CsvWriter& EndRow();
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
  bool row_started_ = false;
};
// text/csv with the header row announced.
HttpResponse CsvResponse(std::string body);
// A bucket's start as RFC 3339 in `tz` ("2026-12-04T10:00:00Z", "2026-12-04T11:00:00+01:00").
std::string TimeText(int64_t ms, const absl::TimeZone& tz);
// Reads `format` (json or csv) into q.csv.
absl::Status ReadFormat(std::string_view value, QueryRequest& q);
absl::Status SetRange(QueryRequest& q, int64_t start_ms, int64_t end_ms, int64_t max_buckets);
// Forces the caller's advertisers on q (the filter advertiser_id, intersected with any it asks
// for: PermissionDenied when it asks only for others), then chooses the cube.
absl::Status SelectCube(const CubeCatalog& catalog, const Caller& caller, QueryRequest& q);
// The same, but when the caller named no metrics and reads only some advertisers, the defaults
// go without unique_users if no cube with advertiser_id keeps them (the default cubes do not).
absl::Status SelectCubeForDefaults(const CubeCatalog& catalog, const Caller& caller,
                                   bool metrics_defaulted, QueryRequest& q);
// Whether `spec` reads only advertisers `caller` may see (RunQuery refuses any other).
bool ScopedTo(const Caller& caller, const QuerySpec& spec);
// Repeats are ignored: "campaign_id,campaign_id" groups once.
void AddGroupBy(QueryRequest& q, Dim d);
void AddMetric(QueryRequest& q, Metric m);
absl::Status AddFilter(QueryRequest& q, Dim dim, std::string value);
// Reads the query-string form shared by /v1/metrics, /v1/top, /v1/funnel, /v1/billing.
absl::Status ReadCommonParams(const ParsedTarget& t, QueryRequest& q, int64_t max_buckets,
                              Granularity default_granularity);
void WriteMetric(JsonWriter& w, Metric m, const Aggregate& a);
// "granularity", "start", "end" and, when given, "tz" of an aggregate answer.
void WriteRange(JsonWriter& w, const QuerySpec& spec, const std::string& tz);
// Exact counters as billing reads them: money as strings with 6 decimals.
void WriteExactCounters(JsonWriter& w, const Counters& c);

}  // namespace api_internal

struct Api::Impl {
  using QueryRequest = api_internal::QueryRequest;

  Api& api;
  const CubeCatalog& catalog;
  Pipeline& pipeline;
  MetricsRegistry& metrics;
  MetricsRegistry::Counter& events_received;
  MetricsRegistry::Counter& events_accepted;
  MetricsRegistry::Counter& events_duplicate;
  std::vector<MetricsRegistry::Counter*> events_rejected;  // by kRejectReasons
  MetricsRegistry::Counter& requests_rejected_busy;
  MetricsRegistry::Counter& queries;
  Histogram& ingest_seconds;
  Histogram& query_seconds;
  MetricsRegistry::Counter& auth_missing;
  MetricsRegistry::Counter& auth_unknown;
  MetricsRegistry::Counter& auth_forbidden;
  MetricsRegistry::Counter& auth_rate_limited;
  std::map<std::string, MetricsRegistry::Counter*, std::less<>> requests_by_token;

  Impl(Api& a, const CubeCatalog& c, Pipeline& p, MetricsRegistry& m)
      : api(a),
        catalog(c),
        pipeline(p),
        metrics(m),
        events_received(m.GetCounter(
            "adpulse_events_received_total",
            "Events in POST /v1/events bodies that could be split into events, valid or not.")),
        events_accepted(m.GetCounter("adpulse_events_accepted_total",
                                     "Events accepted (new, durable, counted).")),
        events_duplicate(m.GetCounter("adpulse_events_duplicate_total",
                                      "Events dropped as duplicates of an accepted event_id.")),
        requests_rejected_busy(
            m.GetCounter("adpulse_ingest_saturated_total",
                         "Requests answered 503 because ingestion was saturated.")),
        queries(m.GetCounter("adpulse_queries_total", "Aggregate queries answered.")),
        ingest_seconds(m.GetHistogram(
            "adpulse_ingest_request_duration_seconds",
            "POST /v1/events from its decoding to its answer: validation, enrichment and "
            "scoring, the shards' dedup and log append, and the group commit's fdatasync.")),
        query_seconds(m.GetHistogram(
            "adpulse_query_duration_seconds",
            "Aggregate queries (every /v1 query endpoint and /grafana) from their start on the "
            "shards to the merged answer.")),
        auth_missing(m.GetCounter("adpulse_auth_failures_total",
                                  "Requests refused by access control, by reason: no bearer "
                                  "token, an unknown token, a token without the scope needed, "
                                  "or too many failures from the client's address.",
                                  "reason=\"missing_token\"")),
        auth_unknown(m.GetCounter("adpulse_auth_failures_total", "", "reason=\"unknown_token\"")),
        auth_forbidden(m.GetCounter("adpulse_auth_failures_total", "", "reason=\"missing_scope\"")),
        auth_rate_limited(
            m.GetCounter("adpulse_auth_failures_total", "", "reason=\"rate_limited\"")) {
    for (std::string_view reason : kRejectReasons) {
      events_rejected.push_back(&m.GetCounter(
          "adpulse_events_rejected_total",
          "Events rejected by validation, by the field at fault (malformed: not a JSON object; "
          "field: another field's type or size).",
          fmt::format("reason=\"{}\"", reason)));
    }
  }

  // ---- access (api.cc) ----
  // Answers the request itself (and returns false) when its caller may not call `access`.
  bool Authorize(api_internal::Access access, const HttpRequest& req, std::string_view path,
                 Caller& caller, Responder& respond);
  // GET /v1/admin/routes: every route and the scope it needs.
  void Routes(Responder respond);

  // ---- ingestion ----
  void PostEvents(int producer, HttpRequest&& req, Responder respond);

  // ---- queries ----
  // Runs the query on every shard and calls `finish` with the merged table (on a worker thread).
  void RunQuery(int producer, const Caller& caller, QuerySpec spec, Responder respond_error,
                std::function<void(ResultTable&&, const QuerySpec&)> finish);
  void Metrics(int producer, const Caller& caller, const QueryRequest& q, Responder respond);
  absl::Status ReadMetricsParams(const Caller& caller, const ParsedTarget& t, QueryRequest& q);
  absl::Status ReadQueryBody(const Caller& caller, std::string_view body, QueryRequest& q);
  void Realtime(int producer, const Caller& caller, const ParsedTarget& t, Responder respond);
  void Top(int producer, const Caller& caller, const ParsedTarget& t, Responder respond);
  void Funnel(int producer, const Caller& caller, const ParsedTarget& t, Responder respond);
  void Billing(int producer, const Caller& caller, const ParsedTarget& t, Responder respond);

  // ---- fraud (fraud_handlers.cc) ----
  void FraudReport(const Caller& caller, const ParsedTarget& t, Responder respond);
  void FraudEvents(const Caller& caller, const ParsedTarget& t, Responder respond);
  // False (and answered 503) when as many log scans as allowed already run.
  bool StartScan(Responder& respond);
  EventLogScanOptions ScanOptionsFor(int shard, int64_t from, int64_t to) const;

  // ---- Grafana's JSON datasource (grafana_handlers.cc): `sub` is the path after /grafana ----
  void Grafana(int producer, const Caller& caller, std::string_view sub, HttpRequest&& req,
               Responder respond);

  // ---- admin ----
  void Reconcile(int producer, const ParsedTarget& t, Responder respond);
};

}  // namespace adpulse
