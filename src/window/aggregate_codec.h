// Byte encoding of an Aggregate as stored in RocksDB, and of the key of one (shard, cube, level,
// bucket, group) aggregate; docs/formats/state.md describes both. Pure functions, no I/O.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "window/aggregate.h"
#include "window/time_bucket.h"

namespace adpulse {

void EncodeAggregate(const Aggregate& a, std::string& out);
// `with_users` false skips the HyperLogLog (left empty): much cheaper for a large one.
bool DecodeAggregate(std::string_view in, Aggregate& a, bool with_users = true);
// The encoding of the merge of encoded aggregates (RocksDB's merge operator), without building
// HyperLogLog objects: counters are summed, sparse user lists sorted and deduplicated, dense
// registers maxed. Same result as decoding, Aggregate::Merge and encoding. False if one is
// malformed.
bool MergeEncodedAggregates(const std::vector<std::string_view>& values, std::string& out);

// key = 'A' | shard u16 BE | cube u8 | level u8 | bucket index u64 BE (sign-flipped) |
//       per dimension: u16 BE length, bytes. Keys of one (shard, cube, level) sort by bucket.
inline constexpr char kAggregateKeyTag = 'A';
void AppendAggregateKeyPrefix(std::string& out, int shard, int cube, Level level, int64_t bucket);
void AppendAggregateKeyDim(std::string& out, std::string_view value);

struct AggregateKey {
  int shard = 0;
  int cube = 0;
  Level level = Level::kMinute;
  int64_t bucket = 0;
  std::vector<std::string_view> dims;  // views into the key
};
bool DecodeAggregateKey(std::string_view key, AggregateKey& out);

}  // namespace adpulse
