// The HTTP request and response as the API handlers see them, free of Beast types so that only
// server.cc compiles Beast (DEPENDENCIES.md trap 9).
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace adpulse {

struct HttpRequest {
  std::string method;
  std::string target;  // path and query string
  std::string content_type;
  std::string content_encoding;
  std::string authorization;   // the Authorization header's value
  std::string client_address;  // the peer's IP address, for per-client limits
  std::string body;  // with capacity for kBodyPaddingBytes more, when its length was announced
};

// Room the server leaves after a body it reads, so the JSON parser's padding (simdjson's) can be
// added without copying the body.
inline constexpr size_t kBodyPaddingBytes = 64;

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Must be called exactly once; safe to call from any thread.
using Responder = std::function<void(HttpResponse)>;

// Splits a target into its path and decoded query parameters (repeated keys kept in order).
struct ParsedTarget {
  std::string path;
  std::vector<std::pair<std::string, std::string>> params;

  // The first value of `key`, or nullptr.
  const std::string* Get(std::string_view key) const;
  std::vector<std::string> GetAll(std::string_view key) const;
};
ParsedTarget ParseTarget(std::string_view target);

}  // namespace adpulse
