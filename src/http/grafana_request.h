// Reading the Grafana plugin's requests (http/grafana_request.cc): payload values as the plugin
// formats them, ad hoc filters, ranges and bodies, into what http/grafana_handlers.cc plans
// queries from. No I/O.
#pragma once
#include <re2/re2.h>
#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "adpulse/event.h"
#include "http/http_types.h"

namespace adpulse {
namespace grafana_internal {

using simdjson::dom::element;

inline std::string_view Str(element e) { return std::string_view(e.get_string().value()); }

// Annotation defaults: a bucket is marked when at least this share of its events is invalid, and
// at least this many.
constexpr double kDefaultSpikeShare = 0.2;
constexpr uint64_t kDefaultSpikeMinEvents = 50;

// A condition on one dimension that the cube's filters cannot express: checked on each group.
struct GroupFilter {
  Dim dim;
  bool negate = false;               // != / !=| / !~
  std::set<std::string> values;      // != and !=|
  std::shared_ptr<const RE2> regex;  // =~ and !~ (whole value, as Prometheus matches)
  bool Matches(const std::string& v) const {
    bool hit = regex ? RE2::FullMatch(v, *regex) : values.count(v) > 0;
    return hit != negate;
  }
};

// Ad hoc filters and payload filters, gathered before they go into a query.
struct Filters {
  std::map<Dim, std::set<std::string>> equal;  // AND across filters: the values intersect
  std::vector<GroupFilter> group;

  absl::Status AddEqual(Dim d, std::vector<std::string> values) {
    std::set<std::string> v(values.begin(), values.end());
    auto it = equal.find(d);
    if (it == equal.end()) {
      equal.emplace(d, std::move(v));
      return absl::OkStatus();
    }
    std::set<std::string> both;
    std::set_intersection(it->second.begin(), it->second.end(), v.begin(), v.end(),
                          std::inserter(both, both.begin()));
    it->second = std::move(both);
    return absl::OkStatus();
  }
  // True when the equality filters leave no value possible.
  bool Empty() const {
    for (const auto& [d, v] : equal)
      if (v.empty()) return true;
    return false;
  }
};

// What a payload says (builder mode sends every value as a string).
struct Payload {
  std::vector<Dim> group_by;
  bool table = false;
  double spike_share = kDefaultSpikeShare;
  uint64_t spike_min_events = kDefaultSpikeMinEvents;
};

// An error as the plugin shows it: {"message": ..} (and {"error": ..}, as the rest of the API).
HttpResponse GrafanaError(unsigned status, std::string_view message);
// The same for a status: 403 for PermissionDenied (a token's advertisers), 400 for any other.
HttpResponse GrafanaStatus(const absl::Status& s);
// A payload value as strings: "a", "a,b", "(a|b)" or "{a,b}" (a multi-value variable, regex-
// escaped as the plugin sends it, or as older ones do), or ["a", "b"].
absl::Status StringValues(element e, std::string_view name, std::vector<std::string>& out);
// range.from / range.to: an ISO 8601 time or epoch ms.
absl::StatusOr<int64_t> TimeField(element obj, std::string_view field, std::string_view name);
// The request's range, or nothing when it has none.
absl::StatusOr<std::optional<std::pair<int64_t, int64_t>>> OptionalRange(element root);
// `filters` and `adhocFilters` of a request (both read: a plugin sends one or the other).
absl::Status ReadAdHocFilters(element root, Filters& filters);
// A payload: group_by, format, annotation settings, and dimension values as equality filters.
absl::Status ReadPayload(element payload, Payload& p, Filters& filters);
// The body as a JSON object; an empty body is {} when `empty_ok`.
absl::StatusOr<element> ParseBody(simdjson::dom::parser& parser, const std::string& body,
                                  bool empty_ok);

}  // namespace grafana_internal
}  // namespace adpulse
