// Sums of money in micro-units. One event's bid_price is at most kMaxBidMicros (10^12), but a sum
// over a month of a busy campaign is not bounded by anything an int64 holds (9.2 * 10^18
// micro-units is only 9.2 million bids at the limit). Sums are therefore 128 bits: 2^64 events at
// the limit still fit, so no sum adpulse can be asked to make wraps. Aligned to 8 bytes (a typedef
// may lower the alignment) so that the counters stay as compact as 64-bit ones were, with no
// padding. A template that deduces the type (Catch's CHECK, std::max) sees a plain __int128 with
// its 16-byte alignment: pass such a value by copy, never bind a reference to the member (UBSan:
// "reference binding to misaligned address").
#pragma once
#include <cstdint>
#include <string>

namespace adpulse {

__extension__ typedef __int128 MoneySum __attribute__((aligned(8)));
__extension__ typedef unsigned __int128 MoneyBits;

// Formats micro-units as an exact decimal: 15500000 -> "15.5", 0 -> "0", -1 -> "-0.000001";
// with fixed_six_decimals, always six decimals ("15.500000").
std::string MicrosToDecimal(MoneySum micros, bool fixed_six_decimals = false);

}  // namespace adpulse
