// The HTTP/1.1 server (Boost.Beast): accepts connections, frames requests (with the guards Beast
// 1.74 needs), hands each one to the Api and writes the answers in order, keep-alive and
// pipelining included. Only server.cc includes Beast. Run() blocks until SIGINT/SIGTERM and returns
// once in-flight requests have been answered.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "base/metrics.h"
#include "http/api.h"
#include "ingest/pipeline.h"

namespace adpulse {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  int threads = 1;
  size_t max_body_bytes = 16 << 20;
  size_t max_header_bytes = 64 << 10;
  size_t max_header_fields = 100;
  // Open connections at most, in all and from one client address; past either, a new connection
  // is answered 503 and closed.
  size_t max_connections = 10'000;
  size_t max_connections_per_client = 256;
  // HTTPS with this certificate chain and private key (PEM files), reloaded on SIGHUP; empty:
  // plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  int idle_timeout_s = 60;     // keep-alive connection with no request
  int request_timeout_s = 60;  // to receive one whole request
  int drain_timeout_s = 30;    // on shutdown, for in-flight requests
  // Called on the I/O thread at each SIGHUP (reloads what can be reloaded); null: SIGHUP ignored.
  std::function<void()> on_sighup;
};

// Whether the TLS files of `options` (if any) load: the certificate chain and its private key.
absl::Status CheckTlsFiles(const ServerOptions& options);

class HttpServer {
 public:
  HttpServer(const ServerOptions& options, Api& api, Pipeline& pipeline, MetricsRegistry& metrics);
  ~HttpServer();

  // Binds and listens; a clear error when the address is in use or invalid.
  absl::Status Listen();
  // The bound port (useful when listening on port 0).
  uint16_t port() const;
  // Serves until SIGINT/SIGTERM (or RequestStop), drains, returns.
  void Run();
  void RequestStop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace adpulse
