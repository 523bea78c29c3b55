#include "ingest/gzip.h"

#include <zlib.h>

#include <catch2/catch.hpp>
#include <string>

namespace adpulse {
namespace {

// One gzip member holding `text` (deflateInit2 with 16 + MAX_WBITS writes a gzip wrapper).
std::string GzipMember(const std::string& text) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, text.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = static_cast<uInt>(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace

TEST_CASE("gzip: a single member is inflated whole", "[gzip]") {
  auto out = GunzipBody(GzipMember("{\"a\":1}\n"), 1 << 20, 64);
  REQUIRE(out.ok());
  CHECK(*out == "{\"a\":1}\n");
}

TEST_CASE("gzip: every member of a concatenated body is inflated (cat a.gz b.gz)", "[gzip]") {
  std::string body = GzipMember("line 1\n") + GzipMember("line 2\n") + GzipMember("line 3\n");
  auto out = GunzipBody(body, 1 << 20, 64);
  REQUIRE(out.ok());
  CHECK(*out == "line 1\nline 2\nline 3\n");
}

TEST_CASE("gzip: an empty member between others is fine", "[gzip]") {
  auto out = GunzipBody(GzipMember("a\n") + GzipMember("") + GzipMember("b\n"), 1 << 20, 0);
  REQUIRE(out.ok());
  CHECK(*out == "a\nb\n");
}

TEST_CASE("gzip: trailing bytes that are not a member are an error, not ignored", "[gzip]") {
  auto out = GunzipBody(GzipMember("x\n") + "garbage", 1 << 20, 0);
  REQUIRE(out.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(out.status().message()).find("trailing data") != std::string::npos);
  // A second member cut short is truncated, not half-accepted.
  std::string second = GzipMember("y\n");
  auto cut = GunzipBody(GzipMember("x\n") + second.substr(0, second.size() - 4), 1 << 20, 0);
  CHECK(cut.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("gzip: the output limit holds across members", "[gzip]") {
  std::string part(6000, 'z');
  std::string body = GzipMember(part) + GzipMember(part);
  CHECK(GunzipBody(body, 12000, 0).ok());
  auto over = GunzipBody(body, 11999, 0);
  CHECK(over.status().code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("gzip: a zlib stream is accepted, with nothing after it", "[gzip]") {
  std::string text = "zlib body";
  uLongf n = compressBound(text.size());
  std::string z(n, '\0');
  REQUIRE(compress(reinterpret_cast<Bytef*>(z.data()), &n,
                   reinterpret_cast<const Bytef*>(text.data()), text.size()) == Z_OK);
  z.resize(n);
  auto out = GunzipBody(z, 1 << 20, 0);
  REQUIRE(out.ok());
  CHECK(*out == text);
  CHECK(!GunzipBody(z + z, 1 << 20, 0).ok());
}

}  // namespace adpulse
