// /v1/admin/*: reconciliation of the stored aggregates against the raw events.
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
using namespace api_internal;

void Api::Impl::Reconcile(int producer, const ParsedTarget& t, Responder respond) {
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
            // A rebuild the raw events cannot support is the caller's to change: a 400.
            int code = s.code() == absl::StatusCode::kFailedPrecondition ? 400 : 503;
            respond(ErrorResponse(code, fmt::format("reconciliation failed: {}", Message(s))));
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

}  // namespace adpulse
