#include "http/http_types.h"

#include <catch2/catch.hpp>

namespace adpulse {

TEST_CASE("targets split into a path and decoded, repeatable parameters", "[http]") {
  ParsedTarget t = ParseTarget(
      "/v1/metrics?dimensions=campaign_id,country&filter=campaign_id:c%201&filter=country:US"
      "&start=2025-11-28T14%3A00%3A00Z&empty=&flag&bad=%zz");
  CHECK(t.path == "/v1/metrics");
  REQUIRE(t.Get("dimensions"));
  CHECK(*t.Get("dimensions") == "campaign_id,country");
  CHECK(t.GetAll("filter") == std::vector<std::string>{"campaign_id:c 1", "country:US"});
  CHECK(*t.Get("start") == "2025-11-28T14:00:00Z");
  CHECK(*t.Get("empty") == "");
  CHECK(*t.Get("flag") == "");
  CHECK(*t.Get("bad") == "%zz");
  CHECK(t.Get("missing") == nullptr);
  CHECK(ParseTarget("/healthz").path == "/healthz");
}

}  // namespace adpulse
