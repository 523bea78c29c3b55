#include "ingest/event_decoder.h"

#include <catch2/catch.hpp>
#include <string>

namespace adpulse {
namespace {

constexpr int64_t kNow = 1'764'340'800'000;  // 2025-11-28T14:40:00Z

struct Decoded {
  absl::Status status;
  IngestBatch batch;
};

Decoded Decode(BodyFormat format, std::string body) {
  body.reserve(body.size() + 64);
  EventDecoder decoder;
  Decoded d;
  d.status = decoder.Decode(format, body, ValidationRules{}, kNow, d.batch);
  return d;
}

std::string Ev(const std::string& id, const std::string& extra = "") {
  return R"({"event_id":")" + id + R"(","event_type":"click","timestamp":)" +
         std::to_string(kNow - 1000) + R"(,"campaign_id":"c1")" + extra + "}";
}

}  // namespace

TEST_CASE("ParseDecimalMicros converts JSON numbers exactly", "[decoder]") {
  int64_t m = -1;
  REQUIRE(ParseDecimalMicros("0", &m));
  CHECK(m == 0);
  REQUIRE(ParseDecimalMicros("12.5", &m));
  CHECK(m == 12'500'000);
  REQUIRE(ParseDecimalMicros("0.000001", &m));
  CHECK(m == 1);
  REQUIRE(ParseDecimalMicros("0.1", &m));
  CHECK(m == 100'000);  // a double would give 0.1000000000000000055...
  REQUIRE(ParseDecimalMicros("1e-3", &m));
  CHECK(m == 1'000);
  REQUIRE(ParseDecimalMicros("2.5E2", &m));
  CHECK(m == 250'000'000);
  REQUIRE(ParseDecimalMicros("0.0000015", &m));
  CHECK(m == 2);  // half up at the seventh decimal
  REQUIRE(ParseDecimalMicros("0.0000014999", &m));
  CHECK(m == 1);
  REQUIRE(ParseDecimalMicros("-3.25", &m));
  CHECK(m == -3'250'000);
  CHECK_FALSE(ParseDecimalMicros("1e30", &m));
  CHECK_FALSE(ParseDecimalMicros("abc", &m));
  CHECK_FALSE(ParseDecimalMicros("1.", &m));
  CHECK_FALSE(ParseDecimalMicros("", &m));
  // Not JSON numbers, though a lenient reader would take them.
  CHECK_FALSE(ParseDecimalMicros("00.5", &m));
  CHECK_FALSE(ParseDecimalMicros("01", &m));
  CHECK_FALSE(ParseDecimalMicros("-01", &m));
  CHECK_FALSE(ParseDecimalMicros(".5", &m));
  CHECK_FALSE(ParseDecimalMicros("1e", &m));
  CHECK_FALSE(ParseDecimalMicros("0x10", &m));
  CHECK_FALSE(ParseDecimalMicros("+1", &m));
  CHECK(IsJsonNumber("0"));
  CHECK(IsJsonNumber("-0.5e+3"));
  CHECK(IsJsonNumber("10"));
  CHECK_FALSE(IsJsonNumber("00"));
  CHECK_FALSE(IsJsonNumber("1.e3"));
}

TEST_CASE("bid_price that is not a JSON number is named so; too big is out of range", "[decoder]") {
  for (const char* raw : {"00.5", "01", "1e", "0x10"}) {
    auto r = Decode(BodyFormat::kNdjson, Ev("a", std::string(",\"bid_price\":") + raw));
    REQUIRE(r.batch.errors.size() == 1);
    CHECK(r.batch.errors[0].message ==
          std::string("bid_price ") + raw + " is not a JSON number (write it like 0.5 or 12)");
  }
  auto big = Decode(BodyFormat::kNdjson, Ev("a", ",\"bid_price\":1e30"));
  REQUIRE(big.batch.errors.size() == 1);
  CHECK(big.batch.errors[0].message.find("out of range") != std::string::npos);
}

TEST_CASE("one object, an array and NDJSON decode the same events", "[decoder]") {
  auto one = Decode(BodyFormat::kJson, Ev("a", R"(,"bid_price":1.25,"user_id":"u1")"));
  REQUIRE(one.status.ok());
  REQUIRE(one.batch.events.size() == 1);
  const Event& e = one.batch.events[0];
  CHECK(e.event_id == "a");
  CHECK(e.type == EventType::kClick);
  CHECK(e.timestamp_ms == kNow - 1000);
  CHECK(e.bid_micros == 1'250'000);
  CHECK(e.user_id == "u1");
  CHECK(e.dim(Dim::kCampaignId) == "c1");
  CHECK(e.dim(Dim::kCurrency) == "USD");

  auto array = Decode(BodyFormat::kJson, "[" + Ev("a") + ", " + Ev("b") + "]");
  REQUIRE(array.status.ok());
  CHECK(array.batch.events.size() == 2);
  CHECK(array.batch.total == 2);

  auto nd = Decode(BodyFormat::kNdjson, Ev("a") + "\r\n\n" + Ev("b") + "\n" + Ev("c"));
  REQUIRE(nd.status.ok());
  REQUIRE(nd.batch.events.size() == 3);
  CHECK(nd.batch.positions == std::vector<uint32_t>{0, 1, 2});
  CHECK(nd.batch.events[2].event_id == "c");
}

TEST_CASE("escaped strings are unescaped and unknown fields ignored", "[decoder]") {
  auto d =
      Decode(BodyFormat::kJson, R"({"extra":{"nested":[1,2,{"x":"y"}]},"event_id":"e\"1\u00e9",)"
                                R"("event_type":"impression","timestamp":)" +
                                    std::to_string(kNow) +
                                    R"(,"campaign_id":"c\n1","country":null,"ad\u005fid":"x"})");
  REQUIRE(d.status.ok());
  REQUIRE(d.batch.events.size() == 1);
  CHECK(d.batch.events[0].event_id == "e\"1\xC3\xA9");
  CHECK(d.batch.events[0].dim(Dim::kCampaignId) == "c\n1");
  CHECK(d.batch.events[0].dim(Dim::kCountry).empty());
  CHECK(d.batch.events[0].dim(Dim::kAdId) == "x");  // an escaped key is the same key
}

TEST_CASE("strings without escapes are read as they are; raw control characters are not JSON",
          "[decoder]") {
  // Plain strings are taken from the body between their quotes; these edges must read the same
  // as through simdjson's unescaping: empty, a backslash at the very end, spaces before a comma.
  auto d = Decode(BodyFormat::kNdjson, Ev("plain", R"(,"ad_id":"" ,"user_id":"u\\")") + "\n" +
                                           Ev("b", R"x(,"user_agent":"Mozilla/5.0 (X11)"  )x"));
  REQUIRE(d.status.ok());
  REQUIRE(d.batch.events.size() == 2);
  CHECK(d.batch.events[0].event_id == "plain");
  CHECK(d.batch.events[0].dim(Dim::kAdId).empty());
  CHECK(d.batch.events[0].user_id == "u\\");
  CHECK(d.batch.events[1].user_agent == "Mozilla/5.0 (X11)");
  // A tab, a newline or a 0x01 inside a string must be escaped in JSON.
  for (std::string raw : {std::string("\t"), std::string("\x01"), std::string("a\x1f")}) {
    auto bad = Decode(BodyFormat::kNdjson, Ev("ok") + "\n" + Ev("x" + raw) + "\n" + Ev("ok2"));
    REQUIRE(bad.status.ok());
    CHECK(bad.batch.events.size() == 2);
    REQUIRE(bad.batch.errors.size() == 1);
    CHECK(bad.batch.errors[0].index == 1);
  }
}

TEST_CASE("each invalid event is rejected with its index and reason", "[decoder]") {
  std::string ts = std::to_string(kNow);
  std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"event_type":"click","timestamp":)" + ts + R"(,"campaign_id":"c"})",
       "event_id is missing"},
      {R"({"event_id":")" + std::string(129, 'x') + R"(","event_type":"click","timestamp":)" + ts +
           R"(,"campaign_id":"c"})",
       "event_id is 129 bytes (limit 128)"},
      {R"({"event_id":"e","timestamp":)" + ts + R"(,"campaign_id":"c"})", "event_type is missing"},
      {R"({"event_id":"e","event_type":"view","timestamp":)" + ts + R"(,"campaign_id":"c"})",
       "event_type 'view' is not one of impression, click, conversion"},
      {R"({"event_id":"e","event_type":"click","campaign_id":"c"})", "timestamp is missing"},
      {R"({"event_id":"e","event_type":"click","timestamp":"now","campaign_id":"c"})",
       "timestamp must be an integer"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" +
           std::to_string(kNow - 3 * 86'400'000LL) + R"(,"campaign_id":"c"})",
       "timestamp is 3 days old (limit 24 h)"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + std::to_string(kNow + 600'000) +
           R"(,"campaign_id":"c"})",
       "timestamp is 10 min in the future (limit 60 s)"},
      // Just past the limit: the exact figure, not one that reads like the limit.
      {R"({"event_id":"e","event_type":"click","timestamp":)" + std::to_string(kNow + 60'950) +
           R"(,"campaign_id":"c"})",
       "timestamp is 60.95 s in the future (limit 60 s)"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" +
           std::to_string(kNow - 86'400'000LL - 5'000) + R"(,"campaign_id":"c"})",
       "timestamp is 86405 s old (limit 24 h)"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts + "}", "campaign_id is missing"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts + R"(,"campaign_id":7})",
       "campaign_id must be a string"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts +
           R"(,"campaign_id":"c","bid_price":-1})",
       "bid_price must be >= 0"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts +
           R"(,"campaign_id":"c","bid_price":-0.0000004})",
       "bid_price must be >= 0"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts +
           R"(,"campaign_id":"c","bid_price":"1.0"})",
       "bid_price must be a number"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts +
           R"(,"campaign_id":"c","currency":"dollars"})",
       "currency 'dollars' is not an ISO 4217 code"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts +
           R"(,"campaign_id":"c","bid_price":9223372036854.775807})",
       "bid_price 9223372036854.775807 is over the limit of 1000000 per event"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts +
           R"(,"campaign_id":"c","bid_price":1000000.000001})",
       "bid_price 1000000.000001 is over the limit of 1000000 per event"},
      {R"({"event_id":"e","event_type":"click","timestamp":)" + ts +
           R"(,"campaign_id":"c","bid_price":9223372036854.775808})",
       "bid_price 9223372036854.775808 is out of range"},
      // The lowest int64: no difference with the clock may overflow into a nonsense age.
      {R"({"event_id":"e","event_type":"click","timestamp":-9223372036854775808,"campaign_id":"c"})",
       "timestamp -9223372036854775808 is before 1970"},
      {R"({"event_id":"e","event_type":"click","timestamp":-1,"campaign_id":"c"})",
       "timestamp -1 is before 1970"},
      {R"({"event_id":"e","event_type":"click","timestamp":9223372036854775807,"campaign_id":"c"})",
       "timestamp is 106751970746 days in the future (limit 60 s)"},
      {R"([1])", "event is not a JSON object"},
  };
  for (const auto& [json, reason] : cases) {
    CAPTURE(json);
    std::string body = json.front() == '[' ? json : "[" + Ev("ok") + "," + json + "]";
    auto d = Decode(BodyFormat::kJson, body);
    REQUIRE(d.status.ok());
    REQUIRE(d.batch.rejected == 1);
    REQUIRE(d.batch.errors.size() == 1);
    CHECK(d.batch.errors[0].index == (json.front() == '[' ? 0u : 1u));
    CHECK(d.batch.errors[0].message.rfind(reason, 0) == 0);
    CHECK(d.batch.events.size() == (json.front() == '[' ? 0u : 1u));
  }
}

TEST_CASE("bid_price up to the limit is accepted, and the limit is a setting", "[decoder]") {
  auto d = Decode(BodyFormat::kJson, "[" + Ev("a", R"(,"bid_price":1000000)") + "]");
  REQUIRE(d.batch.events.size() == 1);
  CHECK(d.batch.events[0].bid_micros == kMaxBidMicros);
  std::string body = "[" + Ev("b", R"(,"bid_price":9223372036854.775807)") + "]";
  body.reserve(body.size() + 64);
  EventDecoder decoder;
  IngestBatch batch;
  ValidationRules rules;
  rules.max_bid_micros = INT64_MAX;
  REQUIRE(decoder.Decode(BodyFormat::kJson, body, rules, kNow, batch).ok());
  REQUIRE(batch.events.size() == 1);
  CHECK(batch.events[0].bid_micros == INT64_MAX);
}

TEST_CASE("a body that is not JSON at all is a whole-body error", "[decoder]") {
  CHECK_FALSE(Decode(BodyFormat::kJson, "hello").status.ok());
  CHECK_FALSE(Decode(BodyFormat::kJson, "[{\"event_id\": ").status.ok());
  CHECK_FALSE(Decode(BodyFormat::kJson, "42").status.ok());
  CHECK_FALSE(Decode(BodyFormat::kJson, Ev("a") + Ev("b")).status.ok());
  CHECK_FALSE(Decode(BodyFormat::kNdjson, "not json\nnor this").status.ok());
}

TEST_CASE("one broken NDJSON line rejects only that line", "[decoder]") {
  auto d = Decode(BodyFormat::kNdjson, Ev("a") + "\n{\"event_id\": \"b\", oops}\n" + Ev("c"));
  REQUIRE(d.status.ok());
  CHECK(d.batch.events.size() == 2);
  REQUIRE(d.batch.errors.size() == 1);
  CHECK(d.batch.errors[0].index == 1);
  CHECK(d.batch.errors[0].message.rfind("line is not valid JSON", 0) == 0);
}

TEST_CASE("at most 100 errors are listed but all are counted", "[decoder]") {
  std::string body = "[";
  for (int i = 0; i < 150; ++i) body += std::string(i ? "," : "") + "{}";
  body += "]";
  auto d = Decode(BodyFormat::kJson, body);
  REQUIRE(d.status.ok());
  CHECK(d.batch.rejected == 150);
  CHECK(d.batch.errors.size() == kMaxReportedErrors);
}

TEST_CASE("hostile JSON gets a clear error that names what is wrong", "[decoder]") {
  auto line_error = [](const std::string& line) {
    auto d = Decode(BodyFormat::kNdjson, Ev("ok") + "\n" + line + "\n");
    REQUIRE(d.status.ok());
    REQUIRE(d.batch.events.size() == 1);  // the good line still counts
    REQUIRE(d.batch.errors.size() == 1);
    return d.batch.errors[0].message;
  };
  // Duplicate keys: the event is rejected, whichever value would have won.
  CHECK(line_error(Ev("d", R"(,"campaign_id":"c2")")) ==
        "field 'campaign_id' appears twice in the event");
  CHECK(line_error(Ev("d", R"(,"event_id":"x")")) == "field 'event_id' appears twice in the event");
  // Repeated unknown fields are still ignored.
  auto d = Decode(BodyFormat::kNdjson, Ev("u", R"(,"ext":1,"ext":2)"));
  CHECK(d.batch.events.size() == 1);
  // Nesting in an unknown field is bounded.
  std::string deep(40, '[');
  deep += std::string(40, ']');
  CHECK(line_error(Ev("n", ",\"ext\":" + deep)) == "field 'ext' is nested deeper than 32 levels");
  std::string ok_deep(10, '[');
  ok_deep += std::string(10, ']');
  CHECK(Decode(BodyFormat::kNdjson, Ev("n2", ",\"ext\":{\"a\":" + ok_deep + "}"))
            .batch.events.size() == 1);
  // NaN, Infinity, invalid UTF-8, a lone surrogate, a second request after the object.
  CHECK(line_error(Ev("f", R"(,"bid_price":NaN)")).find("NaN and Infinity are not JSON numbers") !=
        std::string::npos);
  CHECK(line_error(Ev("f", R"(,"bid_price":-Infinity)")) ==
        "bid_price -Infinity is not a JSON number (write it like 0.5 or 12)");
  CHECK(line_error(Ev("u8", ",\"city\":\"a\xff\xfe\"")) ==
        "line is not valid JSON: a string is not valid UTF-8");
  CHECK(line_error(Ev("s", R"(,"city":"\ud800")")).find("invalid escape") != std::string::npos);
  CHECK(line_error(Ev("t") + "POST /v1/events HTTP/1.1") ==
        "line is not valid JSON: data after the JSON object: 'POST /v1/events HTTP/1.1'");
  auto body = Decode(BodyFormat::kJson, "[" + Ev("a") + "]\r\nPOST /x HTTP/1.1\r\nHost: h\r\n");
  CHECK(body.status.message().find("data after") != std::string_view::npos);
  auto bad = Decode(BodyFormat::kJson, "[" + Ev("a") + ",{\"x\":}]");
  CHECK(std::string(bad.status.message()).find("body is not valid JSON") == 0);
}

}  // namespace adpulse
