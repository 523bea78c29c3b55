// A small streaming JSON writer into a std::string, with commas placed automatically.
// Used for every HTTP answer; not thread-safe, one per response.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/money.h"

namespace adpulse {

// Appends `s` to `out` as a JSON string literal, quotes included; invalid UTF-8 bytes become
// U+FFFD.
void AppendJsonString(std::string& out, std::string_view s);

class JsonWriter {
 public:
  JsonWriter() { stack_.reserve(8); }

  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view value);
  JsonWriter& Int(int64_t value);
  JsonWriter& Uint(uint64_t value);
  // Finite doubles with up to 6 decimals, trailing zeros trimmed; non-finite values become 0.
  JsonWriter& Double(double value);
  // Money: exact decimal from integer micro-units, written as a JSON number.
  JsonWriter& Micros(MoneySum micros);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();
  // Inserts already-encoded JSON as one value.
  JsonWriter& Raw(std::string_view json);

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void BeforeValue();
  std::string out_;
  std::vector<bool> stack_;  // per open container: has it got an element yet
  bool after_key_ = false;
};

}  // namespace adpulse
