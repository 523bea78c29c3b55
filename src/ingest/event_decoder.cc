#include "ingest/event_decoder.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>

#include "base/status_macros.h"
#include "ingest/validator.h"

namespace adpulse {

namespace od = simdjson::ondemand;

bool IsJsonNumber(std::string_view text) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    return i - start;
  };
  if (i < text.size() && text[i] == '-') ++i;
  size_t int_start = i;
  size_t n = digits();
  if (n == 0 || (n > 1 && text[int_start] == '0')) return false;
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == text.size();
}

bool ParseDecimalMicros(std::string_view text, int64_t* micros) {
  // Grammar of a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  if (!IsJsonNumber(text)) return false;
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && text[i] == '-') {
    negative = true;
    ++i;
  }
  // Collect up to 40 significant digits and the position of the decimal point.
  std::string digits;
  int64_t point = -1;
  size_t int_start = i;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') digits.push_back(text[i++]);
  if (i == int_start) return false;
  point = static_cast<int64_t>(digits.size());
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t frac_start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') digits.push_back(text[i++]);
    if (i == frac_start) return false;
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) exp_negative = text[i++] == '-';
    size_t exp_start = i;
    int64_t exp = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (exp < 100000) exp = exp * 10 + (text[i] - '0');
      ++i;
    }
    if (i == exp_start) return false;
    point += exp_negative ? -exp : exp;
  }
  if (i != text.size()) return false;
  // value = 0.digits * 10^point; micro-units = digits shifted so that 6 decimals remain.
  int64_t shift = point + 6;  // number of leading digits that form the integer micro-units
  __int128 value = 0;
  for (int64_t k = 0; k < static_cast<int64_t>(digits.size()) && k < shift; ++k) {
    value = value * 10 + (digits[k] - '0');
    if (value > static_cast<__int128>(INT64_MAX)) return false;
  }
  for (int64_t k = static_cast<int64_t>(digits.size()); k < shift; ++k) {
    value *= 10;
    if (value > static_cast<__int128>(INT64_MAX)) return false;
  }
  // Round half up on the first dropped digit.
  if (shift >= 0 && shift < static_cast<int64_t>(digits.size()) && digits[shift] >= '5') ++value;
  if (value > static_cast<__int128>(INT64_MAX)) return false;
  *micros = negative ? -static_cast<int64_t>(value) : static_cast<int64_t>(value);
  return true;
}

namespace {

enum class Field : uint8_t {
  kUnknown,
  kEventId,
  kEventType,
  kTimestamp,
  kBidPrice,
  kUserId,
  kSessionId,
  kIpAddress,
  kUserAgent,
  kPageUrl,
  kClickId,
  kDimension,  // one of the Dim values
};

struct FieldInfo {
  Field field = Field::kUnknown;
  Dim dim = Dim::kCampaignId;
};

FieldInfo Classify(std::string_view key) {
  switch (key.size()) {
    case 2:
      if (key == "os") return {Field::kDimension, Dim::kOs};
      break;
    case 4:
      if (key == "city") return {Field::kDimension, Dim::kCity};
      break;
    case 5:
      if (key == "ad_id") return {Field::kDimension, Dim::kAdId};
      break;
    case 7:
      if (key == "user_id") return {Field::kUserId};
      if (key == "country") return {Field::kDimension, Dim::kCountry};
      if (key == "browser") return {Field::kDimension, Dim::kBrowser};
      break;
    case 8:
      if (key == "event_id") return {Field::kEventId};
      if (key == "page_url") return {Field::kPageUrl};
      if (key == "currency") return {Field::kDimension, Dim::kCurrency};
      if (key == "click_id") return {Field::kClickId};
      break;
    case 9:
      if (key == "timestamp") return {Field::kTimestamp};
      if (key == "bid_price") return {Field::kBidPrice};
      break;
    case 10:
      if (key == "event_type") return {Field::kEventType};
      if (key == "session_id") return {Field::kSessionId};
      if (key == "ip_address") return {Field::kIpAddress};
      if (key == "user_agent") return {Field::kUserAgent};
      break;
    case 11:
      if (key == "campaign_id") return {Field::kDimension, Dim::kCampaignId};
      if (key == "device_type") return {Field::kDimension, Dim::kDeviceType};
      break;
    case 12:
      if (key == "publisher_id") return {Field::kDimension, Dim::kPublisherId};
      if (key == "placement_id") return {Field::kDimension, Dim::kPlacementId};
      break;
    case 13:
      if (key == "advertiser_id") return {Field::kDimension, Dim::kAdvertiserId};
      break;
  }
  return {};
}

std::string_view FieldName(const FieldInfo& info) {
  switch (info.field) {
    case Field::kEventId:
      return "event_id";
    case Field::kEventType:
      return "event_type";
    case Field::kTimestamp:
      return "timestamp";
    case Field::kBidPrice:
      return "bid_price";
    case Field::kUserId:
      return "user_id";
    case Field::kSessionId:
      return "session_id";
    case Field::kIpAddress:
      return "ip_address";
    case Field::kUserAgent:
      return "user_agent";
    case Field::kPageUrl:
      return "page_url";
    case Field::kClickId:
      return "click_id";
    case Field::kDimension:
      return DimName(info.dim);
    case Field::kUnknown:
      break;
  }
  return "field";
}

// True when the document has nothing after its root value (simdjson 3.0 has no at_end()).
bool AtEnd(od::document& doc) {
  const char* location;
  return doc.current_location().get(location) == simdjson::OUT_OF_BOUNDS;
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// Deepest nesting an unknown field's value may have (the known fields are scalars).
constexpr int kMaxUnknownDepth = 32;

// Where the JSON value starting at text[0] ('{' or '[') ends, scanning brackets outside strings;
// npos when it does not end within `text`.
size_t EndOfValue(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return std::string_view::npos;
}

// An unquoted NaN or Infinity (what JavaScript's JSON.stringify never writes, but other encoders
// do) outside strings.
bool HasNonFinite(std::string_view text) {
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (text.compare(i, 3, "NaN") == 0 || text.compare(i, 8, "Infinity") == 0 ||
               text.compare(i, 3, "nan") == 0 || text.compare(i, 3, "inf") == 0) {
      return true;
    }
  }
  return false;
}

// What a JSON syntax error in `text` is, in words a client's developer can act on (simdjson's own
// message for the rarer cases).
std::string JsonProblem(simdjson::error_code err, std::string_view text) {
  switch (err) {
    case simdjson::UTF8_ERROR:
      return "a string is not valid UTF-8";
    case simdjson::STRING_ERROR:
      if (!simdjson::validate_utf8(text.data(), text.size())) return "a string is not valid UTF-8";
      return "a string has an invalid escape (such as a lone \\ud800 surrogate) or an unescaped "
             "control character";
    case simdjson::NUMBER_ERROR:
      if (HasNonFinite(text)) break;
      return "a number is malformed";
    case simdjson::NUMBER_OUT_OF_RANGE:
      return "a number is out of range";
    case simdjson::DEPTH_ERROR:
      return "the JSON is nested too deeply";
    case simdjson::EMPTY:
      return "Empty: no JSON found";
    default:
      break;
  }
  if (HasNonFinite(text)) {
    return "NaN and Infinity are not JSON numbers (send a number, or leave the field out)";
  }
  size_t start = text.find_first_not_of(" \t\r\n");
  if (start != std::string_view::npos && (text[start] == '{' || text[start] == '[')) {
    size_t end = EndOfValue(text.substr(start));
    if (end != std::string_view::npos) {
      std::string_view rest = text.substr(start + end);
      size_t extra = rest.find_first_not_of(" \t\r\n");
      if (extra != std::string_view::npos) {
        std::string shown;
        for (char c : rest.substr(extra, 40)) {
          shown.push_back(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f ? c : '?');
        }
        return fmt::format("data after the JSON {}: '{}{}'",
                           text[start] == '{' ? "object" : "array", shown,
                           rest.size() - extra > 40 ? "..." : "");
      }
    }
  }
  if (err == simdjson::T_ATOM_ERROR || err == simdjson::F_ATOM_ERROR ||
      err == simdjson::N_ATOM_ERROR) {
    return "a word that is not true, false or null (strings need quotes)";
  }
  return simdjson::error_message(err);
}

// Walks an unknown field's value to bound its nesting: false when deeper than kMaxUnknownDepth.
simdjson::error_code CheckDepth(od::value value, int depth, bool& too_deep) {
  od::json_type type;
  if (auto err = value.type().get(type)) return err;
  if (type != od::json_type::object && type != od::json_type::array) return simdjson::SUCCESS;
  if (depth >= kMaxUnknownDepth) {
    too_deep = true;
    return simdjson::SUCCESS;
  }
  if (type == od::json_type::array) {
    od::array array;
    if (auto err = value.get_array().get(array)) return err;
    for (auto element : array) {
      od::value v;
      if (auto err = std::move(element).get(v)) return err;
      if (auto err = CheckDepth(v, depth + 1, too_deep)) return err;
      if (too_deep) return simdjson::SUCCESS;
    }
    return simdjson::SUCCESS;
  }
  od::object object;
  if (auto err = value.get_object().get(object)) return err;
  for (auto field_result : object) {
    od::field field;
    if (auto err = std::move(field_result).get(field)) return err;
    if (auto err = CheckDepth(field.value(), depth + 1, too_deep)) return err;
    if (too_deep) return simdjson::SUCCESS;
  }
  return simdjson::SUCCESS;
}

}  // namespace

struct EventDecoder::Impl {
  od::parser parser;

  // Copies a string into the batch arena; the arena was reserved to the body size, and an
  // unescaped JSON string is never longer than its source, so views stay valid.
  static std::string_view Keep(IngestBatch& batch, std::string_view s) {
    ADPULSE_CHECK(batch.arena.size() + s.size() <= batch.arena.capacity());
    const char* start = batch.arena.data() + batch.arena.size();
    batch.arena.append(s);
    return {start, s.size()};
  }

  // Reads one event object. On a field-level problem returns the reason; the event is rejected.
  // A JSON syntax error inside the object is returned through `syntax_error`.
  std::string ReadEvent(od::object object, IngestBatch& batch, Event& event, EventFields& seen,
                        simdjson::error_code& syntax_error) {
    std::string problem;
    uint64_t fields_seen = 0;  // a bit per known field, dimensions from bit 16
    for (auto field_result : object) {
      od::field field;
      if (auto err = std::move(field_result).get(field)) {
        syntax_error = err;
        return "invalid JSON";
      }
      std::string_view key;
      if (auto err = field.unescaped_key().get(key)) {
        syntax_error = err;
        return "invalid JSON";
      }
      FieldInfo info = Classify(key);
      if (info.field == Field::kUnknown) {
        // Unknown fields are ignored, but not without bounds: their nesting is checked.
        bool too_deep = false;
        if (auto err = CheckDepth(field.value(), 1, too_deep)) {
          syntax_error = err;
          return "invalid JSON";
        }
        if (too_deep && problem.empty()) {
          problem =
              fmt::format("field '{}' is nested deeper than {} levels", key, kMaxUnknownDepth);
        }
        continue;
      }
      uint64_t bit = info.field == Field::kDimension
                         ? uint64_t{1} << (16 + static_cast<int>(info.dim))
                         : uint64_t{1} << static_cast<int>(info.field);
      if ((fields_seen & bit) && problem.empty()) {
        problem = fmt::format("field '{}' appears twice in the event", FieldName(info));
      }
      fields_seen |= bit;
      od::value value = field.value();
      od::json_type type;
      if (auto err = value.type().get(type)) {
        syntax_error = err;
        return "invalid JSON";
      }
      if (!problem.empty()) continue;  // keep scanning for syntax errors only
      if (info.field == Field::kTimestamp) {
        seen.has_timestamp = true;
        if (type != od::json_type::number) {
          problem = "timestamp must be an integer (Unix epoch milliseconds)";
          continue;
        }
        int64_t ts;
        if (value.get_int64().get(ts)) {
          problem = "timestamp must be an integer (Unix epoch milliseconds)";
          continue;
        }
        event.timestamp_ms = ts;
        continue;
      }
      if (info.field == Field::kBidPrice) {
        if (type == od::json_type::null) continue;
        if (type != od::json_type::number) {
          problem = "bid_price must be a number";
          continue;
        }
        std::string_view raw = TrimRight(value.raw_json_token());
        int64_t micros;
        if (!IsJsonNumber(raw)) {
          problem = fmt::format("bid_price {} is not a JSON number (write it like 0.5 or 12)", raw);
          continue;
        }
        if (!ParseDecimalMicros(raw, &micros)) {
          problem = fmt::format("bid_price {} is out of range (see ingest.max_bid_price)", raw);
          continue;
        }
        if (raw.front() == '-' && raw.find_first_of("123456789") != std::string_view::npos) {
          problem = "bid_price must be >= 0";
          continue;
        }
        event.bid_micros = micros;
        seen.has_bid_price = true;
        continue;
      }
      // Everything else is a string.
      if (type == od::json_type::null) continue;  // null means missing
      if (type != od::json_type::string) {
        problem = fmt::format("{} must be a string", FieldName(info));
        continue;
      }
      std::string_view text;
      if (auto err = value.get_string().get(text)) {
        syntax_error = err;
        return "invalid JSON";
      }
      size_t limit = (info.field == Field::kUserAgent || info.field == Field::kPageUrl)
                         ? kMaxLongFieldBytes
                     : info.field == Field::kEventId ? kMaxEventIdBytes
                                                     : kMaxFieldBytes;
      if (text.size() > limit) {
        if (info.field == Field::kEventId) event.event_id = Keep(batch, text.substr(0, 32));
        problem = fmt::format("{} is {} bytes (limit {})", FieldName(info), text.size(), limit);
        continue;
      }
      std::string_view kept = Keep(batch, text);
      switch (info.field) {
        case Field::kEventId:
          event.event_id = kept;
          seen.has_event_id = true;
          break;
        case Field::kEventType: {
          seen.has_event_type = true;
          auto parsed = ParseEventType(kept);
          if (!parsed) {
            problem =
                fmt::format("event_type '{}' is not one of impression, click, conversion", kept);
          } else {
            event.type = *parsed;
          }
          break;
        }
        case Field::kUserId:
          event.user_id = kept;
          break;
        case Field::kSessionId:
          event.session_id = kept;
          break;
        case Field::kIpAddress:
          event.ip_address = kept;
          break;
        case Field::kUserAgent:
          event.user_agent = kept;
          break;
        case Field::kPageUrl:
          event.page_url = kept;
          break;
        case Field::kClickId:
          event.click_id = kept;
          break;
        case Field::kDimension:
          event.dim(info.dim) = kept;
          break;
        default:
          break;
      }
    }
    return problem;
  }

  // Decodes one element (an object expected) at request position `index`.
  // Returns a syntax error code if the JSON itself is broken.
  simdjson::error_code DecodeOne(od::value element, uint32_t index, const ValidationRules& rules,
                                 int64_t now_ms, IngestBatch& batch) {
    od::json_type type;
    if (auto err = element.type().get(type)) return err;
    if (type != od::json_type::object) {
      batch.Reject(index, "", "event is not a JSON object");
      return simdjson::SUCCESS;
    }
    od::object object;
    if (auto err = element.get_object().get(object)) return err;
    return Finish(object, index, rules, now_ms, batch);
  }

  simdjson::error_code Finish(od::object object, uint32_t index, const ValidationRules& rules,
                              int64_t now_ms, IngestBatch& batch) {
    Event event;
    EventFields seen;
    simdjson::error_code syntax = simdjson::SUCCESS;
    std::string problem = ReadEvent(object, batch, event, seen, syntax);
    if (syntax != simdjson::SUCCESS) return syntax;
    if (problem.empty()) problem = ValidateEvent(event, seen, rules, now_ms);
    if (!problem.empty()) {
      batch.Reject(index, event.event_id, std::move(problem));
      return simdjson::SUCCESS;
    }
    batch.events.push_back(event);
    batch.positions.push_back(index);
    return simdjson::SUCCESS;
  }

  absl::Status DecodeJson(std::string_view body, const ValidationRules& rules, int64_t now_ms,
                          IngestBatch& batch) {
    od::document doc;
    auto fail = [&](simdjson::error_code err) {
      return absl::InvalidArgumentError(
          fmt::format("body is not valid JSON: {}", JsonProblem(err, body)));
    };
    if (auto err =
            parser.iterate(body.data(), body.size(), body.size() + simdjson::SIMDJSON_PADDING)
                .get(doc)) {
      return fail(err);
    }
    od::json_type type;
    if (auto err = doc.type().get(type)) return fail(err);
    if (type == od::json_type::array) {
      od::array array;
      if (auto err = doc.get_array().get(array)) return fail(err);
      uint32_t index = 0;
      for (auto element_result : array) {
        od::value element;
        if (auto err = std::move(element_result).get(element)) return fail(err);
        if (auto err = DecodeOne(element, index, rules, now_ms, batch)) return fail(err);
        ++index;
      }
      batch.total = index;
    } else if (type == od::json_type::object) {
      od::object object;
      if (auto err = doc.get_object().get(object)) return fail(err);
      if (auto err = Finish(object, 0, rules, now_ms, batch)) return fail(err);
      batch.total = 1;
    } else {
      return absl::InvalidArgumentError(
          "body must be a JSON object or an array of objects (or NDJSON with "
          "Content-Type: application/x-ndjson)");
    }
    if (!AtEnd(doc)) {
      return absl::InvalidArgumentError(
          "body has data after the JSON value; send several events as an array, or as NDJSON "
          "with Content-Type: application/x-ndjson");
    }
    return absl::OkStatus();
  }

  absl::Status DecodeNdjson(std::string_view body, const ValidationRules& rules, int64_t now_ms,
                            IngestBatch& batch) {
    const char* end = body.data() + body.size();
    const char* line = body.data();
    uint32_t index = 0;
    uint32_t broken = 0;
    std::string first_error;
    while (line < end) {
      const char* newline = static_cast<const char*>(memchr(line, '\n', end - line));
      const char* line_end = newline ? newline : end;
      std::string_view text(line, line_end - line);
      line = newline ? newline + 1 : end;
      size_t first = text.find_first_not_of(" \t\r");
      if (first == std::string_view::npos) continue;  // blank lines are allowed
      size_t allocated = static_cast<size_t>(end - text.data()) + simdjson::SIMDJSON_PADDING;
      od::document doc;
      simdjson::error_code err = parser.iterate(text.data(), text.size(), allocated).get(doc);
      od::json_type type = od::json_type::null;
      if (!err) err = doc.type().get(type);
      if (!err && type != od::json_type::object) {
        ++broken;
        if (first_error.empty()) first_error = "a line is not a JSON object";
        batch.Reject(index++, "", "NDJSON line is not a JSON object");
        continue;
      }
      od::object object;
      if (!err) err = doc.get_object().get(object);
      if (!err) err = Finish(object, index, rules, now_ms, batch);
      if (!err && !AtEnd(doc)) err = simdjson::TRAILING_CONTENT;
      if (err) {
        ++broken;
        std::string message = fmt::format("line is not valid JSON: {}", JsonProblem(err, text));
        if (first_error.empty()) first_error = message;
        // Drop whatever this line may have added before the syntax error was found.
        if (!batch.positions.empty() && batch.positions.back() == index) {
          batch.positions.pop_back();
          batch.events.pop_back();
        }
        batch.Reject(index, "", std::move(message));
      }
      ++index;
    }
    batch.total = index;
    if (index > 0 && broken == index) {
      return absl::InvalidArgumentError(fmt::format("body is not NDJSON: {}", first_error));
    }
    return absl::OkStatus();
  }
};

EventDecoder::EventDecoder() : impl_(std::make_unique<Impl>()) {}
EventDecoder::~EventDecoder() = default;

absl::Status EventDecoder::Decode(BodyFormat format, std::string_view body,
                                  const ValidationRules& rules, int64_t now_ms,
                                  IngestBatch& batch) {
  batch.arena.clear();
  batch.arena.reserve(body.size() + 64);
  // Room for an event per 256 bytes of body (most are 200-500 bytes of JSON), so that the vectors
  // seldom grow: each growth copies every event decoded so far (an Event is about 250 bytes).
  size_t expected = std::min<size_t>(body.size() / 256 + 1, 16384);
  batch.events.reserve(expected);
  batch.positions.reserve(expected);
  if (format == BodyFormat::kJson) return impl_->DecodeJson(body, rules, now_ms, batch);
  return impl_->DecodeNdjson(body, rules, now_ms, batch);
}

}  // namespace adpulse
