#include "fraud/scorer.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>

#include "absl/container/flat_hash_map.h"
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
constexpr uint32_t kAhead = 4;    // events between a table slot's prefetch and its use

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

// One stripe of a table: two generations of entries under one lock.
template <typename V>
struct alignas(64) Stripe {
  std::mutex mu;
  absl::flat_hash_map<uint64_t, V> cur, prev;
  uint64_t evictions = 0;

  // The entry of `key`, created when missing; moves a previous-generation entry forward.
  V& Get(uint64_t key, size_t half_capacity) {
    if (auto it = cur.find(key); it != cur.end()) return it->second;
    if (cur.size() >= half_capacity) {
      prev = std::move(cur);
      cur = absl::flat_hash_map<uint64_t, V>();
      cur.reserve(half_capacity / 4);
      ++evictions;
    }
    if (auto it = prev.find(key); it != prev.end()) {
      V v = it->second;
      prev.erase(it);
      return cur.emplace(key, v).first->second;
    }
    return cur[key];
  }
  const V* Find(uint64_t key) const {
    if (auto it = cur.find(key); it != cur.end()) return &it->second;
    if (auto it = prev.find(key); it != prev.end()) return &it->second;
    return nullptr;
  }
  size_t size() const { return cur.size() + prev.size(); }
  size_t bytes() const {
    // A flat_hash_map slot is the pair plus one control byte.
    return (cur.capacity() + prev.capacity()) * (sizeof(std::pair<uint64_t, V>) + 1);
  }
};

template <typename V>
struct Table {
  std::unique_ptr<Stripe<V>[]> stripes { new Stripe<V>[ kStripes ] };
  size_t half_capacity = 1;

  void SetBudget(uint64_t bytes) {
    // Each generation may hold half; a map's slots are at most 8/7 of its entries plus growth.
    uint64_t per_entry = (sizeof(std::pair<uint64_t, V>) + 1) * 2;
    half_capacity = std::max<uint64_t>(16, bytes / per_entry / kStripes / 2);
  }
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
  std::array<uint32_t, kStripes + 1> starts{};

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
    for (uint32_t j = sc.starts[s]; j < sc.starts[s + 1]; ++j) {
      uint32_t i = sc.order[j];
      const Event& e = events[i];
      int64_t& newest = stripe.Get(sc.keys[i].campaign, tables_->campaigns.half_capacity);
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
    for (uint32_t j = sc.starts[s]; j < sc.starts[s + 1]; ++j) {
      uint32_t i = sc.order[j];
      const Event& e = events[i];
      const Scratch::Keys& k = sc.keys[i];
      if (j + kAhead < sc.starts[s + 1]) stripe.cur.prefetch(sc.keys[sc.order[j + kAhead]].ip);
      IpState& st = stripe.Get(k.ip, tables_->ips.half_capacity);
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
    for (uint32_t j = sc.starts[s]; j < sc.starts[s + 1]; ++j) {
      uint32_t i = sc.order[j];
      const Event& e = events[i];
      const Scratch::Keys& k = sc.keys[i];
      if (j + kAhead < sc.starts[s + 1]) stripe.cur.prefetch(sc.keys[sc.order[j + kAhead]].user);
      UserState& u = stripe.Get(k.user, tables_->users.half_capacity);
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
      uint32_t i = sc.order[j];
      const Event& e = events[i];
      if (e.type == EventType::kClick) {
        stripe.Get(sc.keys[i].click, tables_->clicks.half_capacity) = e.timestamp_ms;
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
