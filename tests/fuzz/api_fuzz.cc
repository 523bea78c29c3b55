// libFuzzer target: any bytes as one request to the read side of the HTTP API, in process, against
// a real pipeline (one worker, no log, some events ingested first) with the default cubes. The
// first line is "METHOD TARGET", the rest the body: query strings of /v1/metrics, /v1/top,
// /v1/funnel, /v1/billing, /v1/metrics/realtime, POST /v1/query bodies, every /grafana call.
// Every request must be answered exactly once, with a status from the contract and, for an error,
// a JSON body; none may crash, hang or trip a sanitizer. Each input is also sent to a second Api
// that has tokens, with a token scoped to advertiser adv-one: its answer must never name the
// other advertisers (unless the input itself does, which an error message may echo). Ingest and
// admin paths are left to their own targets (event_decoder) and tests: they would grow state or
// touch files.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>

#include "app/config.h"
#include "base/metrics.h"
#include "base/status_macros.h"
#include "base/time_parse.h"
#include "http/api.h"
#include "http/auth.h"
#include "ingest/pipeline.h"
#include "window/cube_catalog.h"

namespace {

struct World {
  adpulse::MetricsRegistry metrics;
  std::unique_ptr<adpulse::CubeCatalog> catalog;
  std::unique_ptr<adpulse::Pipeline> pipeline;
  std::unique_ptr<adpulse::Api> api;
  std::unique_ptr<adpulse::Authenticator> auth;
  std::unique_ptr<adpulse::Api> scoped_api;  // with tokens
  int producer = 0;

  World() {
    auto config = adpulse::LoadConfig(std::nullopt);
    ADPULSE_CHECK(config.ok());
    auto catalog_or = adpulse::CubeCatalog::Create(config->cubes);
    ADPULSE_CHECK(catalog_or.ok());
    catalog = std::make_unique<adpulse::CubeCatalog>(std::move(*catalog_or));
    adpulse::PipelineOptions options;
    options.workers = 1;
    options.pin_workers = false;
    pipeline = std::make_unique<adpulse::Pipeline>(*catalog, options);
    pipeline->Start();
    ADPULSE_CHECK(pipeline->WaitRecovered().ok());
    adpulse::ApiOptions api_options;
    api = std::make_unique<adpulse::Api>(api_options, *catalog, *pipeline, metrics);
    api->SetReady(true);
    adpulse::Authenticator::Options auth_options;
    adpulse::TokenSpec token;
    token.name = "portal";
    token.sha256 = adpulse::Sha256(kToken);
    ADPULSE_CHECK(adpulse::AddScope("advertiser:adv-one", token).ok());
    auth_options.tokens.push_back(token);
    auth_options.max_failures_per_minute = 1'000'000;
    auth = std::make_unique<adpulse::Authenticator>(auth_options);
    adpulse::ApiOptions scoped_options;
    scoped_options.auth = auth.get();
    scoped_api = std::make_unique<adpulse::Api>(scoped_options, *catalog, *pipeline, metrics);
    scoped_api->SetReady(true);
    producer = pipeline->RegisterProducer();
    // Some rows for the queries to find, in the hour before a fixed time and now.
    int64_t now = adpulse::NowMs();
    std::string body;
    for (int i = 0; i < 200; ++i) {
      body += "{\"event_id\":\"f" + std::to_string(i) + "\",\"event_type\":\"" +
              (i % 10 == 0   ? "click"
               : i % 17 == 0 ? "conversion"
                             : "impression") +
              "\",\"timestamp\":" + std::to_string(now - 60'000 - i * 10'000) +
              ",\"campaign_id\":\"c" + std::to_string(i % 7) + "\",\"advertiser_id\":\"" +
              kAdvertisers[i % 3] + "\",\"ad_id\":\"ad" + std::to_string(i % 5) +
              "\",\"country\":\"US\",\"bid_price\":0.25}\n";
    }
    adpulse::HttpRequest req;
    req.method = "POST";
    req.target = "/v1/events";
    req.content_type = "application/x-ndjson";
    req.body = body;
    ADPULSE_CHECK(Call(std::move(req)).status == 200);
  }

  static constexpr const char* kToken = "fuzz-token";
  static constexpr const char* kAdvertisers[] = {"adv-zero", "adv-one", "adv-two"};

  adpulse::HttpResponse Call(adpulse::HttpRequest req, adpulse::Api* on = nullptr) {
    auto answered = std::make_shared<std::promise<adpulse::HttpResponse>>();
    auto future = answered->get_future();
    auto calls = std::make_shared<std::atomic<int>>(0);
    (on ? on : api.get())
        ->Handle(producer, std::move(req), [answered, calls](adpulse::HttpResponse r) {
          ADPULSE_CHECK(calls->fetch_add(1) == 0);  // answered once
          answered->set_value(std::move(r));
        });
    ADPULSE_CHECK(future.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    return future.get();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = new World();  // kept for the whole run, as the daemon is
  std::string input(reinterpret_cast<const char*>(data), size);
  size_t eol = input.find('\n');
  std::string line = input.substr(0, eol);
  adpulse::HttpRequest req;
  size_t space = line.find(' ');
  req.method = space == std::string::npos ? "GET" : line.substr(0, space);
  req.target = space == std::string::npos ? line : line.substr(space + 1);
  if (req.target.empty() || req.target[0] != '/') req.target.insert(0, "/");
  // Not the paths that write or read files.
  if (req.target.rfind("/v1/events", 0) == 0 || req.target.rfind("/v1/admin", 0) == 0 ||
      req.target.rfind("/v1/fraud", 0) == 0) {
    return 0;
  }
  req.content_type = "application/json";
  req.body = eol == std::string::npos ? std::string() : input.substr(eol + 1);
  req.body.reserve(req.body.size() + adpulse::kBodyPaddingBytes);
  std::string target = req.target;
  adpulse::HttpRequest scoped = req;
  scoped.authorization = std::string("Bearer ") + World::kToken;
  scoped.client_address = "127.0.0.1";
  adpulse::HttpResponse r = world->Call(std::move(req));
  // ADPULSE_FUZZ_VERBOSE=1: each answer's status, to see what a corpus reaches.
  static const bool verbose = std::getenv("ADPULSE_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "%u %s: %.120s\n", r.status, target.c_str(), r.body.c_str());
  ADPULSE_CHECK(r.status >= 200 && r.status < 600);
  if (r.status >= 400) ADPULSE_CHECK(!r.body.empty());
  adpulse::HttpResponse s = world->Call(std::move(scoped), world->scoped_api.get());
  ADPULSE_CHECK(s.status >= 200 && s.status < 600);
  for (const char* other : {"adv-zero", "adv-two"}) {
    if (input.find(other) == std::string::npos && s.body.find(other) != std::string::npos) {
      std::fprintf(stderr, "advertiser %s leaked to adv-one's token: %u %s\n", other, s.status,
                   s.body.c_str());
      std::abort();
    }
  }
  return 0;
}
