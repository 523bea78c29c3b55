#include "ingest/gzip.h"

#include <fmt/format.h>
#include <zlib.h>

namespace adpulse {
namespace {
bool StartsGzipMember(const Bytef* p, uInt n) { return n >= 2 && p[0] == 0x1f && p[1] == 0x8b; }
}  // namespace

absl::StatusOr<std::string> GunzipBody(std::string_view input, size_t max_output_bytes,
                                       size_t extra_capacity) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) {  // 32: accept gzip or zlib headers
    return absl::InternalError("zlib could not be initialised");
  }
  std::string out;
  out.reserve(std::min(max_output_bytes, input.size() * 4 + 1024) + extra_capacity);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  zs.avail_in = static_cast<uInt>(input.size());
  bool gzip_members = StartsGzipMember(zs.next_in, zs.avail_in);
  int members = 1;
  char chunk[64 * 1024];
  while (true) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof(chunk);
    int rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return absl::InvalidArgumentError(
          fmt::format("body is not valid gzip: {}{}",
                      zs.msg ? zs.msg : (rc == Z_BUF_ERROR ? "truncated" : "error"),
                      members > 1 ? fmt::format(" (in member {})", members) : ""));
    }
    // The limit holds for the whole body, over every member.
    size_t produced = sizeof(chunk) - zs.avail_out;
    if (out.size() + produced > max_output_bytes) {
      inflateEnd(&zs);
      return absl::ResourceExhaustedError(
          fmt::format("decompressed body exceeds the limit of {} bytes", max_output_bytes));
    }
    out.append(chunk, produced);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      // More input after a member's end: another member (what `cat a.gz b.gz` makes, RFC 1952
      // section 2.2), or bytes that are not gzip, which must not be dropped silently.
      if (!gzip_members || !StartsGzipMember(zs.next_in, zs.avail_in)) {
        size_t at = input.size() - zs.avail_in;
        inflateEnd(&zs);
        return absl::InvalidArgumentError(fmt::format(
            "body is not valid gzip: {} bytes of trailing data after the compressed data end "
            "at byte {}",
            input.size() - at, at));
      }
      if (inflateReset(&zs) != Z_OK) {
        inflateEnd(&zs);
        return absl::InternalError("zlib could not be reset for the next gzip member");
      }
      ++members;
      continue;
    }
    if (produced == 0 && zs.avail_in == 0) {
      inflateEnd(&zs);
      return absl::InvalidArgumentError("body is not valid gzip: truncated");
    }
  }
  inflateEnd(&zs);
  out.reserve(out.size() + extra_capacity);
  return out;
}

}  // namespace adpulse
