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
  bool grafana = path == "/grafana" || path.rfind("/grafana/", 0) == 0;
  // Grafana's health check answers while recovering too; its data calls wait like /v1/'s.
  bool data_path = path.rfind("/v1/", 0) == 0 || (grafana && path.size() > 9);
  if (data_path && !ready_.load()) {
    HttpResponse r = ErrorResponse(503, "adpulse is recovering its state; not ready yet");
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
    return;
  }
  if (const DashboardAsset* asset = FindDashboardAsset(path)) {
    if (!expect("GET")) return;
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
    impl_->Grafana(producer, sub, std::move(request), std::move(respond));
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
  if (path == "/v1/fraud") {
    if (expect("GET")) impl_->FraudReport(target, std::move(respond));
    return;
  }
  if (path == "/v1/fraud/events") {
    if (expect("GET")) impl_->FraudEvents(target, std::move(respond));
    return;
  }
  if (path == "/v1/billing") {
    if (expect("GET")) impl_->Billing(producer, target, std::move(respond));
    return;
  }
  respond(ErrorResponse(404, fmt::format("no endpoint {} {}", method, path)));
}

}  // namespace adpulse
