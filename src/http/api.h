// The public API of API.md: routes each request to its handler, turns query parameters into a
// QuerySpec, runs it on every shard through the pipeline and encodes the JSON answer. Free of Beast
// types; called on HTTP threads, each of which is a registered pipeline producer.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>

#include "base/metrics.h"
#include "http/http_types.h"
#include "ingest/event_decoder.h"
#include "ingest/pipeline.h"
#include "window/cube_catalog.h"

namespace adpulse {

class FraudStage;
class ClickAttribution;
class Archiver;
class Authenticator;

struct ApiOptions {
  size_t max_body_bytes = 16 << 20;
  size_t max_decoded_body_bytes = 64 << 20;
  ValidationRules validation;
  int64_t max_query_buckets = 200'000;
  int retry_after_s = 1;
  // Enriches and scores every decoded request before it goes to the shards; null: neither.
  FraudStage* fraud = nullptr;
  // Indexes clicks and attributes conversions to them, after scoring; null: neither.
  ClickAttribution* attribution = nullptr;
  // Where the log and the archive are, for the fraud reports that read raw events.
  std::string wal_dir;
  Archiver* archiver = nullptr;
  int64_t fraud_max_range_ms = 86'400'000;
  // Who may call what (API.md, "Access"); null or without tokens: the daemon is open.
  Authenticator* auth = nullptr;
};

class Api {
 public:
  Api(const ApiOptions& options, const CubeCatalog& catalog, Pipeline& pipeline,
      MetricsRegistry& metrics);
  ~Api();

  void Handle(int producer, HttpRequest&& request, Responder respond);
  void SetReady(bool ready) { ready_.store(ready); }
  const ApiOptions& options() const { return options_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ApiOptions options_;
  std::atomic<bool> ready_{false};
};

// {"error": message} with `status`.
HttpResponse ErrorResponse(unsigned status, std::string_view message);

}  // namespace adpulse
