#include "state/shard_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include "base/log.h"
#include "base/time_parse.h"
#include "storage/file_syncer.h"
#include "storage/wal_record.h"

namespace adpulse {

ShardWriter::ShardWriter(ShardState* state, ShardWriterOptions options)
    : state_(state), options_(std::move(options)) {
  staged_.reserve(4096);
  next_slice_due_ms_ = NowMs();
  next_run_due_ms_ = next_slice_due_ms_ + options_.flush_interval_ms;
}

absl::Status ShardWriter::Recover(RecoveryStats* stats) {
  if (!options_.use_wal) return absl::OkStatus();
  auto recover = [&]() -> absl::Status {
    WalPosition checkpoint;
    if (options_.store && options_.dedup_filter_bytes > 0) {
      absl::Status filled = state_->EnableDedupFilter(options_.dedup_filter_bytes);
      if (!filled.ok()) return filled;
    }
    if (options_.store && options_.rollup_delay_ms >= 0) {
      int64_t now = NowMs();
      absl::Status enabled =
          state_->EnableRollups(options_.rollup_delay_ms, now, now - options_.max_event_age_ms);
      if (!enabled.ok()) return enabled;
    }
    if (options_.store) {
      absl::Status loaded = state_->LoadCheckpoints();
      if (!loaded.ok()) return loaded;
      checkpoint = state_->OldestCheckpoint();
      loaded =
          state_->EnableRecentHours(options_.recent_hours, options_.recent_hours_bytes, NowMs());
      if (!loaded.ok()) return loaded;
    }
    auto segments = ListWalSegments(options_.wal.dir);
    if (!segments.ok()) return segments.status();
    uint64_t next_sequence = std::max<uint64_t>(1, checkpoint.sequence + 1);
    for (size_t i = 0; i < segments->size(); ++i) {
      const WalSegment& seg = (*segments)[i];
      bool newest = i + 1 == segments->size();
      next_sequence = std::max(next_sequence, seg.sequence + 1);
      if (seg.sequence < checkpoint.sequence) continue;  // wholly covered; archived below
      uint64_t skip_below = seg.sequence == checkpoint.sequence ? checkpoint.offset : 0;
      auto scan = ScanWalSegment(seg.path, [&](uint64_t offset, std::string_view payload) {
        if (offset < skip_below) {
          ++stats->skipped_records;
          return absl::OkStatus();
        }
        Event e;
        if (!DecodeEventRecord(payload, e)) {
          return absl::DataLossError(
              fmt::format("WAL segment {} holds a record that does not decode", seg.path));
        }
        state_->Replay(e, WalPosition{seg.sequence, offset});
        ++stats->records;
        return absl::OkStatus();
      });
      if (!scan.ok()) return scan.status();
      ++stats->segments;
      if (scan->problem.empty()) continue;
      if (!newest) {
        return absl::DataLossError(fmt::format(
            "WAL segment {} is damaged before its end ({}); refusing to start so that no "
            "acknowledged event is silently lost (move the segment away to start without it)",
            seg.path, scan->problem));
      }
      // A torn tail of the newest segment is what a crash mid-write leaves: nothing in it was
      // acknowledged. Cut it off so the log ends at the last whole record.
      uint64_t cut = scan->file_bytes - scan->valid_bytes;
      stats->truncated_bytes += cut;
      if (scan->valid_bytes < kWalHeaderBytes) {
        ::unlink(seg.path.c_str());
        LOG_WARN("WAL {}: removed a segment whose header was never completed", seg.path);
        continue;
      }
      int fd = ::open(seg.path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(scan->valid_bytes)) != 0 ||
          ::fsync(fd) != 0) {
        int err = errno;
        if (fd >= 0) ::close(fd);
        return absl::UnavailableError(
            fmt::format("cannot truncate the torn tail of {}: {}", seg.path, std::strerror(err)));
      }
      ::close(fd);
      LOG_WARN(
          "WAL {}: {}; truncated {} bytes after the last whole record (byte {}), kept {} "
          "records{}",
          seg.path, scan->problem, cut, scan->valid_bytes, scan->records,
          scan->valid_bytes < skip_below
              ? "; the store's checkpoint already holds the cut records, so nothing is lost"
              : "");
    }
    auto wal = WalWriter::Open(options_.wal, next_sequence);
    if (!wal.ok()) return wal.status();
    wal_ = std::move(*wal);
    // Make the replayed events part of the store right away, then archive what it covers.
    if (options_.store) {
      WalPosition position{wal_->current_sequence(), wal_->committed_bytes()};
      absl::Status flushed = state_->Flush(position);
      if (!flushed.ok()) return flushed;
      state_->EnableBackgroundWrites();
      if (options_.archiver) {
        options_.archiver->Submit(state_->shard(), options_.wal.dir, position.sequence);
        archive_requested_below_ = position.sequence;
      }
    }
    return absl::OkStatus();
  };
  absl::Status s = recover();
  if (!s.ok()) unavailable_ = std::string(s.message().data(), s.message().size());
  return s;
}

void ShardWriter::StageAll(const std::vector<Event>& events, const std::vector<uint32_t>& indices,
                           std::vector<EventOutcome>& outcomes, std::string* failure) {
  constexpr size_t kAhead = 8;             // events between an event's prefetch and its dedup check
  absl::uint128 fingerprints[kAhead + 1];  // of the events i - kAhead .. i
  size_t n = indices.size();
  int64_t now = NowMs();
  for (size_t i = 0; i < n + kAhead; ++i) {
    if (i < n) {
      absl::uint128 fp = DedupIndex::Fingerprint(events[indices[i]].event_id);
      state_->PrefetchAdmit(fp);
      fingerprints[i % (kAhead + 1)] = fp;
    }
    if (i >= kAhead) {
      uint32_t at = indices[i - kAhead];
      Stage(events[at], fingerprints[(i - kAhead) % (kAhead + 1)], now, &outcomes[at], failure);
    }
  }
}

void ShardWriter::Stage(const Event& e, absl::uint128 fingerprint, int64_t now_ms,
                        EventOutcome* outcome, std::string* failure) {
  if (!unavailable_.empty()) {
    *outcome = EventOutcome::kFailed;
    if (failure->empty()) *failure = unavailable_;
    return;
  }
  std::string error;
  switch (state_->Admit(e, fingerprint, now_ms, &error)) {
    case Admission::kDuplicate:
      *outcome = EventOutcome::kDuplicate;
      return;
    case Admission::kError:
      *outcome = EventOutcome::kFailed;
      if (failure->empty()) *failure = error;
      return;
    case Admission::kNew:
      break;
  }
  if (wal_) {
    wal_->AppendEncoded([&e](std::string& out) { EncodeEventRecord(e, out); });
  }
  staged_.push_back({&e, outcome, failure});
}

void ShardWriter::CommitGroup(const std::function<int(int fd)>& sync) {
  if (staged_.empty()) return;
  absl::Status s = absl::OkStatus();
  if (options_.use_wal && !wal_) {
    s = absl::UnavailableError("the write-ahead log is not open");
  } else if (wal_) {
    s = wal_->Write();
    if (s.ok() && wal_->needs_sync()) {
      int fd = wal_->fd();
      int sync_errno = sync ? sync(fd) : FileSyncer::Fdatasync(fd);
      s = wal_->FinishSync(sync_errno);
    }
  }
  if (s.ok()) {
    ++commits_;
    batch_.clear();
    for (const Staged& st : staged_) {
      batch_.push_back(st.event);
      *st.outcome = EventOutcome::kAccepted;
    }
    state_->AddBatchToCubes(batch_.data(), batch_.size());
  } else {
    ++commit_failures_;
    std::string message(s.message().data(), s.message().size());
    if (commit_failures_.Get() == 1 || commit_failures_.Get() % 1000 == 0) {
      LOG_ERROR("shard {}: ingestion failed for {} events: {}", state_->shard(), staged_.size(),
                message);
    }
    for (const Staged& st : staged_) {
      state_->Unadmit(*st.event);
      *st.outcome = EventOutcome::kFailed;
      if (st.failure->empty()) *st.failure = message;
    }
  }
  staged_.clear();
}

uint64_t ShardWriter::MemoryEstimate() const {
  return state_->group_bytes_in_memory() + state_->dedup_ids_in_memory() * kBytesPerDedupId +
         state_->interner_bytes();
}

void ShardWriter::MaybeFlush(int64_t now_ms, bool force, const std::function<void()>& between) {
  if (!options_.store || !wal_ || !unavailable_.empty()) return;
  WalPosition position{wal_->current_sequence(), wal_->committed_bytes()};
  // A slice written in the background since the last call is done with: let its memory go.
  absl::Status s = state_->CollectSliceFlush(false);
  if (s.ok()) s = state_->CollectDedupRun(false);
  if (s.ok()) s = state_->MaybeRollUp(now_ms);
  // Interned values are shared by all slices, so only a whole flush can let them go.
  bool whole = s.ok() && (force || state_->interner_bytes() > options_.memory_bytes / 4);
  if (whole) {
    if (state_->HasUnflushed() || state_->interner_bytes() > 0) s = state_->Flush(position);
    next_slice_due_ms_ = now_ms;
    next_run_due_ms_ = now_ms + options_.flush_interval_ms;
  } else if (s.ok()) {
    // The dedup ids: a run when enough have come, or a flush interval has passed, or they hold a
    // quarter of the memory; not while the previous run is still being written, unless twice as
    // many have come meanwhile (then waiting for it is the backpressure).
    size_t ids = state_->dedup_ids_since_run();
    bool run_due = ids >= options_.dedup_run_ids || (ids > 0 && now_ms >= next_run_due_ms_) ||
                   ids * kBytesPerDedupId > options_.memory_bytes / 4;
    if (run_due && (!state_->DedupRunBusy() || ids >= 2 * options_.dedup_run_ids)) {
      s = state_->StartDedupRun(position);
      next_run_due_ms_ = now_ms + options_.flush_interval_ms;
    }
  }
  if (s.ok() && !whole) {
    int64_t period = std::max<int64_t>(1, options_.flush_interval_ms / ShardState::kSlices);
    // A few slices per call: the worker runs its queued tasks (queries too) in between, so
    // catching up never holds them for a whole round.
    for (int i = 0; i < kMaxSlicesPerCall && s.ok(); ++i) {
      bool due = now_ms >= next_slice_due_ms_;
      uint64_t memory = MemoryEstimate();
      if (!due && memory <= options_.memory_bytes) break;
      // The previous slice is still being written: go on ingesting instead of waiting for it,
      // unless memory is well over its share (then waiting is the backpressure).
      if (state_->WriteBusy() && memory <= options_.memory_bytes + options_.memory_bytes / 4) break;
      if (i > 0 && between) between();
      s = state_->StartSliceFlush(next_slice_, position);
      next_slice_ = (next_slice_ + 1) % ShardState::kSlices;
      // After a pause (an idle, parked worker) catch up by at most one round.
      if (due)
        next_slice_due_ms_ =
            std::max(next_slice_due_ms_, now_ms - options_.flush_interval_ms) + period;
    }
  }
  if (!s.ok()) {
    // RocksDB 7.8 must not be trusted to recover from a write error on its own: stop ingesting
    // on this shard; the log still holds every acknowledged event for the restart.
    unavailable_ = fmt::format("state store write failed ({}); restart adpulse to recover",
                               std::string_view(s.message().data(), s.message().size()));
    LOG_ERROR("shard {}: {}", state_->shard(), unavailable_);
    return;
  }
  state_->PublishGauges();
  // A segment sealed before the oldest slice checkpoint is wholly in the store: archive it.
  uint64_t covered_below = state_->OldestCheckpoint().sequence;
  if (options_.archiver && covered_below > archive_requested_below_) {
    options_.archiver->Submit(state_->shard(), options_.wal.dir, covered_below);
    archive_requested_below_ = covered_below;
  }
}

absl::Status ShardWriter::Reconcile(const CubeCatalog& catalog, int64_t start_ms, int64_t end_ms,
                                    bool rebuild, ReconcileReport& report) {
  if (!options_.use_wal) {
    return absl::FailedPreconditionError("reconciliation needs the write-ahead log");
  }
  ReconcileSources sources{options_.wal.dir, options_.archiver};
  auto flush = [this]() -> absl::Status {
    MaybeFlush(NowMs(), true);
    if (!unavailable_.empty()) return absl::UnavailableError(unavailable_);
    // No roll-up may read the store while reconciliation rewrites it.
    return state_->FinishRollUp();
  };
  absl::Status s = ReconcileShard(catalog, *state_, sources, start_ms, end_ms, rebuild, flush,
                                  options_.store, report);
  // The rebuild wrote the store directly: the recent hours held in memory must mirror it again.
  if (s.ok() && report.rebuilt) s = state_->ReloadRecentHours(NowMs());
  return s;
}

}  // namespace adpulse
