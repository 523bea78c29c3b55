#include "http/api.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>

#include "absl/strings/ascii.h"
#include "base/json_writer.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/time_parse.h"
#include "fraud/fraud_stage.h"
#include "http/api_internal.h"
#include "http/auth.h"
#include "http/dashboard.h"
#include "ingest/gzip.h"
#include "state/click_attribution.h"
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

using namespace api_internal;

void Api::Impl::PostEvents(int producer, HttpRequest&& req, Responder respond) {
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
    // A body inflates to at most max_decoded_body_bytes, and to at most kMaxInflateRatio times
    // its own size past the first MiB: a gzip bomb (zeros compress a thousandfold) is refused
    // after a little work, not after inflating the whole limit. Real event batches compress
    // 5 to 20 times.
    constexpr size_t kMaxInflateRatio = 100;
    size_t cap = std::min(opt.max_decoded_body_bytes,
                          std::max<size_t>(1 << 20, req.body.size() * kMaxInflateRatio));
    auto inflated = GunzipBody(req.body, cap, simdjson::SIMDJSON_PADDING);
    if (!inflated.ok() && absl::IsResourceExhausted(inflated.status()) &&
        cap < opt.max_decoded_body_bytes) {
      respond(ErrorResponse(
          413, fmt::format("the gzip body inflates past {} bytes, more than {} times its {} bytes "
                           "(a decompression bomb?); send batches that compress less, or smaller",
                           cap, kMaxInflateRatio, req.body.size())));
      return;
    }
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
  auto started = std::chrono::steady_clock::now();
  absl::Status decoded = decoder.Decode(format, body, opt.validation, NowMs(), request->batch);
  events_received.fetch_add(request->batch.total, std::memory_order_relaxed);
  if (!decoded.ok()) {
    delete request;
    pipeline.Release();
    respond(ErrorResponse(400, Message(decoded)));
    return;
  }
  if (opt.fraud) {
    IngestBatch& b = request->batch;
    opt.fraud->Process(producer, b.events.data(), b.events.size(), b.enriched);
  }
  ClickAttribution::Clicks clicks;
  if (opt.attribution) {
    IngestBatch& b = request->batch;
    absl::Status attributed =
        opt.attribution->Attribute(b.events.data(), b.events.size(), b.enriched);
    if (!attributed.ok()) {
      // Nothing of the request went to the shards: resending it is safe.
      LOG_ERROR("attribution: {}", Message(attributed));
      delete request;
      pipeline.Release();
      HttpResponse r =
          ErrorResponse(503, fmt::format("events could not be attributed: {}; resend the request",
                                         Message(attributed)));
      r.headers.emplace_back("Retry-After", std::to_string(opt.retry_after_s));
      respond(std::move(r));
      return;
    }
    clicks = opt.attribution->PrepareClicks(b.events.data(), b.events.size());
  }
  // The request is answered when its shards have logged it and, if it has clicks, they are
  // indexed for attribution: the two go on at once, whichever ends last answers. An index write
  // that fails (a full disk) does not refuse the request: its events are counted as logged, and
  // only those clicks go unindexed (counted and logged by ClickAttribution).
  struct Join {
    std::atomic<int> left{1};
    std::function<void()> answer;
  };
  auto join = std::make_shared<Join>();
  if (!clicks.empty()) join->left.store(2, std::memory_order_relaxed);
  request->on_done = [join] {
    if (join->left.fetch_sub(1, std::memory_order_acq_rel) == 1) join->answer();
  };
  join->answer = [this, request, started, respond = std::move(respond)]() {
    ingest_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
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
    for (size_t i = 0; i < kRejectReasons.size(); ++i) {
      if (b.rejected_by_reason[i] > 0) {
        events_rejected[i]->fetch_add(b.rejected_by_reason[i], std::memory_order_relaxed);
      }
    }
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
  pipeline.SubmitIngest(producer, request);  // may answer, and free the request, at once
  if (!clicks.empty()) {
    opt.attribution->WriteClicksAsync(std::move(clicks), [join](absl::Status) {
      if (join->left.fetch_sub(1, std::memory_order_acq_rel) == 1) join->answer();
    });
  }
}

Api::Api(const ApiOptions& options, const CubeCatalog& catalog, Pipeline& pipeline,
         MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>(*this, catalog, pipeline, metrics)), options_(options) {
  if (options_.auth) {
    for (const TokenSpec& t : options_.auth->tokens()) {
      impl_->requests_by_token.emplace(
          t.name, &metrics.GetCounter("adpulse_requests_by_token_total",
                                      "Requests authenticated, by the name of their token.",
                                      fmt::format("token=\"{}\"", t.name)));
    }
  }
}

Api::~Api() = default;

namespace {

struct Route {
  std::string_view method;  // GET answers HEAD too; "GET, POST": the handler checks
  std::string_view path;
  Access access;
};

// Every endpoint the daemon serves but the dashboard's files (open, DashboardPaths()). A path
// under /grafana not listed here is answered by the Grafana handler (404) with kQuery's checks.
constexpr Route kRoutes[] = {
    {"POST", "/v1/events", Access::kIngest},
    {"GET", "/healthz", Access::kOpen},
    {"GET", "/readyz", Access::kOpen},
    {"GET", "/metrics", Access::kMonitor},
    {"GET", "/v1/metrics/realtime", Access::kQuery},
    {"GET", "/v1/metrics", Access::kQuery},
    {"POST", "/v1/query", Access::kQuery},
    {"GET", "/v1/top", Access::kQuery},
    {"GET", "/v1/funnel", Access::kQuery},
    {"GET", "/v1/billing", Access::kQuery},
    {"GET", "/v1/fraud", Access::kQuery},
    {"GET", "/v1/fraud/events", Access::kQuery},
    {"POST", "/v1/admin/reconcile", Access::kAdmin},
    {"GET", "/v1/admin/routes", Access::kAdmin},
    {"GET, POST", "/grafana", Access::kQuery},
    {"GET, POST", "/grafana/metrics", Access::kQuery},
    {"GET, POST", "/grafana/metric-payload-options", Access::kQuery},
    {"GET, POST", "/grafana/tag-keys", Access::kQuery},
    {"GET, POST", "/grafana/tag-values", Access::kQuery},
    {"GET, POST", "/grafana/variable", Access::kQuery},
    {"GET, POST", "/grafana/search", Access::kQuery},
    {"GET, POST", "/grafana/query", Access::kQuery},
    {"GET, POST", "/grafana/annotations", Access::kQuery},
};

std::string_view AccessText(Access a) {
  switch (a) {
    case Access::kOpen:
      return "none";
    case Access::kIngest:
      return "ingest";
    case Access::kQuery:
      return "read or advertiser:<advertiser_id>";
    case Access::kMonitor:
      return "read or admin";
    case Access::kAdmin:
      return "admin";
  }
  return "?";
}

bool Grants(const Caller& c, Access a) {
  switch (a) {
    case Access::kOpen:
      return true;
    case Access::kIngest:
      return c.Has(Scope::kIngest);
    case Access::kQuery:
      return c.Reads();
    case Access::kMonitor:
      return c.Has(Scope::kRead) || c.Has(Scope::kAdmin);
    case Access::kAdmin:
      return c.Has(Scope::kAdmin);
  }
  return false;
}

// "/grafana//query/" as the Grafana handler reads it: "/grafana/query".
std::string GrafanaRoutePath(std::string_view path) {
  std::string_view sub = path.substr(8);
  while (sub.size() >= 2 && sub[0] == '/' && sub[1] == '/') sub.remove_prefix(1);
  while (sub.size() > 1 && sub.back() == '/') sub.remove_suffix(1);
  if (sub == "/") sub = {};
  return fmt::format("/grafana{}", sub);
}

}  // namespace

// Answers the request itself (and returns false) when its caller may not call `access`.
bool Api::Impl::Authorize(Access access, const HttpRequest& req, std::string_view path,
                          Caller& caller, Responder& respond) {
  Authenticator* auth = api.options_.auth;
  if (!auth || auth->open()) {
    caller = Caller::Open();
    return true;
  }
  if (access == Access::kOpen) return true;
  auto refuse = [&](unsigned status, MetricsRegistry::Counter& counter, std::string message) {
    counter.fetch_add(1, std::memory_order_relaxed);
    HttpResponse r = ErrorResponse(status, message);
    if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"adpulse\"");
    respond(std::move(r));
    return false;
  };
  Authenticator::Result r = auth->Authenticate(req.authorization, req.client_address);
  switch (r.outcome) {
    case Authenticator::Outcome::kRateLimited: {
      auth_rate_limited.fetch_add(1, std::memory_order_relaxed);
      HttpResponse res =
          ErrorResponse(429, fmt::format("too many failed authentications from {}; retry in {} s",
                                         req.client_address, r.retry_after_s));
      res.headers.emplace_back("Retry-After", std::to_string(r.retry_after_s));
      respond(std::move(res));
      return false;
    }
    case Authenticator::Outcome::kMissing:
      return refuse(401, auth_missing,
                    fmt::format("{} {} needs a token with scope {}: send Authorization: Bearer "
                                "<token>",
                                req.method, path, AccessText(access)));
    case Authenticator::Outcome::kUnknown:
      return refuse(401, auth_unknown,
                    fmt::format("the bearer token is not known (adpulse token makes one); {} {} "
                                "needs scope {}",
                                req.method, path, AccessText(access)));
    case Authenticator::Outcome::kOk:
      break;
  }
  const TokenSpec& t = *r.token;
  caller.name = t.name;
  caller.scopes = t.scopes;
  caller.advertisers = t.advertisers;
  if (auto it = requests_by_token.find(t.name); it != requests_by_token.end()) {
    it->second->fetch_add(1, std::memory_order_relaxed);
  }
  if (!Grants(caller, access)) {
    return refuse(
        403, auth_forbidden,
        fmt::format("token '{}' lacks the scope {} needs: {}", t.name, path, AccessText(access)));
  }
  return true;
}

void Api::Impl::Routes(Responder respond) {
  JsonWriter w;
  w.BeginObject().Key("routes").BeginArray();
  auto route = [&w](std::string_view method, std::string_view path, Access a) {
    w.BeginObject().Key("method").String(method).Key("path").String(path);
    w.Key("scope").String(AccessText(a)).EndObject();
  };
  for (const Route& r : kRoutes) route(r.method, r.path, r.access);
  for (std::string_view p : DashboardPaths()) route("GET", p, Access::kOpen);
  w.EndArray().EndObject();
  respond(JsonResponse(w.Take()));
}

void Api::Handle(int producer, HttpRequest&& request, Responder respond) {
  ParsedTarget target = ParseTarget(request.target);
  const std::string& path = target.path;
  const std::string& method = request.method;
  bool grafana = path == "/grafana" || path.rfind("/grafana/", 0) == 0;
  const Route* route = nullptr;
  std::string route_path = grafana ? GrafanaRoutePath(path) : path;
  for (const Route& r : kRoutes) {
    if (r.path == route_path) route = &r;
  }
  const DashboardAsset* asset = route ? nullptr : FindDashboardAsset(path);
  if (!route && !asset && !grafana) {
    respond(ErrorResponse(404, fmt::format("no endpoint {} {}", method, path)));
    return;
  }
  std::string_view allowed = route ? route->method : grafana ? "GET, POST" : "GET";
  if (allowed != "GET, POST" && method != allowed && !(allowed == "GET" && method == "HEAD")) {
    HttpResponse r =
        ErrorResponse(405, fmt::format("{} does not accept {}; use {}", path, method, allowed));
    r.headers.emplace_back("Allow", std::string(allowed));
    respond(std::move(r));
    return;
  }
  Caller caller;
  Access access = route ? route->access : grafana ? Access::kQuery : Access::kOpen;
  if (!impl_->Authorize(access, request, path, caller, respond)) return;
  // Grafana's health check answers while recovering too; its data calls wait like /v1/'s.
  bool data_path = path.rfind("/v1/", 0) == 0 || (grafana && route_path.size() > 8);
  if (data_path && !ready_.load()) {
    HttpResponse r = ErrorResponse(503, "adpulse is recovering its state; not ready yet");
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
    return;
  }
  if (asset) {
    HttpResponse r;
    r.content_type = std::string(asset->content_type);
    r.body = std::string(asset->body);
    // The page and its script change with the binary; the browser asks again each load.
    r.headers.emplace_back("Cache-Control", "no-cache");
    respond(std::move(r));
    return;
  }
  if (grafana) {
    std::string_view sub = std::string_view(path).substr(8);
    impl_->Grafana(producer, caller, sub, std::move(request), std::move(respond));
    return;
  }
  if (path == "/v1/events") {
    impl_->PostEvents(producer, std::move(request), std::move(respond));
  } else if (path == "/healthz") {
    respond(JsonResponse(R"({"status":"ok"})"));
  } else if (path == "/readyz") {
    if (ready_.load()) {
      respond(JsonResponse(R"({"status":"ready"})"));
    } else {
      HttpResponse r = ErrorResponse(503, "recovering; not ready yet");
      r.headers.emplace_back("Retry-After", "1");
      respond(std::move(r));
    }
  } else if (path == "/metrics") {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = impl_->metrics.Render();
    respond(std::move(r));
  } else if (path == "/v1/metrics/realtime") {
    impl_->Realtime(producer, caller, target, std::move(respond));
  } else if (path == "/v1/metrics" || path == "/v1/query") {
    QueryRequest q;
    absl::Status s = path == "/v1/metrics" ? impl_->ReadMetricsParams(caller, target, q)
                                           : impl_->ReadQueryBody(caller, request.body, q);
    if (!s.ok()) {
      respond(StatusResponse(s));
      return;
    }
    impl_->Metrics(producer, caller, q, std::move(respond));
  } else if (path == "/v1/top") {
    impl_->Top(producer, caller, target, std::move(respond));
  } else if (path == "/v1/funnel") {
    impl_->Funnel(producer, caller, target, std::move(respond));
  } else if (path == "/v1/billing") {
    impl_->Billing(producer, caller, target, std::move(respond));
  } else if (path == "/v1/fraud") {
    impl_->FraudReport(caller, target, std::move(respond));
  } else if (path == "/v1/fraud/events") {
    impl_->FraudEvents(caller, target, std::move(respond));
  } else if (path == "/v1/admin/reconcile") {
    impl_->Reconcile(producer, target, std::move(respond));
  } else if (path == "/v1/admin/routes") {
    impl_->Routes(std::move(respond));
  } else {
    // A route in kRoutes without its handler here: a bug, not the caller's fault.
    respond(ErrorResponse(500, fmt::format("{} {} has no handler", method, path)));
  }
}

}  // namespace adpulse
