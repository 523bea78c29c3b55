#include "app/admin_client.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace adpulse {

absl::StatusOr<HttpReply> HttpPost(const std::string& host, uint16_t port,
                                   const std::string& target, const std::string& bearer) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) {
    return absl::UnavailableError(fmt::format("cannot resolve {}", host));
  }
  int fd = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  if (fd < 0 || ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    int err = errno;
    freeaddrinfo(res);
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(
        fmt::format("cannot connect to adpulse at {}:{}: {}", host, port, std::strerror(err)));
  }
  freeaddrinfo(res);
  std::string auth = bearer.empty() ? "" : fmt::format("Authorization: Bearer {}\r\n", bearer);
  std::string request = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}:{}\r\n{}Content-Length: 0\r\nConnection: close\r\n\r\n", target,
      host, port, auth);
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return absl::UnavailableError("the connection to adpulse closed while sending");
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t header_end = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || header_end == std::string::npos) {
    return absl::UnavailableError("adpulse sent no valid HTTP response");
  }
  HttpReply reply;
  reply.status = std::atoi(response.c_str() + 9);
  reply.body = response.substr(header_end + 4);
  return reply;
}

}  // namespace adpulse
