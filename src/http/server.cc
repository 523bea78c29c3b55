#include "http/server.h"

#include <fmt/format.h>
#include <pthread.h>

#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>  // before Asio: DEPENDENCIES.md trap 1
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "base/log.h"
#include "base/status_macros.h"

namespace adpulse {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {
thread_local int t_producer = -1;
constexpr size_t kReadBufferLimit = 1 << 20;
constexpr size_t kMaxChunkExtensionBytes = 256;
// Beast reads into the read buffer's free capacity, at least 512 bytes and at most 64 KiB a call
// (beast::read_size): a body is read in calls of this size, not of the few hundred bytes an
// empty buffer starts with (which cost one system call and one Asio operation per 512 bytes).
constexpr size_t kBodyReadBytes = 64 << 10;

// A TLS server context from PEM files: the certificate chain and its private key.
absl::StatusOr<std::shared_ptr<ssl::context>> LoadTls(const std::string& cert,
                                                      const std::string& key) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  beast::error_code ec;
  ctx->use_certificate_chain_file(cert, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        fmt::format("server.tls_cert_file {}: {}", cert, ec.message()));
  }
  ctx->use_private_key_file(key, ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        fmt::format("server.tls_key_file {}: {} (it must be the PEM private key of {})", key,
                    ec.message(), cert));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError(fmt::format(
        "server.tls_key_file {} is not the private key of the certificate {}", key, cert));
  }
  return ctx;
}

std::string Trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return absl::AsciiStrToLower(absl::string_view(s.data(), s.size()));
}
}  // namespace

struct HttpServer::Impl {
  ServerOptions options;
  Api& api;
  Pipeline& pipeline;
  // One io_context per I/O thread, each run by that thread alone: a session lives on one of them,
  // so its handlers never run concurrently and need no strand, and its stream has the concrete
  // executor type, not Asio's type-erased one (the two cost the I/O thread most of its time).
  // The first also accepts, catches signals and runs the shutdown.
  using Executor = asio::io_context::executor_type;
  using Socket = asio::basic_stream_socket<tcp, Executor>;
  using Stream = beast::basic_stream<tcp, Executor>;
  using TlsStream = beast::ssl_stream<Stream>;
  // The TLS context new connections use (server.tls_cert_file); replaced on SIGHUP, while the
  // connections made with the old one keep it.
  std::mutex tls_mu;
  std::shared_ptr<ssl::context> tls;
  std::shared_ptr<ssl::context> CurrentTls() {
    std::lock_guard<std::mutex> lock(tls_mu);
    return tls;
  }
  bool tls_enabled() const { return !options.tls_cert_file.empty(); }
  std::vector<std::unique_ptr<asio::io_context>> iocs;
  std::vector<asio::executor_work_guard<Executor>> io_guards;  // keep the others running
  size_t next_io = 0;
  asio::io_context& ioc;
  tcp::acceptor acceptor{ioc};
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  asio::signal_set hangups{ioc, SIGHUP};
  void WaitHangup() {
    hangups.async_wait([this](beast::error_code ec, int) {
      if (ec || stopping.load()) return;
      LOG_INFO("received SIGHUP: reloading");
      if (tls_enabled()) {
        auto loaded = LoadTls(options.tls_cert_file, options.tls_key_file);
        if (loaded.ok()) {
          std::lock_guard<std::mutex> lock(tls_mu);
          tls = std::move(*loaded);
          LOG_INFO("tls: certificate {} reloaded; new connections use it", options.tls_cert_file);
        } else {
          LOG_ERROR("tls: {}; the previous certificate stays", Message(loaded.status()));
        }
      }
      if (options.on_sighup) options.on_sighup();
      WaitHangup();
    });
  }
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> active_requests{0};
  std::atomic<int64_t> open_connections{0};
  // Event decoders: POST /v1/events is parsed and handed to the workers on a decoder thread of
  // its own, so the I/O threads stay free to read and answer other requests (a query arriving
  // behind a 1000-event request waited for its parse). Each is a pipeline producer.
  struct Decoder {
    asio::io_context ioc;
    asio::executor_work_guard<asio::io_context::executor_type> guard{ioc.get_executor()};
    std::thread thread;
  };
  std::vector<std::unique_ptr<Decoder>> decoders;
  std::atomic<size_t> next_decoder{0};
  MetricsRegistry::Counter& connections_total;
  MetricsRegistry::Counter& framing_refused;
  MetricsRegistry::Counter& refused_total;
  MetricsRegistry::Counter& refused_per_client;
  MetricsRegistry::Counter& tls_handshake_failures;
  MetricsRegistry& metrics;
  std::mutex clients_mu;
  absl::flat_hash_map<std::string, size_t> clients;  // open connections by client address

  Impl(const ServerOptions& o, Api& a, Pipeline& p, MetricsRegistry& m)
      : options(o),
        api(a),
        pipeline(p),
        iocs(MakeIoContexts(std::max(1, o.threads))),
        ioc(*iocs[0]),
        connections_total(
            m.GetCounter("adpulse_http_connections_total", "TCP connections accepted.")),
        framing_refused(m.GetCounter(
            "adpulse_http_framing_refused_total",
            "Requests refused for ambiguous or unsupported framing (400/501, connection closed).")),
        refused_total(m.GetCounter("adpulse_http_connections_refused_total",
                                   "Connections answered 503 and closed at once: the server held "
                                   "server.max_connections, or their client address "
                                   "server.max_connections_per_client.",
                                   "reason=\"max_connections\"")),
        refused_per_client(m.GetCounter("adpulse_http_connections_refused_total", "",
                                        "reason=\"max_connections_per_client\"")),
        tls_handshake_failures(m.GetCounter(
            "adpulse_tls_handshake_failures_total",
            "TLS handshakes that failed (plain HTTP to the HTTPS port, an old protocol, a client "
            "that does not trust the certificate, a timeout).")),
        metrics(m) {
    m.AddGauge("adpulse_http_open_connections", "Open HTTP connections.",
               [this] { return static_cast<double>(open_connections.load()); });
    for (size_t i = 1; i < iocs.size(); ++i) io_guards.emplace_back(iocs[i]->get_executor());
  }

  static std::vector<std::unique_ptr<asio::io_context>> MakeIoContexts(int n) {
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (int i = 0; i < n; ++i) out.push_back(std::make_unique<asio::io_context>(1));
    return out;
  }

  void CountResponse(const std::string& path, unsigned status) {
    std::string_view p = path;
    p = p.substr(0, p.find('?'));
    // Keep label cardinality bounded: known paths only.
    static const char* kKnown[] = {
        "/v1/events", "/v1/metrics/realtime", "/v1/metrics", "/v1/query", "/v1/top", "/v1/funnel",
        "/v1/billing", "/v1/fraud", "/v1/fraud/events", "/v1/admin/reconcile", "/healthz",
        "/readyz", "/metrics",
        // Grafana's datasource calls.
        "/grafana", "/grafana/", "/grafana/metrics", "/grafana/metric-payload-options",
        "/grafana/query", "/grafana/variable", "/grafana/tag-keys", "/grafana/tag-values",
        "/grafana/search", "/grafana/annotations"};
    std::string label = "other";
    for (const char* k : kKnown) {
      if (p == k) label = k;
    }
    metrics
        .GetCounter("adpulse_http_responses_total", "HTTP responses by path and status.",
                    fmt::format("path=\"{}\",code=\"{}\"", label, status))
        .fetch_add(1, std::memory_order_relaxed);
  }

  // One connection; S is Stream (plain HTTP) or TlsStream (HTTPS).
  template <class S>
  class Session : public std::enable_shared_from_this<Session<S>> {
    static constexpr bool kTls = std::is_same_v<S, TlsStream>;

   public:
    // `client` was admitted by Impl::Admit; the session releases it. `tls` is null for plain HTTP.
    Session(Socket&& socket, std::shared_ptr<ssl::context> tls, Impl& server, std::string client)
        : tls_(std::move(tls)),
          stream_(MakeStream(std::move(socket), tls_.get())),
          buffer_(kReadBufferLimit),
          server_(server),
          client_address_(std::move(client)) {}
    ~Session() { server_.Release(client_address_); }

    void Start() {
      asio::dispatch(stream_.get_executor(),
                     beast::bind_front_handler(&Session::Begin, this->Self()));
    }

   private:
    static S MakeStream(Socket&& socket, ssl::context* tls) {
      if constexpr (kTls) {
        return S(std::move(socket), *tls);
      } else {
        return S(std::move(socket));
      }
    }

    auto& Lowest() { return beast::get_lowest_layer(stream_); }
    std::shared_ptr<Session> Self() { return this->shared_from_this(); }

    void Begin() {
      if constexpr (kTls) {
        Lowest().expires_after(std::chrono::seconds(server_.options.request_timeout_s));
        stream_.async_handshake(ssl::stream_base::server, [self = Self()](beast::error_code ec) {
          if (ec) {
            self->server_.tls_handshake_failures.fetch_add(1, std::memory_order_relaxed);
            return self->Close();
          }
          self->ReadHeader();
        });
      } else {
        ReadHeader();
      }
    }

    void ReadHeader() {
      if (server_.stopping.load()) return Close();
      // An idle keep-alive connection holds no more than the bytes it has been sent.
      buffer_.shrink_to_fit();
      parser_.emplace();
      parser_->body_limit(server_.options.max_body_bytes);
      // Chunk extensions mean nothing to adpulse: a few bytes are tolerated, not a megabyte.
      parser_->on_chunk_header(chunk_header_);
      parser_->header_limit(static_cast<uint32_t>(server_.options.max_header_bytes));
      Lowest().expires_after(std::chrono::seconds(server_.options.idle_timeout_s));
      http::async_read_header(stream_, buffer_, *parser_,
                              beast::bind_front_handler(&Session::OnHeader, Self()));
    }

    // An absolute-form target ("http://host:8080/v1/events?x", RFC 9112 section 3.2.2, as
    // proxies send) as its origin form ("/v1/events?x"); any other target as it is.
    static std::string OriginForm(std::string_view target) {
      for (std::string_view scheme : {"http://", "https://"}) {
        if (target.size() > scheme.size() &&
            absl::EqualsIgnoreCase(absl::string_view(target.data(), scheme.size()),
                                   absl::string_view(scheme.data(), scheme.size()))) {
          std::string_view rest = target.substr(scheme.size());
          size_t path = rest.find_first_of("/?");
          if (path == std::string_view::npos) return "/";
          std::string out(rest.substr(path));
          if (out[0] == '?') out.insert(out.begin(), '/');
          return out;
        }
      }
      return std::string(target);
    }

    void OnHeader(beast::error_code ec, size_t) {
      if (ec) return OnReadError(ec);
      auto& req = parser_->get();
      target_ = OriginForm(req.target());
      size_t fields = static_cast<size_t>(std::distance(req.begin(), req.end()));
      if (fields > server_.options.max_header_fields) {
        return SendError(431, fmt::format("the request has {} header fields (limit {})", fields,
                                          server_.options.max_header_fields));
      }
      if (req.version() >= 11 && req.find(http::field::host) == req.end()) {
        return SendError(400, "HTTP/1.1 requests need a Host header (RFC 9112, section 3.2)");
      }
      // Framing guards: Beast 1.74 misreads these (RELIABILITY.md), so they are refused outright.
      auto te = req.find(http::field::transfer_encoding);
      if (te != req.end()) {
        std::string coding = Trimmed(te->value());
        if (coding != "chunked") {
          return SendError(501, fmt::format("Transfer-Encoding '{}' is not supported; send "
                                            "chunked or a Content-Length",
                                            te->value()));
        }
        if (req.find(http::field::content_length) != req.end()) {
          return SendError(400, "Transfer-Encoding and Content-Length together are ambiguous");
        }
        if (req.version() < 11) {
          return SendError(400, "chunked Transfer-Encoding needs HTTP/1.1");
        }
      }
      // The body's capacity includes the JSON parser's padding, so it is never copied to add it.
      auto length = parser_->content_length();
      if (length && *length <= server_.options.max_body_bytes) {
        req.body().reserve(static_cast<size_t>(*length) + kBodyPaddingBytes);
      }
      if (!length || *length > buffer_.capacity() - buffer_.size()) {
        buffer_.reserve(std::min(buffer_.max_size(), buffer_.size() + kBodyReadBytes));
      }
      auto expect = req.find(http::field::expect);
      if (expect != req.end() && Trimmed(expect->value()) == "100-continue") {
        auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                       req.version());
        Lowest().expires_after(std::chrono::seconds(server_.options.request_timeout_s));
        http::async_write(stream_, *cont, [self = Self(), cont](beast::error_code wec, size_t) {
          if (wec) return self->Close();
          self->ReadBody();
        });
        return;
      }
      ReadBody();
    }

    void ReadBody() {
      Lowest().expires_after(std::chrono::seconds(server_.options.request_timeout_s));
      http::async_read(stream_, buffer_, *parser_,
                       beast::bind_front_handler(&Session::OnBody, Self()));
    }

    void OnReadError(beast::error_code ec) {
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == ssl::error::stream_truncated || ec == beast::error::timeout ||
          ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
        return Close();
      }
      if (ec == http::error::body_limit) {
        return SendError(
            413, fmt::format("body exceeds the limit of {} bytes", server_.options.max_body_bytes));
      }
      if (ec == http::error::header_limit) {
        return SendError(431, "request headers are too large");
      }
      if (ec == http::error::bad_chunk_extension) {
        return SendError(400, fmt::format("a chunk extension is malformed or longer than {} bytes",
                                          kMaxChunkExtensionBytes));
      }
      if (ec == http::error::buffer_overflow) {
        return SendError(400, "request framing is too large (chunk header or line)");
      }
      if (ec == http::error::bad_version || ec == http::error::bad_line_ending) {
        // Beast reads only CRLF line ends; a bare LF shows up as a bad version or line end.
        std::string_view seen(static_cast<const char*>(buffer_.data().data()), buffer_.size());
        size_t lf = seen.find('\n');
        if (lf != std::string_view::npos && (lf == 0 || seen[lf - 1] != '\r')) {
          return SendError(400,
                           "malformed HTTP request: lines must end in CRLF (\\r\\n), not a "
                           "bare LF");
        }
      }
      return SendError(400, fmt::format("malformed HTTP request: {}", ec.message()));
    }

    void OnBody(beast::error_code ec, size_t) {
      if (ec) return OnReadError(ec);
      auto& req = parser_->get();
      HttpRequest request;
      request.method = std::string(req.method_string());
      request.target = target_;
      request.content_type = std::string(req[http::field::content_type]);
      request.content_encoding = std::string(req[http::field::content_encoding]);
      request.authorization = std::string(req[http::field::authorization]);
      request.client_address = client_address_;
      request.body = std::move(req.body());
      keep_alive_ = req.keep_alive();
      version_ = req.version();
      head_ = req.method() == http::verb::head;
      Lowest().expires_never();
      server_.active_requests.fetch_add(1);
      Responder respond = [self = Self()](HttpResponse response) {
        asio::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
          self->Send(std::move(response), false, true);
        });
      };
      std::string_view path = std::string_view(request.target).substr(0, request.target.find('?'));
      if (request.method == "POST" && path == "/v1/events" && !server_.decoders.empty()) {
        size_t i = server_.next_decoder.fetch_add(1, std::memory_order_relaxed);
        Decoder& decoder = *server_.decoders[i % server_.decoders.size()];
        asio::post(decoder.ioc, [&api = server_.api, request = std::move(request),
                                 respond = std::move(respond)]() mutable {
          api.Handle(t_producer, std::move(request), std::move(respond));
        });
        return;
      }
      server_.api.Handle(t_producer, std::move(request), std::move(respond));
    }

    void SendError(unsigned status, std::string message) {
      if (status == 400 || status == 501) {
        server_.framing_refused.fetch_add(1, std::memory_order_relaxed);
      }
      keep_alive_ = false;
      version_ = parser_ ? parser_->get().version() : 11;
      if (version_ == 0) version_ = 11;
      head_ = false;
      Send(ErrorResponse(status, message), true, false);
    }

    void Send(HttpResponse response, bool close, bool counted) {
      server_.CountResponse(target_, response.status);
      bool keep = keep_alive_ && !close && !server_.stopping.load();
      auto res = std::make_shared<http::response<http::string_body>>();
      res->version(version_);
      res->result(response.status);
      res->set(http::field::server, "adpulse");
      res->set(http::field::content_type, response.content_type);
      for (auto& [name, value] : response.headers) res->set(name, value);
      res->body() = std::move(response.body);
      res->prepare_payload();
      if (head_) res->body().clear();
      res->keep_alive(keep);
      Lowest().expires_after(std::chrono::seconds(server_.options.request_timeout_s));
      http::async_write(stream_, *res,
                        [self = Self(), res, keep, counted](beast::error_code ec, size_t) {
                          if (counted) self->server_.active_requests.fetch_sub(1);
                          if (ec || !keep) return self->Close();
                          self->ReadHeader();
                        });
    }

    void Close() {
      beast::error_code ignored;
      Lowest().socket().shutdown(asio::socket_base::shutdown_send, ignored);
      Lowest().socket().close(ignored);
    }

    std::shared_ptr<ssl::context> tls_;  // before stream_: it must outlive it
    S stream_;
    beast::flat_buffer buffer_;
    Impl& server_;
    std::string client_address_;
    std::function<void(uint64_t, beast::string_view, beast::error_code&)> chunk_header_ =
        [](uint64_t, beast::string_view extensions, beast::error_code& ec) {
          if (extensions.size() > kMaxChunkExtensionBytes) ec = http::error::bad_chunk_extension;
        };
    std::optional<http::request_parser<http::string_body>> parser_;
    std::string target_;
    bool keep_alive_ = true;
    bool head_ = false;
    unsigned version_ = 11;
  };

  void Accept() {
    asio::io_context& target = *iocs[next_io++ % iocs.size()];
    acceptor.async_accept(target.get_executor(), [this](beast::error_code ec, Socket socket) {
      if (ec) {
        if (ec == asio::error::operation_aborted || stopping.load()) return;
        LOG_WARN("accept failed: {}", ec.message());
      } else {
        connections_total.fetch_add(1, std::memory_order_relaxed);
        beast::error_code peer_ec;
        auto peer = socket.remote_endpoint(peer_ec);
        std::string client = peer_ec ? std::string() : peer.address().to_string();
        std::string refusal = Admit(client);
        if (refusal.empty() && tls_enabled()) {
          std::make_shared<Session<TlsStream>>(std::move(socket), CurrentTls(), *this,
                                               std::move(client))
              ->Start();
        } else if (refusal.empty()) {
          std::make_shared<Session<Stream>>(std::move(socket), nullptr, *this, std::move(client))
              ->Start();
        } else {
          // A fresh socket's send buffer takes the short answer without blocking.
          std::string body = fmt::format("{{\"error\":\"{}\"}}\n", refusal);
          std::string answer = fmt::format(
              "HTTP/1.1 503 Service Unavailable\r\nServer: adpulse\r\nContent-Type: "
              "application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: "
              "{}\r\n\r\n{}",
              body.size(), body);
          beast::error_code ignored;
          socket.non_blocking(true, ignored);
          socket.send(asio::buffer(answer), 0, ignored);
          socket.shutdown(asio::socket_base::shutdown_send, ignored);
          socket.close(ignored);
        }
      }
      Accept();
    });
  }

  // Counts a new connection from `client`; a refusal's reason (and nothing counted) when a limit
  // is reached.
  std::string Admit(const std::string& client) {
    std::lock_guard<std::mutex> lock(clients_mu);
    if (static_cast<size_t>(open_connections.load()) >= options.max_connections) {
      refused_total.fetch_add(1, std::memory_order_relaxed);
      return fmt::format("the server holds {} connections, its limit (server.max_connections)",
                         options.max_connections);
    }
    size_t& mine = clients[client];
    if (mine >= options.max_connections_per_client) {
      refused_per_client.fetch_add(1, std::memory_order_relaxed);
      return fmt::format(
          "{} already holds {} connections, the limit per client address "
          "(server.max_connections_per_client)",
          client, mine);
    }
    ++mine;
    open_connections.fetch_add(1);
    return {};
  }

  void Release(const std::string& client) {
    std::lock_guard<std::mutex> lock(clients_mu);
    auto it = clients.find(client);
    if (it != clients.end() && --it->second == 0) clients.erase(it);
    open_connections.fetch_sub(1);
  }

  void BeginShutdown() {
    if (stopping.exchange(true)) return;
    LOG_INFO("shutting down: no new connections; draining in-flight requests");
    beast::error_code ignored;
    hangups.cancel(ignored);
    signals.cancel(ignored);
    acceptor.close(ignored);
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(options.drain_timeout_s);
    auto timer = std::make_shared<asio::steady_timer>(ioc);
    std::function<void()> poll;
    auto poll_ptr = std::make_shared<std::function<void()>>();
    *poll_ptr = [this, timer, deadline, poll_ptr]() {
      if (active_requests.load() <= 0 || std::chrono::steady_clock::now() > deadline) {
        if (active_requests.load() > 0) {
          LOG_WARN("drain timed out with {} requests in flight", active_requests.load());
        }
        for (auto& c : iocs) c->stop();
        *poll_ptr = nullptr;  // break the cycle
        return;
      }
      timer->expires_after(std::chrono::milliseconds(5));
      timer->async_wait([poll_ptr](beast::error_code) {
        if (*poll_ptr) (*poll_ptr)();
      });
    };
    (*poll_ptr)();
  }
};

HttpServer::HttpServer(const ServerOptions& options, Api& api, Pipeline& pipeline,
                       MetricsRegistry& metrics)
    : impl_(std::make_unique<Impl>(options, api, pipeline, metrics)) {}

HttpServer::~HttpServer() = default;

absl::Status HttpServer::Listen() {
  if (impl_->tls_enabled()) {
    auto loaded = LoadTls(impl_->options.tls_cert_file, impl_->options.tls_key_file);
    if (!loaded.ok()) return loaded.status();
    impl_->tls = std::move(*loaded);
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(impl_->options.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        fmt::format("listen address '{}' is not an IP address", impl_->options.host));
  }
  tcp::endpoint endpoint(address, impl_->options.port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(fmt::format("cannot listen on {}:{}: {}", impl_->options.host,
                                              impl_->options.port, ec.message()));
  }
  return absl::OkStatus();
}

absl::Status CheckTlsFiles(const ServerOptions& options) {
  if (options.tls_cert_file.empty()) return absl::OkStatus();
  return LoadTls(options.tls_cert_file, options.tls_key_file).status();
}

uint16_t HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::RequestStop() {
  asio::post(impl_->ioc, [this] { impl_->BeginShutdown(); });
}

void HttpServer::Run() {
  Impl& s = *impl_;
  s.signals.async_wait([&s](beast::error_code ec, int signo) {
    if (ec) return;
    LOG_INFO("received {}", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    s.BeginShutdown();
  });
  s.WaitHangup();
  s.Accept();
  int threads = std::max(1, s.options.threads);
  for (int i = 0; i < threads; ++i) {
    auto& d = *s.decoders.emplace_back(std::make_unique<Impl::Decoder>());
    d.thread = std::thread([&d, i, producer = s.pipeline.RegisterProducer()] {
      pthread_setname_np(pthread_self(), fmt::format("adpulse-dec{}", i).c_str());
      t_producer = producer;
      d.ioc.run();
    });
  }
  std::vector<int> producers;
  for (int i = 0; i < threads; ++i) producers.push_back(s.pipeline.RegisterProducer());
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) {
    pool.emplace_back([&s, i, producer = producers[i]] {
      t_producer = producer;
      s.iocs[static_cast<size_t>(i)]->run();
    });
  }
  t_producer = producers[0];
  s.ioc.run();
  for (auto& t : pool) t.join();
  // Drained (or timed out): the decoders finish what was handed to them, then stop.
  for (auto& d : s.decoders) d->guard.reset();
  for (auto& d : s.decoders) d->thread.join();
}

}  // namespace adpulse
