#include "ingest/gzip.h"

#include <fmt/format.h>
#include <zlib.h>

namespace adpulse {

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
  char chunk[64 * 1024];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk);
    zs.avail_out = sizeof(chunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return absl::InvalidArgumentError(
          fmt::format("body is not valid gzip: {}",
                      zs.msg ? zs.msg : (rc == Z_BUF_ERROR ? "truncated" : "error")));
    }
    size_t produced = sizeof(chunk) - zs.avail_out;
    if (out.size() + produced > max_output_bytes) {
      inflateEnd(&zs);
      return absl::ResourceExhaustedError(
          fmt::format("decompressed body exceeds the limit of {} bytes", max_output_bytes));
    }
    out.append(chunk, produced);
    if (rc == Z_OK && produced == 0 && zs.avail_in == 0) {
      inflateEnd(&zs);
      return absl::InvalidArgumentError("body is not valid gzip: truncated");
    }
  }
  inflateEnd(&zs);
  out.reserve(out.size() + extra_capacity);
  return out;
}

}  // namespace adpulse
