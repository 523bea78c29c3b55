#include "fraud/scorer.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <new>
#include <type_traits>

#include "base/large_block.h"
#include "fraud/geo.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace adpulse {

namespace {

constexpr int kStripeBits = 6;
constexpr int kStripes = 1 << kStripeBits;
constexpr int64_t kFloodBucketMs = 10'000;
constexpr int kFloodBuckets = 6;  // a sliding minute of 10-second buckets
constexpr int kUserAds = 4;       // ads remembered per user

uint64_t HashOf(std::string_view s, uint64_t seed) {
  return s.empty() ? 0 : XXH3_64bits_withSeed(s.data(), s.size(), seed);
}
int StripeOf(uint64_t hash) { return static_cast<int>(hash >> (64 - kStripeBits)); }

struct IpState {
  uint32_t flood_bucket[kFloodBuckets] = {};
  uint16_t flood_count[kFloodBuckets] = {};
  int64_t farm_gen = INT64_MIN;                       // event time / (farm window / 2)
  std::array<uint64_t, 4> users_cur{}, users_prev{};  // 256-bit linear-counting bitmaps
  uint32_t imps_cur = 0, imps_prev = 0, clicks_cur = 0, clicks_prev = 0;
};

struct UserState {
  struct Impression {
    uint32_t ad = 0;
    int64_t ts = INT64_MIN;
  };
  struct Clicks {
    uint32_t ad = 0;
    uint32_t count = 0;
    int64_t first_ts = INT64_MIN;
  };
  Impression imps[kUserAds];
  Clicks clicks[kUserAds];
  int64_t pos_ts = INT64_MIN;
  int32_t lat_e4 = 0, lon_e4 = 0;
};

// One stripe of a table, under one lock: a fixed array of buckets of kWays entries each, set
// associative like a CPU cache. A key lives in the bucket its hash names; a bucket's keys and
// their last-use stamps share one cache line, the values sit in a parallel array. A key not
// there takes an empty way or the least recently used one, so memory is fixed (allocated once,
// committed as it is touched), nothing is ever rehashed or moved, and where an entry lives is
// known from its key alone, which lets a request's lookups be prefetched ahead of their use.
constexpr int kWays = 4;

struct Tag {
  uint64_t key = 0;  // 0: empty
  uint32_t stamp = 0;
  uint32_t unused = 0;
};
struct alignas(64) Bucket {
  Tag tags[kWays];
};
static_assert(sizeof(Bucket) == 64);

template <typename V>
struct alignas(64) Stripe {
  std::mutex mu;
  Bucket* buckets = nullptr;  // nbuckets, inside the table's block
  V* values = nullptr;        // nbuckets * kWays, likewise
  uint64_t nbuckets = 0;
  uint32_t clock = 0;  // stamps: a count of uses, compared modulo 2^32
  uint64_t entries = 0, evictions = 0;

  // Bucket from the key's low 32 bits (the stripe came from its top bits).
  size_t BucketOf(uint64_t key) const {
    return static_cast<size_t>((static_cast<uint64_t>(static_cast<uint32_t>(key)) * nbuckets) >>
                               32);
  }
  void PrefetchBucket(uint64_t key) const { __builtin_prefetch(&buckets[BucketOf(key)], 1); }
  void PrefetchValue(size_t slot) const {
    const char* p = reinterpret_cast<const char*>(&values[slot]);
    for (size_t off = 0; off < sizeof(V); off += 64) __builtin_prefetch(p + off, 1);
    __builtin_prefetch(p + sizeof(V) - 1, 1);
  }
  uint64_t KeyAt(size_t slot) const { return buckets[slot / kWays].tags[slot % kWays].key; }

  // The slot of `key`, created (value-initialized) when missing, evicting the bucket's least
  // recently used entry when the bucket is full.
  size_t Get(uint64_t key) {
    size_t b = BucketOf(key);
    Tag* tags = buckets[b].tags;
    ++clock;
    for (int w = 0; w < kWays; ++w) {
      if (tags[w].key == key) {
        tags[w].stamp = clock;
        return b * kWays + static_cast<size_t>(w);
      }
    }
    int victim = -1;
    uint32_t oldest = 0;
    for (int w = 0; w < kWays; ++w) {
      if (tags[w].key == 0) {
        victim = w;
        break;
      }
      uint32_t age = clock - tags[w].stamp;
      if (victim < 0 || age > oldest) {
        victim = w;
        oldest = age;
      }
    }
    if (tags[victim].key == 0) {
      ++entries;
    } else {
      ++evictions;
    }
    tags[victim] = {key, clock, 0};
    size_t slot = b * kWays + static_cast<size_t>(victim);
    new (&values[slot]) V();
    return slot;
  }
  // The value of `key`, or null; no use is recorded.
  const V* Find(uint64_t key) const {
    size_t b = BucketOf(key);
    for (int w = 0; w < kWays; ++w) {
      if (buckets[b].tags[w].key == key) return &values[b * kWays + static_cast<size_t>(w)];
    }
    return nullptr;
  }
  size_t size() const { return entries; }
  size_t bytes() const { return entries * (sizeof(V) + sizeof(Tag)); }
};

template <typename V>
struct Table {
  static_assert(std::is_trivially_copyable_v<V> && std::is_trivially_destructible_v<V>);
  std::unique_ptr<Stripe<V>[]> stripes { new Stripe<V>[ kStripes ] };
  LargeBlock block;

  // Fixed at the start: as many buckets as `bytes` holds, split evenly among the stripes.
  void SetBudget(uint64_t bytes) {
    const uint64_t per_bucket = sizeof(Bucket) + kWays * sizeof(V);
    uint64_t n = std::max<uint64_t>(4, bytes / kStripes / per_bucket);
    const uint64_t stripe_bytes = n * sizeof(Bucket) + (n * kWays * sizeof(V) + 63) / 64 * 64;
    block = LargeBlock(stripe_bytes * kStripes);
    char* base = static_cast<char*>(block.data());
    for (int i = 0; i < kStripes; ++i) {
      char* p = base + stripe_bytes * static_cast<uint64_t>(i);
      stripes[i].buckets = reinterpret_cast<Bucket*>(p);
      stripes[i].values = reinterpret_cast<V*>(p + n * sizeof(Bucket));
      stripes[i].nbuckets = n;
    }
  }
  uint64_t reserved_bytes() const { return block.size(); }
  template <typename F>
  void ForEach(F&& f) const {
    for (int i = 0; i < kStripes; ++i) f(stripes[i]);
  }
};

int64_t FloorDivMs(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

struct FraudScorer::Tables {
  Table<IpState> ips;
  Table<UserState> users;
  Table<int64_t> clicks;     // click event_id -> its time (for conversions' click_id)
  Table<int64_t> campaigns;  // campaign -> its newest impression's time
};

// Per-thread buffers of one call, reused so that scoring allocates nothing once warm.
struct FraudScorer::Scratch {
  struct Keys {
    uint64_t ip = 0, user = 0, click = 0, campaign = 0;
    uint32_t ad = 0;
    bool campaign_active = false;
  };
  std::vector<Keys> keys;
  std::vector<uint32_t> signals;
  std::vector<uint32_t> order;
  std::vector<uint32_t> slots;  // per position in `order`: the entry's slot in its stripe
  std::array<uint32_t, kStripes + 1> starts{};

  // The entries of stripe s's events, in two rounds of prefetches: every bucket, then every
  // value (found or created), so a request's cache misses overlap instead of following one
  // another. Fills slots[starts[s]..starts[s+1]).
  template <typename V, typename KeyOf>
  void Resolve(Stripe<V>& stripe, int s, KeyOf&& key_of) {
    for (uint32_t j = starts[s]; j < starts[s + 1]; ++j) stripe.PrefetchBucket(key_of(order[j]));
    for (uint32_t j = starts[s]; j < starts[s + 1]; ++j) {
      size_t slot = stripe.Get(key_of(order[j]));
      slots[j] = static_cast<uint32_t>(slot);
      stripe.PrefetchValue(slot);
    }
  }
  // The slot Resolve found for position j, unless a later event of the request took it over
  // (its bucket full of keys used since): then the key's entry again.
  template <typename V>
  V& At(Stripe<V>& stripe, uint32_t j, uint64_t key) {
    size_t slot = slots[j];
    if (stripe.KeyAt(slot) != key) slot = stripe.Get(key);
    return stripe.values[slot];
  }

  // Fills `order` with the events that have a key (hash != 0), grouped by stripe, in event
  // order within a stripe (a counting sort); starts[s]..starts[s+1] is stripe s.
  template <typename KeyOf>
  void GroupBy(size_t n, KeyOf&& key_of) {
    starts.fill(0);
    for (size_t i = 0; i < n; ++i) {
      uint64_t k = key_of(i);
      if (k != 0) ++starts[StripeOf(k) + 1];
    }
    for (int s = 0; s < kStripes; ++s) starts[s + 1] += starts[s];
    order.resize(starts[kStripes]);
    slots.resize(starts[kStripes]);
    std::array<uint32_t, kStripes> at;
    std::copy(starts.begin(), starts.end() - 1, at.begin());
    for (size_t i = 0; i < n; ++i) {
      uint64_t k = key_of(i);
      if (k != 0) order[at[StripeOf(k)]++] = static_cast<uint32_t>(i);
    }
  }
};

FraudScorer::FraudScorer(const ScorerOptions& options)
    : options_(options), tables_(std::make_unique<Tables>()) {
  uint64_t b = options_.memory_bytes;
  tables_->ips.SetBudget(b / 5);
  tables_->users.SetBudget(b * 3 / 5);
  tables_->clicks.SetBudget(b * 3 / 20);
  tables_->campaigns.SetBudget(b / 20);
}

FraudScorer::~FraudScorer() = default;

void FraudScorer::SetBlocklist(std::shared_ptr<const IpSet> blocklist) {
  std::atomic_store(&blocklist_, std::move(blocklist));
}

void FraudScorer::Score(Event* events, size_t n) { Run(events, n, true); }

void FraudScorer::Observe(const Event* events, size_t n) {
  Run(const_cast<Event*>(events), n, false);  // judge = false: the events are not written
}

void FraudScorer::Run(Event* events, size_t n, bool judge) {
  if (n == 0) return;
  thread_local Scratch scratch;
  Scratch& sc = scratch;
  const ScorerOptions& o = options_;
  sc.keys.resize(n);
  sc.signals.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const Event& e = events[i];
    Scratch::Keys& k = sc.keys[i];
    k.ip = HashOf(e.ip_address, 1);
    k.user = HashOf(e.user_id, 2);
    k.campaign = HashOf(e.dim(Dim::kCampaignId), 3);
    std::string_view ad = e.dim(Dim::kAdId);
    k.ad = ad.empty() ? 0 : static_cast<uint32_t>(XXH3_64bits(ad.data(), ad.size())) | 1;
    k.click = e.type == EventType::kClick        ? HashOf(e.event_id, 4)
              : e.type == EventType::kConversion ? HashOf(e.click_id, 4)
                                                 : 0;
    k.campaign_active = false;
  }

  // Campaigns: is each campaign's impression stream being received?
  sc.GroupBy(n, [&](size_t i) { return sc.keys[i].campaign; });
  for (int s = 0; s < kStripes; ++s) {
    if (sc.starts[s] == sc.starts[s + 1]) continue;
    auto& stripe = tables_->campaigns.stripes[s];
    std::lock_guard<std::mutex> lock(stripe.mu);
    sc.Resolve(stripe, s, [&](uint32_t i) { return sc.keys[i].campaign; });
    for (uint32_t j = sc.starts[s]; j < sc.starts[s + 1]; ++j) {
      uint32_t i = sc.order[j];
      const Event& e = events[i];
      int64_t& newest = sc.At(stripe, j, sc.keys[i].campaign);
      if (e.type == EventType::kImpression) {
        if (newest == 0 || e.timestamp_ms > newest) newest = e.timestamp_ms;
      } else if (e.type == EventType::kClick) {
        sc.keys[i].campaign_active =
            newest != 0 && newest >= e.timestamp_ms - o.attribution_window_ms;
      }
    }
  }

  // IPs: click floods and farms, and the blocklist.
  std::shared_ptr<const IpSet> blocklist = std::atomic_load(&blocklist_);
  const int64_t farm_half = std::max<int64_t>(1, o.farm_window_ms / 2);
  sc.GroupBy(n, [&](size_t i) { return sc.keys[i].ip; });
  for (int s = 0; s < kStripes; ++s) {
    if (sc.starts[s] == sc.starts[s + 1]) continue;
    auto& stripe = tables_->ips.stripes[s];
    std::lock_guard<std::mutex> lock(stripe.mu);
    sc.Resolve(stripe, s, [&](uint32_t i) { return sc.keys[i].ip; });
    for (uint32_t j = sc.starts[s]; j < sc.starts[s + 1]; ++j) {
      uint32_t i = sc.order[j];
      const Event& e = events[i];
      const Scratch::Keys& k = sc.keys[i];
      IpState& st = sc.At(stripe, j, k.ip);
      bool click = e.type == EventType::kClick;
      // Generations of the farm window.
      int64_t gen = FloorDivMs(e.timestamp_ms, farm_half);
      bool in_cur = true;
      if (st.farm_gen == INT64_MIN || gen > st.farm_gen) {
        if (st.farm_gen != INT64_MIN && gen == st.farm_gen + 1) {
          st.users_prev = st.users_cur;
          st.imps_prev = st.imps_cur;
          st.clicks_prev = st.clicks_cur;
        } else {
          st.users_prev = {};
          st.imps_prev = st.clicks_prev = 0;
        }
        st.users_cur = {};
        st.imps_cur = st.clicks_cur = 0;
        st.farm_gen = gen;
      } else if (gen < st.farm_gen) {
        in_cur = false;
      }
      bool counted = in_cur || gen == st.farm_gen - 1;
      if (counted) {
        auto& users = in_cur ? st.users_cur : st.users_prev;
        if (k.user != 0) users[(k.user >> 6) & 3] |= uint64_t{1} << (k.user & 63);
        if (e.type == EventType::kImpression) ++(in_cur ? st.imps_cur : st.imps_prev);
        if (click) ++(in_cur ? st.clicks_cur : st.clicks_prev);
      }
      if (click) {
        // Sliding minute of 10-second buckets.
        int64_t b64 = FloorDivMs(e.timestamp_ms, kFloodBucketMs);
        uint32_t b = static_cast<uint32_t>(b64);
        int slot = static_cast<int>(b64 % kFloodBuckets);
        if (st.flood_bucket[slot] != b && static_cast<int32_t>(b - st.flood_bucket[slot]) > 0) {
          st.flood_bucket[slot] = b;
          st.flood_count[slot] = 0;
        }
        if (st.flood_bucket[slot] == b && st.flood_count[slot] < UINT16_MAX) ++st.flood_count[slot];
        uint32_t in_minute = 0;
        for (int x = 0; x < kFloodBuckets; ++x) {
          uint32_t age = b - st.flood_bucket[x];
          if (age < kFloodBuckets) in_minute += st.flood_count[x];
        }
        if (in_minute > static_cast<uint32_t>(o.click_flood_per_minute)) {
          sc.signals[i] |= SignalBit(Signal::kClickFlood);
        }
        // Farm: many users, and clicks far above what people do.
        int zeros = 0;
        for (int w = 0; w < 4; ++w) zeros += std::popcount(~(st.users_cur[w] | st.users_prev[w]));
        double users = zeros == 0 ? 1e9 : -256.0 * std::log(zeros / 256.0);
        uint32_t clicks = st.clicks_cur + st.clicks_prev;
        uint32_t imps = st.imps_cur + st.imps_prev;
        if (users >= o.farm_distinct_users && clicks >= static_cast<uint32_t>(o.farm_min_clicks) &&
            clicks >= o.farm_min_ctr * imps) {
          sc.signals[i] |= SignalBit(Signal::kClickFarm);
        }
      }
      if (blocklist && blocklist->Contains(e.ip_address)) {
        sc.signals[i] |= SignalBit(Signal::kBlocklistedIp);
      }
    }
  }

  // Users: timing, orphans, repeats, travel.
  const int64_t history_from = history_from_ms_.load(std::memory_order_relaxed);
  sc.GroupBy(n, [&](size_t i) { return sc.keys[i].user; });
  for (int s = 0; s < kStripes; ++s) {
    if (sc.starts[s] == sc.starts[s + 1]) continue;
    auto& stripe = tables_->users.stripes[s];
    std::lock_guard<std::mutex> lock(stripe.mu);
    sc.Resolve(stripe, s, [&](uint32_t i) { return sc.keys[i].user; });
    for (uint32_t j = sc.starts[s]; j < sc.starts[s + 1]; ++j) {
      uint32_t i = sc.order[j];
      const Event& e = events[i];
      const Scratch::Keys& k = sc.keys[i];
      UserState& u = sc.At(stripe, j, k.user);
      const int64_t ts = e.timestamp_ms;
      if (k.ad != 0 && e.type == EventType::kImpression) {
        UserState::Impression* slot = nullptr;
        for (auto& imp : u.imps) {
          if (imp.ad == k.ad) slot = &imp;
        }
        if (!slot) {
          slot = &u.imps[0];
          for (auto& imp : u.imps) {
            if (imp.ts < slot->ts) slot = &imp;
          }
          slot->ad = k.ad;
          slot->ts = ts;
        } else if (ts > slot->ts) {
          slot->ts = ts;
        }
      }
      if (k.ad != 0 && e.type == EventType::kClick) {
        const UserState::Impression* imp = nullptr;
        for (const auto& x : u.imps) {
          if (x.ad == k.ad) imp = &x;
        }
        if (imp && ts >= imp->ts && ts - imp->ts < o.impossible_click_ms) {
          sc.signals[i] |= SignalBit(Signal::kImpossibleTiming);
        }
        bool attributed = imp && std::abs(ts - imp->ts) <= o.attribution_window_ms;
        if (!attributed && k.campaign_active && ts - o.attribution_window_ms >= history_from) {
          sc.signals[i] |= SignalBit(Signal::kOrphanClick);
        }
        UserState::Clicks* c = nullptr;
        for (auto& x : u.clicks) {
          if (x.ad == k.ad) c = &x;
        }
        if (!c) {
          c = &u.clicks[0];
          for (auto& x : u.clicks) {
            if (x.first_ts < c->first_ts) c = &x;
          }
          *c = {k.ad, 0, ts};
        }
        if (ts - c->first_ts > o.repeated_click_window_ms || ts < c->first_ts) {
          if (ts > c->first_ts) *c = {k.ad, 0, ts};
        }
        ++c->count;
        if (c->count > static_cast<uint32_t>(o.repeated_click_max)) {
          sc.signals[i] |= SignalBit(Signal::kRepeatedClick);
        }
      }
      if (e.lat_e4 != kNoCoordinate && e.lon_e4 != kNoCoordinate) {
        bool anomaly = false;
        if (u.pos_ts != INT64_MIN) {
          double km = DistanceKm(u.lat_e4, u.lon_e4, e.lat_e4, e.lon_e4);
          double hours = static_cast<double>(std::abs(ts - u.pos_ts)) / 3.6e6;
          anomaly = km > o.geo_tolerance_km + o.max_travel_kmh * hours;
          if (anomaly) sc.signals[i] |= SignalBit(Signal::kGeoAnomaly);
        }
        // The user's position moves only where they could have got to: what happens at the
        // impossible place stays compared with the last plausible one (until a flight could
        // have taken them there).
        if (!anomaly && ts >= u.pos_ts) {
          u.pos_ts = ts;
          u.lat_e4 = e.lat_e4;
          u.lon_e4 = e.lon_e4;
        }
      }
    }
  }

  // Clicks awaiting conversions.
  sc.GroupBy(n, [&](size_t i) { return sc.keys[i].click; });
  for (int s = 0; s < kStripes; ++s) {
    if (sc.starts[s] == sc.starts[s + 1]) continue;
    auto& stripe = tables_->clicks.stripes[s];
    std::lock_guard<std::mutex> lock(stripe.mu);
    for (uint32_t j = sc.starts[s]; j < sc.starts[s + 1]; ++j) {
      stripe.PrefetchBucket(sc.keys[sc.order[j]].click);
    }
    for (uint32_t j = sc.starts[s]; j < sc.starts[s + 1]; ++j) {
      uint32_t i = sc.order[j];
      const Event& e = events[i];
      if (e.type == EventType::kClick) {
        stripe.values[stripe.Get(sc.keys[i].click)] = e.timestamp_ms;
      } else if (const int64_t* click_ts = stripe.Find(sc.keys[i].click)) {
        int64_t gap = e.timestamp_ms - *click_ts;
        if (gap >= 0 && gap < o.injection_ms) sc.signals[i] |= SignalBit(Signal::kClickInjection);
      }
    }
  }

  if (!judge) return;
  uint64_t invalid = 0;
  uint64_t fired[kSignalCount] = {};
  for (size_t i = 0; i < n; ++i) {
    Event& e = events[i];
    e.fraud_signals |= sc.signals[i];
    double score = CombineSignals(e.fraud_signals, o.weights);
    e.fraud_score_milli = static_cast<uint16_t>(std::lround(score * 1000));
    // Compared in thousandths, as stored, so the verdict follows from the logged score.
    bool bad = e.fraud_score_milli >= std::lround(o.threshold * 1000);
    e.fraud_flags = bad ? kFraudInvalid : 0;
    invalid += bad;
    for (uint32_t bits = e.fraud_signals; bits; bits &= bits - 1) ++fired[std::countr_zero(bits)];
  }
  scored_.fetch_add(n, std::memory_order_relaxed);
  invalid_.fetch_add(invalid, std::memory_order_relaxed);
  for (int x = 0; x < kSignalCount; ++x) {
    if (fired[x]) fired_[x].fetch_add(fired[x], std::memory_order_relaxed);
  }
}

FraudScorer::Stats FraudScorer::stats(bool tables) const {
  Stats s;
  s.scored = scored_.load(std::memory_order_relaxed);
  s.invalid = invalid_.load(std::memory_order_relaxed);
  for (int x = 0; x < kSignalCount; ++x) s.fired[x] = fired_[x].load(std::memory_order_relaxed);
  if (!tables) return s;
  auto add = [&s](auto& table, uint64_t& entries) {
    s.reserved_bytes += table.reserved_bytes();
    table.ForEach([&](auto& stripe) {
      std::lock_guard<std::mutex> lock(stripe.mu);
      entries += stripe.size();
      s.memory_bytes += stripe.bytes();
      s.evictions += stripe.evictions;
    });
  };
  add(tables_->ips, s.ips);
  add(tables_->users, s.users);
  add(tables_->clicks, s.clicks);
  add(tables_->campaigns, s.campaigns);
  return s;
}

}  // namespace adpulse
