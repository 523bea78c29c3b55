#include "base/json_writer.h"

#include <catch2/catch.hpp>

namespace adpulse {

TEST_CASE("MicrosToDecimal is exact for money", "[base]") {
  CHECK(MicrosToDecimal(0) == "0");
  CHECK(MicrosToDecimal(15'500'000) == "15.5");
  CHECK(MicrosToDecimal(1) == "0.000001");
  CHECK(MicrosToDecimal(-1) == "-0.000001");
  CHECK(MicrosToDecimal(123'450'000, true) == "123.450000");
  CHECK(MicrosToDecimal(INT64_MAX) == "9223372036854.775807");
  CHECK(MicrosToDecimal(INT64_MIN) == "-9223372036854.775808");
  // Sums past 64 bits (base/money.h).
  MoneySum two_max = MoneySum{INT64_MAX} * 2 + 1;
  CHECK(MicrosToDecimal(two_max) == "18446744073709.551615");
  CHECK(MicrosToDecimal(two_max + 1, true) == "18446744073709.551616");
  MoneySum top = ~(static_cast<MoneySum>(1) << 127);  // 2^127 - 1
  CHECK(MicrosToDecimal(top) == "170141183460469231731687303715884.105727");
  CHECK(MicrosToDecimal(-top - 1) == "-170141183460469231731687303715884.105728");
}

TEST_CASE("JsonWriter places commas and escapes strings", "[base]") {
  JsonWriter w;
  w.BeginObject()
      .Key("a")
      .Int(-3)
      .Key("b")
      .BeginArray()
      .String("x\"y")
      .String("tab\there")
      .Null()
      .EndArray()
      .Key("c")
      .Double(0.0258333333)
      .Key("d")
      .Micros(2'000'000)
      .Key("e")
      .Bool(false)
      .EndObject();
  CHECK(w.str() == R"({"a":-3,"b":["x\"y","tab\there",null],"c":0.025833,"d":2,"e":false})");
}

TEST_CASE("AppendJsonString replaces invalid UTF-8 and escapes control bytes", "[base]") {
  std::string out;
  AppendJsonString(out, std::string_view("ok\x01\xff\xc3\xa9", 6));
  CHECK(out == "\"ok\\u0001\xEF\xBF\xBD\xC3\xA9\"");
}

}  // namespace adpulse
