#include "base/metrics.h"

#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "ingest/ingest_batch.h"

namespace adpulse {

TEST_CASE("Histogram buckets are cumulative, le inclusive, with count and sum", "[base]") {
  Histogram h({0.001, 0.01, 0.1});
  h.Observe(0.0005);
  h.Observe(0.001);  // on a bound: counted in it (le means <=)
  h.Observe(0.05);
  h.Observe(3);
  h.Observe(-1);  // a clock step back counts as 0
  Histogram::Snapshot s = h.Read();
  CHECK(s.cumulative == std::vector<uint64_t>{3, 3, 4, 5});
  CHECK(s.count == 5);
  CHECK(s.sum == Approx(3.0515));
}

TEST_CASE("Histogram observations from several threads all count", "[base]") {
  Histogram h(Histogram::LatencyBounds());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&h] {
      for (int i = 0; i < 10000; ++i) h.ObserveMicros(i % 3000);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(h.Read().count == 40000);
  CHECK(h.Read().cumulative.back() == 40000);
}

TEST_CASE("The registry renders histograms and labelled gauges as Prometheus text", "[base]") {
  MetricsRegistry m;
  Histogram& h = m.GetHistogram("x_duration_seconds", "Durations.");
  CHECK(&h == &m.GetHistogram("x_duration_seconds", "Durations."));
  h.Observe(0.002);
  m.AddGauge("x_queued", "Queued.", "shard=\"0\"", [] { return 3.0; });
  m.AddGauge("x_queued", "Queued.", "shard=\"1\"", [] { return 4.0; });
  std::string text = m.Render();
  CHECK(text.find("# TYPE x_duration_seconds histogram\n") != std::string::npos);
  CHECK(text.find("x_duration_seconds_bucket{le=\"0.001\"} 0\n") != std::string::npos);
  CHECK(text.find("x_duration_seconds_bucket{le=\"0.0025\"} 1\n") != std::string::npos);
  CHECK(text.find("x_duration_seconds_bucket{le=\"+Inf\"} 1\n") != std::string::npos);
  CHECK(text.find("x_duration_seconds_count 1\n") != std::string::npos);
  CHECK(text.find("x_duration_seconds_sum 0.002\n") != std::string::npos);
  CHECK(text.find("x_queued{shard=\"0\"} 3\nx_queued{shard=\"1\"} 4\n") != std::string::npos);
  // A labelled gauge family has no unlabelled sample beside its series.
  CHECK(text.find("x_queued 0") == std::string::npos);
}

TEST_CASE("Rejections are classified by the field their message names first", "[base]") {
  auto reason = [](std::string_view m) { return kRejectReasons[RejectReasonOf(m)]; };
  CHECK(reason("event_type 'view' is not one of impression, click, conversion") == "event_type");
  CHECK(reason("timestamp is 3 days old (limit 2 days)") == "timestamp");
  CHECK(reason("event_id is missing (a string of 1 to 128 bytes)") == "event_id");
  CHECK(reason("bid_price must be >= 0") == "bid_price");
  CHECK(reason("currency 'US' is not an ISO 4217 code such as USD") == "currency");
  CHECK(reason("campaign_id is missing") == "campaign_id");
  CHECK(reason("NDJSON line is not a JSON object") == "malformed");
  CHECK(reason("line is not valid JSON: TAPE_ERROR") == "malformed");
  CHECK(reason("event is not a JSON object") == "malformed");
  CHECK(reason("user_agent is 9000 bytes (limit 4096)") == "field");
  CHECK(reason("event_types are odd") == "field");  // a prefix of another word is not the field
}

}  // namespace adpulse
