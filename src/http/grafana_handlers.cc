// Grafana's JSON datasource under /grafana: the simpod-json-datasource plugin (0.6.x) and the
// legacy SimpleJSON calls it grew from, answered from the same cubes as /v1/metrics, with no
// adapter in between. ../shared/grafana/README.md says where the real plugin differs from its
// OpenAPI description; this follows the plugin.
//
// A target is a metric name (impressions, clicks, ctr, spend, ...). Its payload may name
// `group_by` (dimensions, one series per group), `format` (time_series or table) and a value or
// values for any dimension (an equality filter). Ad hoc filters (`filters`, or `adhocFilters`
// before plugin 0.6.4) apply to every target: `=` and `=|` become the query's filters; `!=`,
// `!=|`, `=~` and `!~` are applied to the query's groups, the filtered dimension grouped by for
// that and summed away again. Time series are bucketed to the request's intervalMs (whole minutes
// at least), every bucket inside the range, in time order. Annotations (refId "Anno", and the
// legacy /annotations) mark the buckets where invalid traffic reached a share of all events.
#include <fmt/format.h>
#include <re2/re2.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "base/json_writer.h"
#include "base/status_macros.h"
#include "base/time_parse.h"
#include "http/api_internal.h"
#include "http/grafana_request.h"
#include "window/query.h"

namespace adpulse {
using namespace api_internal;
using namespace grafana_internal;

namespace {

// Limits of one /query answer: datapoints a series may have, and values in all.
constexpr int64_t kMaxBuckets = 100'000;
constexpr int64_t kMaxValues = 2'000'000;
// Dimension values a variable, tag-values or payload-options answer lists.
constexpr size_t kMaxListedValues = 10'000;
// How far back dimension values are looked for when a request has no range.
constexpr int64_t kValuesLookbackMs = 30 * kDayMs;

// One target of a /query, planned.
struct TargetPlan {
  std::string ref_id;
  Metric metric = Metric::kImpressions;
  bool table = false;
  bool annotation = false;
  Payload payload;
  QueryRequest q;
  size_t shown_dims = 0;  // the first group_by dimensions are the user's; the rest are for filters
  std::vector<std::pair<size_t, GroupFilter>> group_filters;  // by group_by position
  bool matches_nothing = false;
  int64_t step_ms = 0;      // time series: the datapoints' spacing
  int64_t buckets = 0;      // time series: how many
  bool no_buckets = false;  // time series: the range holds no whole interval
};

// The finest stored granularity whose buckets tile `step_ms`, and its length.
std::pair<Granularity, int64_t> BaseGranularity(int64_t step_ms) {
  if (step_ms % kDayMs == 0) return {Granularity::kDay, kDayMs};
  if (step_ms % kHourMs == 0) return {Granularity::kHour, kHourMs};
  if (step_ms % (5 * kMinuteMs) == 0) return {Granularity::kFiveMinute, 5 * kMinuteMs};
  return {Granularity::kMinute, kMinuteMs};
}

// Puts `filters` and the payload's grouping into t.q and chooses its cube.
absl::Status PlanQuery(const CubeCatalog& catalog, const Caller& caller, const Filters& filters,
                       TargetPlan& t) {
  QueryRequest& q = t.q;
  q.metrics = {t.annotation ? Metric::kImpressions : t.metric};
  for (Dim d : t.payload.group_by) AddGroupBy(q, d);
  t.shown_dims = q.spec.group_by.size();
  for (const auto& [d, values] : filters.equal) {
    for (const std::string& v : values) RETURN_IF_ERROR(AddFilter(q, d, v));
  }
  t.matches_nothing = filters.Empty();
  for (const GroupFilter& g : filters.group) {
    AddGroupBy(q, g.dim);
    size_t pos =
        std::find(q.spec.group_by.begin(), q.spec.group_by.end(), g.dim) - q.spec.group_by.begin();
    t.group_filters.push_back({pos, g});
  }
  return SelectCube(catalog, caller, q);
}

// A series' or table row's label: "clicks campaign_id=c1 country=US".
std::string SeriesName(const TargetPlan& t, const std::vector<std::string>& dims) {
  std::string name(MetricName(t.metric));
  for (size_t i = 0; i < dims.size(); ++i) {
    fmt::format_to(std::back_inserter(name), " {}={}", DimName(t.q.spec.group_by[i]), dims[i]);
  }
  return name;
}

void WriteValue(JsonWriter& w, Metric m, const Aggregate& a) {
  switch (m) {
    case Metric::kSpend:
      w.Micros(a.counters.spend_micros);
      return;
    case Metric::kFraudSpend:
      w.Micros(a.counters.fraud_spend_micros);
      return;
    case Metric::kUniqueUsers:
      w.Uint(static_cast<uint64_t>(std::llround(a.users.Estimate())));
      return;
    default:
      break;
  }
  if (MetricIsMoney(m)) {
    w.Double(MetricValue(m, a));
  } else {
    double v = MetricValue(m, a);
    if (v == std::floor(v) && v >= 0 && v < 1e15) {
      w.Uint(static_cast<uint64_t>(v));
    } else {
      w.Double(v);
    }
  }
}

// The groups of a result with the filters on groups applied and the filter-only dimensions summed
// away: per shown dimension values, per time.
using Grouped = std::map<std::vector<std::string>, std::map<int64_t, Aggregate>>;
Grouped GroupRows(const TargetPlan& t, const ResultTable& table, int64_t origin, int64_t step) {
  Grouped out;
  bool users = t.q.spec.need_users;
  for (const ResultRow* row : table.Rows()) {
    bool keep = true;
    for (const auto& [pos, g] : t.group_filters) keep = keep && g.Matches(row->dims[pos]);
    if (!keep) continue;
    std::vector<std::string> shown(row->dims.begin(), row->dims.begin() + t.shown_dims);
    int64_t time = step > 0 ? origin + FloorDiv(row->time - origin, step) * step : row->time;
    out[std::move(shown)][time].Merge(row->agg, users);
  }
  return out;
}

// The series of a target: its rows grouped and bucketed.
Grouped SeriesGroups(const TargetPlan& t, const ResultTable& table) {
  Grouped groups = GroupRows(t, table, t.q.spec.start_ms, t.step_ms);
  if (groups.empty() && t.shown_dims == 0) groups[{}];  // one series of zeros, not none
  return groups;
}

void WriteSeries(JsonWriter& w, const TargetPlan& t, const Grouped& groups) {
  const QuerySpec& spec = t.q.spec;
  for (const auto& [dims, by_time] : groups) {
    w.BeginObject().Key("target").String(SeriesName(t, dims));
    if (!t.ref_id.empty()) w.Key("refId").String(t.ref_id);
    w.Key("datapoints").BeginArray();
    static const Aggregate kEmpty;
    auto it = by_time.begin();
    for (int64_t i = 0; i < t.buckets; ++i) {
      int64_t time = spec.start_ms + i * t.step_ms;
      const Aggregate* a = &kEmpty;
      while (it != by_time.end() && it->first < time) ++it;
      if (it != by_time.end() && it->first == time) a = &(it++)->second;
      w.BeginArray();
      WriteValue(w, t.metric, *a);
      w.Int(time).EndArray();
    }
    w.EndArray().EndObject();
  }
}

void WriteTable(JsonWriter& w, const TargetPlan& t, const ResultTable& table) {
  Grouped groups = GroupRows(t, table, 0, 0);
  w.BeginObject().Key("type").String("table");
  if (!t.ref_id.empty()) w.Key("refId").String(t.ref_id);
  w.Key("columns").BeginArray();
  for (size_t i = 0; i < t.shown_dims; ++i) {
    w.BeginObject().Key("text").String(DimName(t.q.spec.group_by[i]));
    w.Key("type").String("string").EndObject();
  }
  w.BeginObject().Key("text").String(MetricName(t.metric)).Key("type").String("number");
  w.EndObject().EndArray().Key("rows").BeginArray();
  for (const auto& [dims, by_time] : groups) {
    Aggregate total;
    for (const auto& [time, a] : by_time) total.Merge(a, t.q.spec.need_users);
    w.BeginArray();
    for (const std::string& d : dims) w.String(d);
    WriteValue(w, t.metric, total);
    w.EndArray();
  }
  w.EndArray().EndObject();
}

// Marks where invalid traffic reached the payload's share: consecutive buckets merge into one
// region. Calls fn(start, end, text, tags).
template <typename Fn>
void ForEachSpike(const TargetPlan& t, const ResultTable& table, Fn&& fn) {
  Grouped groups = GroupRows(t, table, t.q.spec.start_ms, t.step_ms);
  for (const auto& [dims, by_time] : groups) {
    std::vector<std::string> tags = {"fraud"};
    for (size_t i = 0; i < dims.size(); ++i) {
      tags.push_back(fmt::format("{}:{}", DimName(t.q.spec.group_by[i]), dims[i]));
    }
    int64_t start = 0, end = 0;
    uint64_t invalid = 0, all = 0;
    auto emit = [&]() {
      if (all == 0) return;
      std::string text = fmt::format("invalid traffic {:.1f}% ({} of {} events)",
                                     100.0 * invalid / all, invalid, all);
      for (size_t i = 1; i < tags.size(); ++i) text += " " + tags[i];
      fn(start, end, text, tags);
      invalid = all = 0;
    };
    for (const auto& [time, a] : by_time) {
      const Counters& c = a.counters;
      uint64_t bad = c.fraud_impressions + c.fraud_clicks + c.fraud_conversions;
      uint64_t total = bad + c.impressions + c.clicks + c.conversions;
      bool spike = bad >= t.payload.spike_min_events && total > 0 &&
                   static_cast<double>(bad) >= t.payload.spike_share * static_cast<double>(total);
      if (!spike) continue;
      if (all > 0 && time != end) emit();
      if (all == 0) start = time;
      end = time + t.step_ms;
      invalid += bad;
      all += total;
    }
    emit();
  }
}

void WriteAnnotationFrame(JsonWriter& w, const TargetPlan& t, const ResultTable& table) {
  std::vector<int64_t> starts, ends;
  std::vector<std::string> texts;
  std::vector<std::vector<std::string>> tags;
  ForEachSpike(
      t, table,
      [&](int64_t s, int64_t e, const std::string& text, const std::vector<std::string>& tg) {
        starts.push_back(s);
        ends.push_back(e);
        texts.push_back(text);
        tags.push_back(tg);
      });
  w.BeginObject();
  if (!t.ref_id.empty()) w.Key("refId").String(t.ref_id);
  w.Key("fields").BeginArray();
  w.BeginObject().Key("name").String("time").Key("type").String("time").Key("values").BeginArray();
  for (int64_t s : starts) w.Int(s);
  w.EndArray().EndObject();
  w.BeginObject().Key("name").String("timeEnd").Key("type").String("time");
  w.Key("values").BeginArray();
  for (int64_t e : ends) w.Int(e);
  w.EndArray().EndObject();
  w.BeginObject().Key("name").String("text").Key("type").String("string");
  w.Key("values").BeginArray();
  for (const std::string& s : texts) w.String(s);
  w.EndArray().EndObject();
  w.BeginObject().Key("name").String("tags").Key("type").String("other");
  w.Key("values").BeginArray();
  for (const auto& tg : tags) {
    w.BeginArray();
    for (const std::string& s : tg) w.String(s);
    w.EndArray();
  }
  w.EndArray().EndObject();
  w.EndArray().EndObject();
}

// The answer of a request with several queries, put together as they finish (on worker threads).
struct FanIn {
  std::mutex mu;
  std::vector<std::string> parts;  // each a comma-separated run of JSON values, or empty
  size_t remaining = 0;
  bool failed = false;
  int64_t values = 0;  // datapoints of all series so far
  Responder respond;

  // Counts a target's datapoints; false when the answer would pass the limit.
  bool AddValues(int64_t n) {
    std::lock_guard<std::mutex> lock(mu);
    values += n;
    return values <= kMaxValues;
  }

  void Done(size_t i, std::string part) {
    std::unique_lock<std::mutex> lock(mu);
    if (failed) return;
    parts[i] = std::move(part);
    if (--remaining > 0) return;
    std::string body = "[";
    for (const std::string& p : parts) {
      if (p.empty()) continue;
      if (body.size() > 1) body += ',';
      body += p;
    }
    body += ']';
    lock.unlock();
    respond(JsonResponse(std::move(body)));
  }
  void Fail(HttpResponse r) {
    std::unique_lock<std::mutex> lock(mu);
    if (failed) return;
    failed = true;
    lock.unlock();
    respond(std::move(r));
  }
};

// The JSON values of an array writer, without its brackets.
std::string Inner(JsonWriter& w) {
  std::string s = w.Take();
  return s.size() >= 2 ? s.substr(1, s.size() - 2) : std::string();
}

// Errors of the shared query path ({"error": ..}) as the plugin shows them ({"message": ..}).
Responder WithMessage(Responder respond) {
  return [respond = std::move(respond)](HttpResponse r) {
    if (r.status >= 400) {
      simdjson::dom::parser parser;
      element root, error;
      std::string message = "the query failed";
      if (!parser.parse(r.body).get(root) && !root["error"].get(error) && error.is_string()) {
        message = std::string(Str(error));
      }
      HttpResponse g = GrafanaError(r.status, message);
      g.headers = std::move(r.headers);
      r = std::move(g);
    }
    respond(std::move(r));
  };
}

// Lists the values of `dim` with events in [from, to) (filtered), sorted, up to kMaxListedValues.
// (A template: Api::Impl is private to Api, named only where it is a member.)
template <typename Impl>
void GrafanaValues(Impl& impl, int producer, const Caller& caller, Dim dim, const Filters& filters,
                   int64_t from, int64_t to, Responder respond,
                   std::function<void(std::vector<std::string>)> done) {
  TargetPlan t;
  t.payload.group_by = {dim};
  t.q.spec.granularity = Granularity::kAll;
  absl::Status s = SetRange(t.q, from, to, impl.api.options().max_query_buckets);
  if (s.ok()) s = PlanQuery(impl.catalog, caller, filters, t);
  if (!s.ok()) {
    respond(GrafanaStatus(s));
    return;
  }
  if (t.matches_nothing) {
    done({});
    return;
  }
  t.q.spec.need_users = false;
  impl.RunQuery(producer, caller, t.q.spec, WithMessage(respond),
                [t, done = std::move(done)](ResultTable&& table, const QuerySpec&) {
                  Grouped groups = GroupRows(t, table, 0, 0);
                  std::vector<std::string> values;
                  for (const auto& [dims, by_time] : groups) {
                    if (values.size() >= kMaxListedValues) break;
                    values.push_back(dims[0]);
                  }
                  done(std::move(values));
                });
}

template <typename Impl>
void GrafanaQuery(Impl& impl, int producer, const Caller& caller, bool legacy_annotations,
                  element root, Responder respond) {
  auto fail = [&](const absl::Status& s) { respond(GrafanaStatus(s)); };
  element range;
  if (root["range"].get(range) || !range.is_object()) {
    return fail(absl::InvalidArgumentError("range is required ({\"from\": .., \"to\": ..})"));
  }
  auto from = TimeField(range, "from", "range.from");
  if (!from.ok()) return fail(from.status());
  auto to = TimeField(range, "to", "range.to");
  if (!to.ok()) return fail(to.status());
  if (*to <= *from) {
    return fail(absl::InvalidArgumentError(
        fmt::format("range.to ({}) must be after range.from ({})", *to, *from)));
  }
  // The datapoints' spacing: intervalMs, or the range over maxDataPoints; whole minutes at least
  // (the finest stored resolution).
  int64_t interval = 0;
  element v;
  if (!root["intervalMs"].get(v) && v.is_number()) {
    // Clamped before the cast: a year is already coarser than any panel asks.
    interval = static_cast<int64_t>(std::min(v.get_double().value(), 366.0 * kDayMs));
  }
  if (interval <= 0 && !root["maxDataPoints"].get(v) && v.is_number() &&
      v.get_double().value() >= 1) {
    interval = (*to - *from) / static_cast<int64_t>(std::min(v.get_double().value(), 1e9));
  }
  int64_t step = std::max<int64_t>(CeilTo(std::max<int64_t>(interval, 1), kMinuteMs), kMinuteMs);
  Filters filters;
  if (absl::Status s = ReadAdHocFilters(root, filters); !s.ok()) return fail(s);

  std::vector<TargetPlan> plans;
  if (legacy_annotations) {
    // {"annotation": {"query": "campaign_id:c1,country:US", ...}}: filters as /v1/metrics's.
    TargetPlan t;
    t.annotation = true;
    element anno, query;
    if (!root["annotation"].get(anno) && anno.is_object() && !anno["query"].get(query) &&
        query.is_string()) {
      for (const std::string& f : SplitComma(Str(query))) {
        size_t colon = f.find(':');
        if (colon == std::string::npos) colon = f.find('=');
        if (colon == std::string::npos) {
          return fail(absl::InvalidArgumentError(fmt::format(
              "annotation.query '{}' must be dimension:value pairs, e.g. campaign_id:c1", f)));
        }
        auto d = DimParam("annotation.query", f.substr(0, colon));
        if (!d.ok()) return fail(d.status());
        (void)filters.AddEqual(*d, {f.substr(colon + 1)});
      }
    }
    plans.push_back(std::move(t));
  } else {
    element targets;
    if (root["targets"].get(targets) || !targets.is_array()) {
      return fail(absl::InvalidArgumentError("targets is required (a list)"));
    }
    for (element target : targets.get_array()) {
      if (!target.is_object())
        return fail(absl::InvalidArgumentError("each target must be an object"));
      element hide, name, ref, payload;
      if (!target["hide"].get(hide) && hide.is_bool() && hide.get_bool().value()) continue;
      TargetPlan t;
      if (!target["refId"].get(ref) && ref.is_string()) t.ref_id = std::string(Str(ref));
      t.annotation = t.ref_id == "Anno";
      std::string metric;
      if (!target["target"].get(name) && name.is_string()) metric = std::string(Str(name));
      if (metric.empty() && !t.annotation) continue;  // a query row with no metric chosen yet
      if (!metric.empty()) {
        auto m = MetricParam("target", metric);
        if (!m.ok()) return respond(GrafanaError(400, Message(m.status())));
        t.metric = *m;
      }
      Filters target_filters = filters;
      if (!target["payload"].get(payload)) {
        if (absl::Status s = ReadPayload(payload, t.payload, target_filters); !s.ok()) {
          return fail(s);
        }
      }
      t.table = t.payload.table && !t.annotation;
      t.q.spec.granularity = Granularity::kAll;
      if (!t.table) {
        // Series start at the first whole bucket of the range, so every datapoint is inside it.
        auto [g, unit] = BaseGranularity(step);
        t.q.spec.granularity = g;
        int64_t start = CeilTo(*from, unit);
        int64_t end = CeilTo(*to, kMinuteMs);
        t.step_ms = step;
        if (start >= *to) {
          // No bucket starts inside the range (a range shorter than the interval): series
          // without datapoints, rather than one outside it.
          t.q.spec.start_ms = t.q.spec.end_ms = start;
          t.no_buckets = true;
        } else {
          absl::Status s = SetRange(t.q, start, end, impl.api.options().max_query_buckets);
          if (!s.ok()) return fail(s);
          t.buckets = (t.q.spec.end_ms - t.q.spec.start_ms + step - 1) / step;
        }
        if (t.buckets > kMaxBuckets) {
          return fail(absl::InvalidArgumentError(fmt::format(
              "intervalMs {} over this range gives {} datapoints a series (limit {}); use a "
              "longer interval",
              step, t.buckets, kMaxBuckets)));
        }
      } else if (absl::Status s = SetRange(t.q, *from, *to, impl.api.options().max_query_buckets);
                 !s.ok()) {
        return fail(s);
      }
      if (absl::Status s = PlanQuery(impl.catalog, caller, target_filters, t); !s.ok())
        return fail(s);
      if (t.annotation) t.q.spec.need_users = false;
      if (t.no_buckets) t.matches_nothing = true;
      plans.push_back(std::move(t));
    }
  }
  if (legacy_annotations) {
    TargetPlan& t = plans[0];
    auto [g, unit] = BaseGranularity(step);
    t.q.spec.granularity = g;
    if (CeilTo(*from, unit) >= *to) {
      respond(JsonResponse("[]"));  // no whole interval inside the range
      return;
    }
    absl::Status s = SetRange(t.q, CeilTo(*from, unit), CeilTo(*to, kMinuteMs),
                              impl.api.options().max_query_buckets);
    if (s.ok()) s = PlanQuery(impl.catalog, caller, filters, t);
    if (!s.ok()) return fail(s);
    t.q.spec.need_users = false;
    t.step_ms = step;
    t.buckets = (t.q.spec.end_ms - t.q.spec.start_ms + step - 1) / step;
  }
  if (plans.empty()) {
    respond(JsonResponse("[]"));
    return;
  }
  auto fan_in = std::make_shared<FanIn>();
  fan_in->parts.resize(plans.size());
  fan_in->remaining = plans.size();
  fan_in->respond = std::move(respond);
  for (size_t i = 0; i < plans.size(); ++i) {
    auto plan = std::make_shared<TargetPlan>(std::move(plans[i]));
    auto finish = [fan_in, plan, i, legacy_annotations](ResultTable&& table, const QuerySpec&) {
      const TargetPlan& t = *plan;
      Grouped series;
      if (!t.table && !t.annotation && !legacy_annotations) {
        series = SeriesGroups(t, table);
        int64_t groups = static_cast<int64_t>(series.size());
        if (!fan_in->AddValues(groups * t.buckets)) {
          fan_in->Fail(GrafanaError(
              400, fmt::format("target {}: {} series of {} datapoints makes the answer too large "
                               "(limit {} values in all); group by fewer dimensions or use a "
                               "longer interval",
                               MetricName(t.metric), groups, t.buckets, kMaxValues)));
          return;
        }
      }
      JsonWriter w;
      w.BeginArray();
      if (legacy_annotations) {
        ForEachSpike(
            t, table,
            [&](int64_t s, int64_t e, const std::string& text,
                const std::vector<std::string>& tags) {
              w.BeginObject().Key("time").Int(s).Key("timeEnd").Int(e).Key("isRegion").Bool(true);
              w.Key("title").String("invalid traffic").Key("text").String(text).Key("tags");
              w.BeginArray();
              for (const std::string& tg : tags) w.String(tg);
              w.EndArray().EndObject();
            });
      } else if (t.annotation) {
        WriteAnnotationFrame(w, t, table);
      } else if (t.table) {
        WriteTable(w, t, table);
      } else {
        WriteSeries(w, t, series);
      }
      w.EndArray();
      fan_in->Done(i, Inner(w));
    };
    if (plan->matches_nothing) {
      finish(ResultTable(), plan->q.spec);
      continue;
    }
    impl.RunQuery(producer, caller, plan->q.spec,
                  WithMessage([fan_in](HttpResponse r) { fan_in->Fail(std::move(r)); }),
                  std::move(finish));
  }
}

}  // namespace

void Api::Impl::Grafana(int producer, const Caller& caller, std::string_view sub, HttpRequest&& req,
                        Responder respond) {
  // A datasource URL ending in '/' makes the plugin ask for /grafana//query.
  while (sub.size() >= 2 && sub[0] == '/' && sub[1] == '/') sub.remove_prefix(1);
  if (sub.empty() || sub == "/") {
    // The plugin's "Save & test": only an exact 200 passes.
    if (req.method != "GET" && req.method != "HEAD" && req.method != "POST") {
      respond(GrafanaError(405, fmt::format("/grafana does not accept {}; use GET", req.method)));
      return;
    }
    respond(JsonResponse(R"({"status":"ok","datasource":"adpulse"})"));
    return;
  }
  if (req.method != "POST" && req.method != "GET") {
    HttpResponse r =
        GrafanaError(405, fmt::format("/grafana{} does not accept {}; use POST", sub, req.method));
    r.headers.emplace_back("Allow", "POST");
    respond(std::move(r));
    return;
  }
  if (sub.back() == '/') sub.remove_suffix(1);
  simdjson::dom::parser parser;
  bool empty_ok = sub != "/query";
  auto parsed = ParseBody(parser, req.body, empty_ok);
  if (!parsed.ok()) {
    respond(GrafanaError(400, Message(parsed.status())));
    return;
  }
  element root = *parsed;
  auto fail = [&](const absl::Status& s) { respond(GrafanaStatus(s)); };
  auto range = OptionalRange(root);
  if (!range.ok()) return fail(range.status());
  int64_t now = NowMs();
  int64_t from = range->has_value() ? (*range)->first : now - kValuesLookbackMs;
  int64_t to = range->has_value() ? (*range)->second : now + kMinuteMs;

  auto list_of = [](const std::vector<std::string_view>& names, bool label_value) {
    JsonWriter w;
    w.BeginArray();
    for (std::string_view n : names) {
      if (label_value) {
        w.BeginObject().Key("label").String(n).Key("value").String(n).EndObject();
      } else {
        w.String(n);
      }
    }
    w.EndArray();
    return w.Take();
  };
  std::vector<std::string_view> metric_names, dim_names;
  for (int i = 0; i < kMetricCount; ++i) metric_names.push_back(MetricName(static_cast<Metric>(i)));
  for (int i = 0; i < kDimCount; ++i) {
    Dim d = static_cast<Dim>(i);
    if (catalog.Select({d}, false).ok()) dim_names.push_back(DimName(d));
  }

  if (sub == "/metrics") {
    JsonWriter w;
    w.BeginArray();
    for (std::string_view m : metric_names) {
      w.BeginObject().Key("label").String(m).Key("value").String(m).Key("payloads").BeginArray();
      w.BeginObject()
          .Key("name")
          .String("group_by")
          .Key("label")
          .String("Group by")
          .Key("type")
          .String("multi-select")
          .Key("placeholder")
          .String("one series per group")
          .Key("options")
          .BeginArray();
      for (std::string_view d : dim_names) {
        w.BeginObject().Key("label").String(d).Key("value").String(d).EndObject();
      }
      w.EndArray().EndObject();
      w.BeginObject()
          .Key("name")
          .String("format")
          .Key("label")
          .String("Format")
          .Key("type")
          .String("select")
          .Key("options")
          .BeginArray();
      for (std::string_view f : {"time_series", "table"}) {
        w.BeginObject().Key("label").String(f).Key("value").String(f).EndObject();
      }
      w.EndArray().EndObject();
      for (std::string_view d : dim_names) {
        // Options come from /metric-payload-options: the values seen lately.
        w.BeginObject().Key("name").String(d).Key("label").String(d);
        w.Key("type").String("multi-select").Key("placeholder").String("any").EndObject();
      }
      w.EndArray().EndObject();
    }
    w.EndArray();
    respond(JsonResponse(w.Take()));
    return;
  }
  if (sub == "/metric-payload-options") {
    element name;
    if (root["name"].get(name) || !name.is_string()) {
      return fail(absl::InvalidArgumentError("name is required (the payload to list options of)"));
    }
    std::string_view n = Str(name);
    if (n == "group_by") return respond(JsonResponse(list_of(dim_names, true)));
    if (n == "format") return respond(JsonResponse(list_of({"time_series", "table"}, true)));
    auto dim = DimParam("name", n);
    if (!dim.ok()) return fail(dim.status());
    Filters filters;
    GrafanaValues(*this, producer, caller, *dim, filters, from, to, respond,
                  [respond](std::vector<std::string> values) {
                    JsonWriter w;
                    w.BeginArray();
                    for (const std::string& v : values) {
                      w.BeginObject().Key("label").String(v).Key("value").String(v).EndObject();
                    }
                    w.EndArray();
                    respond(JsonResponse(w.Take()));
                  });
    return;
  }
  if (sub == "/tag-keys") {
    JsonWriter w;
    w.BeginArray();
    for (std::string_view d : dim_names) {
      w.BeginObject().Key("type").String("string").Key("text").String(d).EndObject();
    }
    w.EndArray();
    respond(JsonResponse(w.Take()));
    return;
  }
  if (sub == "/tag-values") {
    element key;
    if (root["key"].get(key) || !key.is_string()) {
      return fail(absl::InvalidArgumentError("key is required (a dimension, from /tag-keys)"));
    }
    auto dim = DimParam("key", Str(key));
    if (!dim.ok()) return fail(dim.status());
    Filters filters;
    GrafanaValues(*this, producer, caller, *dim, filters, from, to, respond,
                  [respond](std::vector<std::string> values) {
                    JsonWriter w;
                    w.BeginArray();
                    for (const std::string& v : values)
                      w.BeginObject().Key("text").String(v).EndObject();
                    w.EndArray();
                    respond(JsonResponse(w.Take()));
                  });
    return;
  }
  if (sub == "/variable" || sub == "/search") {
    // /variable: {"payload": {"target": "campaign_id", "advertiser_id": "adv-1"}}; /search (the
    // legacy plugin): {"target": "campaign_id"}. "metrics" and "dimensions" list those names; an
    // empty target lists the metrics (what the legacy query editor offers).
    std::string target;
    Filters filters;
    Payload unused;
    element payload, t;
    if (sub == "/variable" && !root["payload"].get(payload) && payload.is_object()) {
      if (!payload["target"].get(t) && t.is_string()) target = std::string(Str(t));
      // The other payload fields filter the values, for chained variables.
      absl::Status s = ReadPayload(payload, unused, filters);
      if (!s.ok()) return fail(s);
    } else if (!root["target"].get(t) && t.is_string()) {
      target = std::string(Str(t));
    }
    if (absl::Status s = ReadAdHocFilters(root, filters); !s.ok()) return fail(s);
    bool variable = sub == "/variable";
    auto answer = [respond, variable](const std::vector<std::string>& values) {
      JsonWriter w;
      w.BeginArray();
      for (const std::string& v : values) {
        if (variable) {
          w.BeginObject().Key("__text").String(v).Key("__value").String(v).EndObject();
        } else {
          w.String(v);
        }
      }
      w.EndArray();
      respond(JsonResponse(w.Take()));
    };
    if (target.empty() || target == "metrics" || target == "dimensions") {
      const auto& names = target == "dimensions" ? dim_names : metric_names;
      answer(std::vector<std::string>(names.begin(), names.end()));
      return;
    }
    auto dim = DimParam("target", target);
    if (!dim.ok() && !variable) {
      // The legacy query editor sends what has been typed so far: the metrics it begins.
      std::vector<std::string> matching;
      for (std::string_view m : metric_names) {
        bool begins = m.size() >= target.size() &&
                      std::equal(target.begin(), target.end(), m.begin(), [](char x, char y) {
                        return std::tolower(static_cast<unsigned char>(x)) ==
                               std::tolower(static_cast<unsigned char>(y));
                      });
        if (begins) matching.emplace_back(m);
      }
      answer(matching);
      return;
    }
    if (!dim.ok()) {
      return fail(absl::InvalidArgumentError(
          fmt::format("target '{}' is not a dimension, 'metrics' or 'dimensions'", target)));
    }
    GrafanaValues(*this, producer, caller, *dim, filters, from, to, respond, answer);
    return;
  }
  if (sub == "/query" || sub == "/annotations") {
    GrafanaQuery(*this, producer, caller, sub == "/annotations", root, respond);
    return;
  }
  respond(GrafanaError(404, fmt::format("no Grafana endpoint {} /grafana{}", req.method, sub)));
}

}  // namespace adpulse
