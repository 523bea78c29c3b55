#include "ingest/spsc_ring.h"

#include <catch2/catch.hpp>
#include <thread>

namespace adpulse {

static_assert(alignof(SpscRing<int>) == kCacheLineBytes);

TEST_CASE("the ring is FIFO and refuses pushes when full", "[ring]") {
  SpscRing<int> ring(4);
  REQUIRE(ring.capacity() == 4);
  for (int i = 0; i < 4; ++i) CHECK(ring.TryPush(i));
  CHECK_FALSE(ring.TryPush(99));
  CHECK(ring.SizeApprox() == 4);
  int v = -1;
  for (int i = 0; i < 4; ++i) {
    REQUIRE(ring.TryPop(v));
    CHECK(v == i);
  }
  CHECK_FALSE(ring.TryPop(v));
  CHECK(ring.TryPush(5));  // wraps around
  REQUIRE(ring.TryPop(v));
  CHECK(v == 5);
}

TEST_CASE("capacity rounds up to a power of two", "[ring]") {
  CHECK(SpscRing<int>(5).capacity() == 8);
  CHECK(SpscRing<int>(0).capacity() == 2);
}

TEST_CASE("two threads pass a million items in order without loss", "[ring]") {
  constexpr uint64_t kItems = 1'000'000;
  SpscRing<uint64_t> ring(1024);
  std::thread producer([&] {
    for (uint64_t i = 1; i <= kItems; ++i) {
      while (!ring.TryPush(i)) std::this_thread::yield();
    }
  });
  uint64_t expected = 1, sum = 0, v = 0;
  bool in_order = true;
  while (expected <= kItems) {
    if (!ring.TryPop(v)) continue;
    in_order &= (v == expected);
    sum += v;
    ++expected;
  }
  producer.join();
  CHECK(in_order);
  CHECK(sum == kItems * (kItems + 1) / 2);
  CHECK_FALSE(ring.TryPop(v));
}

}  // namespace adpulse
