// The groups of one cube in one minute, as a shard holds them in memory: a hash table from the
// group's interned dimension ids (DimKey) to its Aggregate.
//
// Built for the cube updates' software pipeline (ShardState::AddBatchToCubes), which prefetches
// each step's memory one stage before it is read. A general-purpose table such as absl's probes a
// 16-slot group of 128-byte slots, so a prefetch cannot know which slot the key is in; here the
// index is an open-addressing array of 16-byte slots (the key's full hash and a pointer to its
// entry), probed linearly from the hash's position, so that the slot a key is in is almost always
// the one PrefetchSlot loads, and PrefetchEntry can then load the entry itself. Entries live in
// blocks that never move: a pointer to an aggregate stays valid until the table is destroyed,
// whatever is inserted after it. Nothing is ever erased. Memory per group: the 128-byte entry and,
// at a load between 3/8 and 3/4, about 30 bytes of index (absl's table: about 210 bytes).
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "window/aggregate.h"
#include "window/cube_catalog.h"

namespace adpulse {

// Interned ids of a group's dimension values, in the cube's dimension order; unused slots are 0.
using DimKey = std::array<uint32_t, kMaxCubeDims>;
// A multiply-xorshift mix of the key's three 64-bit words, inlined: absl's default hash of 24
// bytes is an out-of-line call (LowLevelHash), a tenth of the time of a cube update.
struct DimKeyHash {
  size_t operator()(const DimKey& k) const {
    static_assert(kMaxCubeDims == 6, "three 64-bit words");
    uint64_t h = ((uint64_t{k[0]} << 32) | k[1]) * 0x9E3779B97F4A7C15ull;
    h = (h ^ (h >> 32) ^ ((uint64_t{k[2]} << 32) | k[3])) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 29) ^ ((uint64_t{k[4]} << 32) | k[5])) * 0x94D049BB133111EBull;
    return static_cast<size_t>(h ^ (h >> 31));
  }
};

class GroupTable {
 public:
  struct Entry {
    DimKey key;
    Aggregate agg;
  };

  GroupTable() = default;
  // The moved-from table is left empty.
  GroupTable(GroupTable&& o) noexcept { *this = std::move(o); }
  GroupTable& operator=(GroupTable&& o) noexcept {
    if (this != &o) {
      Destroy();
      slots_ = std::move(o.slots_);
      blocks_ = std::move(o.blocks_);
      mask_ = o.mask_;
      size_ = o.size_;
      o.slots_.clear();
      o.blocks_.clear();
      o.mask_ = 0;
      o.size_ = 0;
    }
    return *this;
  }
  GroupTable(const GroupTable&) = delete;
  GroupTable& operator=(const GroupTable&) = delete;
  ~GroupTable() { Destroy(); }

  static uint64_t Hash(const DimKey& key) { return DimKeyHash()(key); }

  // The aggregate of `key` (whose Hash is `hash`), or null.
  Aggregate* Find(const DimKey& key, uint64_t hash) {
    if (slots_.empty()) return nullptr;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.entry) return nullptr;
      if (s.hash == hash && s.entry->key == key) return &s.entry->agg;
    }
  }
  const Aggregate* Find(const DimKey& key) const {
    return const_cast<GroupTable*>(this)->Find(key, Hash(key));
  }
  // The aggregate of `key`, created empty if new (`created` says so).
  Aggregate& FindOrInsert(const DimKey& key, uint64_t hash, bool* created) {
    if ((size_ + 1) * 4 > slots_.size() * 3) Grow();
    size_t i = hash & mask_;
    for (;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (!s.entry) break;
      if (s.hash == hash && s.entry->key == key) {
        *created = false;
        return s.entry->agg;
      }
    }
    Entry* e = NewEntry();
    e->key = key;
    slots_[i] = {hash, e};
    ++size_;
    *created = true;
    return e->agg;
  }
  Aggregate& operator[](const DimKey& key) {
    bool created;
    return FindOrInsert(key, Hash(key), &created);
  }

  // Starts loading the index slot where a search for `hash` begins.
  void PrefetchSlot(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[hash & mask_]);
  }
  // Once that slot is loaded: starts loading the entry it points to when the hashes match, or, for
  // a key not in the table yet, the entry an insert would fill.
  void PrefetchEntry(uint64_t hash) const {
    if (slots_.empty()) return;
    for (size_t i = hash & mask_, n = 0; n < kSlotsPerLine; i = (i + 1) & mask_, ++n) {
      const Slot& s = slots_[i];
      if (!s.entry) break;
      if (s.hash == hash) {
        __builtin_prefetch(s.entry, 1);
        __builtin_prefetch(reinterpret_cast<const char*>(s.entry) + 64, 1);
        return;
      }
    }
    if (!blocks_.empty() && blocks_.back().used < blocks_.back().capacity) {
      __builtin_prefetch(&blocks_.back().entries()[blocks_.back().used], 1);
    }
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void reserve(size_t n) {
    while (n * 4 > slots_.size() * 3) Grow();
  }

  struct Block;
  // Iterates over the entries in the order they were inserted; each is a struct with the public
  // members `key` and `agg`, so `for (const auto& [key, agg] : table)` works.
  class const_iterator {
   public:
    const Entry& operator*() const { return (*blocks_)[block_].entries()[index_]; }
    const Entry* operator->() const { return &**this; }
    const_iterator& operator++() {
      if (++index_ == (*blocks_)[block_].used) {
        ++block_;
        index_ = 0;
      }
      return *this;
    }
    bool operator==(const const_iterator& o) const {
      return block_ == o.block_ && index_ == o.index_;
    }

   private:
    friend class GroupTable;
    const_iterator(const std::vector<Block>* blocks, size_t block, uint32_t index)
        : blocks_(blocks), block_(block), index_(index) {}
    const std::vector<Block>* blocks_;
    size_t block_;
    uint32_t index_;
  };
  const_iterator begin() const { return {&blocks_, 0, 0}; }
  const_iterator end() const { return {&blocks_, blocks_.size(), 0}; }

 private:
  struct Slot {
    uint64_t hash = 0;
    Entry* entry = nullptr;  // null: empty
  };
  static constexpr size_t kSlotsPerLine = 64 / sizeof(Slot);

 public:
  // Entries are constructed as they are used, so the unused end of a block is never touched (its
  // pages stay unallocated).
  struct Block {
    struct Free {
      void operator()(Entry* p) const { ::operator delete(p); }
    };
    std::unique_ptr<Entry, Free> storage;
    uint32_t used = 0;
    uint32_t capacity = 0;
    Entry* entries() const { return storage.get(); }
  };

 private:
  static constexpr uint32_t kFirstBlock = 8;
  static constexpr uint32_t kMaxBlock = 512;  // 64 KiB

  Entry* NewEntry() {
    if (blocks_.empty() || blocks_.back().used == blocks_.back().capacity) {
      uint32_t capacity =
          blocks_.empty() ? kFirstBlock : static_cast<uint32_t>(std::min<size_t>(kMaxBlock, size_));
      Block b;
      b.storage.reset(static_cast<Entry*>(::operator new(sizeof(Entry) * capacity)));
      b.capacity = capacity;
      blocks_.push_back(std::move(b));
    }
    Block& b = blocks_.back();
    return new (b.entries() + b.used++) Entry();
  }
  void Grow() {
    size_t capacity = slots_.empty() ? 16 : slots_.size() * 2;
    std::vector<Slot> old(capacity);
    old.swap(slots_);
    mask_ = capacity - 1;
    for (const Slot& s : old) {
      if (!s.entry) continue;
      size_t i = s.hash & mask_;
      while (slots_[i].entry) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  void Destroy() {
    for (Block& b : blocks_) {
      for (uint32_t i = 0; i < b.used; ++i) b.entries()[i].~Entry();
    }
  }

  std::vector<Slot> slots_;  // a power of two, at most 3/4 used
  size_t mask_ = 0;
  size_t size_ = 0;
  std::vector<Block> blocks_;
};

}  // namespace adpulse
