// Reading the Grafana plugin's requests: payload values (as the plugin formats them), ad hoc
// filters, time ranges and bodies. No I/O; http/grafana_handlers.cc answers the calls.
#include "http/grafana_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>

#include "base/status_macros.h"
#include "base/time_parse.h"
#include "http/api_internal.h"

namespace adpulse {
namespace grafana_internal {
using namespace api_internal;

HttpResponse GrafanaError(unsigned status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  JsonWriter w;
  // The plugin shows `message`; `error` is what the rest of the API says.
  w.BeginObject().Key("message").String(message).Key("error").String(message).EndObject();
  r.body = w.Take();
  r.body.push_back('\n');
  return r;
}

HttpResponse GrafanaStatus(const absl::Status& s) {
  return GrafanaError(s.code() == absl::StatusCode::kPermissionDenied ? 403 : 400, Message(s));
}

namespace {
// Grafana's "regex" formatting, which the plugin applies to every builder value: a variable's
// value has its regex metacharacters escaped (summer\.sale), and a multi-value variable becomes
// (a|b). Unescapes, and splits such a group; otherwise a string is one value, or a comma list.
void AddFormattedValues(std::string_view s, std::vector<std::string>& out) {
  auto unescape = [](std::string_view v) {
    std::string r;
    r.reserve(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] == '\\' && i + 1 < v.size()) ++i;
      r.push_back(v[i]);
    }
    return r;
  };
  // Splits on the separator where it is not escaped.
  auto split = [&](std::string_view v, char sep) {
    size_t begin = 0;
    for (size_t i = 0; i <= v.size(); ++i) {
      if (i < v.size() && v[i] == '\\') {
        ++i;
        continue;
      }
      if (i == v.size() || v[i] == sep) {
        std::string_view part = v.substr(begin, i - begin);
        while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
        while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
        if (!part.empty()) out.push_back(unescape(part));
        begin = i + 1;
      }
    }
  };
  bool escaped_end = s.size() >= 2 && s[s.size() - 2] == '\\';
  if (s.size() >= 2 && s.front() == '(' && s.back() == ')' && !escaped_end) {
    split(s.substr(1, s.size() - 2), '|');
    return;
  }
  if (s.size() >= 2 && s.front() == '{' && s.back() == '}') s = s.substr(1, s.size() - 2);
  split(s, ',');
}
}  // namespace

// A payload value as strings: "a", "a,b", "(a|b)" or "{a,b}" (a multi-value variable, as the
// plugin and older ones send it), or ["a", "b"].
absl::Status StringValues(element e, std::string_view name, std::vector<std::string>& out) {
  if (e.is_string()) {
    AddFormattedValues(Str(e), out);
    return absl::OkStatus();
  }
  if (e.is_array()) {
    for (element v : e.get_array()) {
      if (v.is_string()) {
        AddFormattedValues(Str(v), out);
      } else if (v.is_int64() || v.is_uint64() || v.is_double()) {
        out.push_back(simdjson::minify(v));
      } else {
        return absl::InvalidArgumentError(fmt::format("{} must be a list of strings", name));
      }
    }
    return absl::OkStatus();
  }
  if (e.is_null()) return absl::OkStatus();
  if (e.is_int64() || e.is_uint64() || e.is_double()) {
    out.push_back(simdjson::minify(e));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(fmt::format("{} must be a string or a list of strings", name));
}

absl::StatusOr<int64_t> TimeField(element obj, std::string_view field, std::string_view name) {
  element v;
  if (obj[field].get(v)) {
    return absl::InvalidArgumentError(fmt::format("{} is required (an ISO 8601 time)", name));
  }
  if (v.is_int64()) return v.get_int64().value();
  if (v.is_string()) return ParseTimeMs(name, Str(v));
  return absl::InvalidArgumentError(fmt::format("{} must be an ISO 8601 time or epoch ms", name));
}

// The request's range, or nothing when it has none.
absl::StatusOr<std::optional<std::pair<int64_t, int64_t>>> OptionalRange(element root) {
  element range;
  if (!root.is_object() || root["range"].get(range) || !range.is_object()) {
    return std::optional<std::pair<int64_t, int64_t>>();
  }
  ASSIGN_OR_RETURN(int64_t from, TimeField(range, "from", "range.from"));
  ASSIGN_OR_RETURN(int64_t to, TimeField(range, "to", "range.to"));
  if (to <= from) {
    return absl::InvalidArgumentError(
        fmt::format("range.to ({}) must be after range.from ({})", to, from));
  }
  return std::optional<std::pair<int64_t, int64_t>>({from, to});
}

namespace {
absl::Status ReadAdHocFilter(element f, Filters& filters) {
  if (!f.is_object()) return absl::InvalidArgumentError("each ad hoc filter must be an object");
  element key, op, value, values;
  if (f["key"].get(key) || !key.is_string()) {
    return absl::InvalidArgumentError("an ad hoc filter has no key");
  }
  ASSIGN_OR_RETURN(Dim d, DimParam("filters", Str(key)));
  std::string_view oper = "=";
  if (!f["operator"].get(op) && op.is_string()) oper = Str(op);
  std::vector<std::string> vals;
  if (!f["values"].get(values) && values.is_array() && (oper == "=|" || oper == "!=|")) {
    RETURN_IF_ERROR(StringValues(values, "filters.values", vals));
  } else if (!f["value"].get(value)) {
    if (value.is_string()) {
      vals.emplace_back(Str(value));
    } else {
      RETURN_IF_ERROR(StringValues(value, "filters.value", vals));
    }
  }
  if (oper == "=" || oper == "=|") return filters.AddEqual(d, std::move(vals));
  GroupFilter g;
  g.dim = d;
  if (oper == "!=" || oper == "!=|") {
    g.negate = true;
    g.values.insert(vals.begin(), vals.end());
  } else if (oper == "=~" || oper == "!~") {
    g.negate = oper == "!~";
    auto re = std::make_shared<RE2>(vals.empty() ? std::string() : vals[0], RE2::Quiet);
    if (!re->ok()) {
      return absl::InvalidArgumentError(fmt::format("filters: '{}' is not a regular expression: {}",
                                                    vals.empty() ? "" : vals[0], re->error()));
    }
    g.regex = std::move(re);
  } else {
    return absl::InvalidArgumentError(
        fmt::format("filters: operator '{}' on {} is not supported; use =, !=, =~, !~, =| or !=|",
                    oper, DimName(d)));
  }
  filters.group.push_back(std::move(g));
  return absl::OkStatus();
}
}  // namespace

// `filters` and `adhocFilters` of a request (both read: a plugin sends one or the other).
absl::Status ReadAdHocFilters(element root, Filters& filters) {
  for (const char* field : {"filters", "adhocFilters"}) {
    element list;
    if (root[field].get(list) || list.is_null()) continue;
    if (!list.is_array()) {
      return absl::InvalidArgumentError(fmt::format("{} must be a list of filters", field));
    }
    for (element f : list.get_array()) RETURN_IF_ERROR(ReadAdHocFilter(f, filters));
  }
  return absl::OkStatus();
}

namespace {
absl::Status ReadNumber(element v, std::string_view name, double lo, double hi, double* out) {
  double x;
  if (v.is_string()) {
    std::string s(Str(v));
    if (s.empty()) return absl::OkStatus();
    char* end = nullptr;
    x = std::strtod(s.c_str(), &end);
    if (*end != '\0') {
      return absl::InvalidArgumentError(fmt::format("{} '{}' is not a number", name, s));
    }
  } else if (v.is_number()) {
    x = v.get_double().value();
  } else {
    return absl::InvalidArgumentError(fmt::format("{} must be a number", name));
  }
  if (!(x >= lo && x <= hi)) {
    return absl::InvalidArgumentError(fmt::format("{} {} must be from {} to {}", name, x, lo, hi));
  }
  *out = x;
  return absl::OkStatus();
}
}  // namespace

absl::Status ReadPayload(element payload, Payload& p, Filters& filters) {
  if (!payload.is_object()) return absl::OkStatus();
  for (auto [k, v] : payload.get_object()) {
    std::string_view key = k;
    if (key == "group_by" || key == "groupBy" || key == "dimensions") {
      std::vector<std::string> names;
      RETURN_IF_ERROR(StringValues(v, "payload.group_by", names));
      for (const std::string& n : names) {
        ASSIGN_OR_RETURN(Dim d, DimParam("payload.group_by", n));
        if (std::find(p.group_by.begin(), p.group_by.end(), d) == p.group_by.end()) {
          p.group_by.push_back(d);
        }
      }
    } else if (key == "format") {
      std::vector<std::string> f;
      RETURN_IF_ERROR(StringValues(v, "payload.format", f));
      if (!f.empty() && f[0] != "time_series" && f[0] != "timeseries" && f[0] != "table") {
        return absl::InvalidArgumentError(
            fmt::format("payload.format '{}' is not time_series or table", f[0]));
      }
      p.table = !f.empty() && f[0] == "table";
    } else if (key == "threshold") {
      RETURN_IF_ERROR(ReadNumber(v, "payload.threshold", 0, 1, &p.spike_share));
    } else if (key == "min_events") {
      double n = static_cast<double>(p.spike_min_events);
      RETURN_IF_ERROR(ReadNumber(v, "payload.min_events", 0, 1e12, &n));
      p.spike_min_events = static_cast<uint64_t>(n);
    } else if (auto d = ParseDim(key)) {
      std::vector<std::string> values;
      RETURN_IF_ERROR(StringValues(v, fmt::format("payload.{}", key), values));
      // "$__all" or an empty selection means no filter, as Grafana's "All" does.
      values.erase(std::remove_if(
                       values.begin(), values.end(),
                       [](const std::string& s) { return s == "$__all" || s == "*" || s == ".*"; }),
                   values.end());
      if (!values.empty()) RETURN_IF_ERROR(filters.AddEqual(*d, std::move(values)));
    }
    // Anything else is ignored: the plugin and dashboards may carry fields of their own.
  }
  return absl::OkStatus();
}

absl::StatusOr<element> ParseBody(simdjson::dom::parser& parser, const std::string& body,
                                  bool empty_ok) {
  std::string_view b = body;
  while (!b.empty() && (b.front() == ' ' || b.front() == '\n' || b.front() == '\r')) {
    b.remove_prefix(1);
  }
  if (b.empty()) {
    if (!empty_ok) return absl::InvalidArgumentError("the request has no body; send a JSON object");
    b = "{}";
  }
  element root;
  if (auto err = parser.parse(b.data(), b.size()).get(root)) {
    return absl::InvalidArgumentError(
        fmt::format("body is not valid JSON: {}", simdjson::error_message(err)));
  }
  if (!root.is_object()) return absl::InvalidArgumentError("body must be a JSON object");
  return root;
}

}  // namespace grafana_internal
}  // namespace adpulse
