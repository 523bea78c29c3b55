// `adpulse reconcile`: asks the running daemon (its admin endpoint) to reconcile a range and prints
// the report. A minimal HTTP/1.1 client over a loopback socket: one request, Connection: close.
#pragma once
#include <string>

#include "absl/status/statusor.h"

namespace adpulse {

struct HttpReply {
  int status = 0;
  std::string body;
};

// `bearer`, when not empty, is sent as Authorization: Bearer.
absl::StatusOr<HttpReply> HttpPost(const std::string& host, uint16_t port,
                                   const std::string& target, const std::string& bearer = "");

}  // namespace adpulse
