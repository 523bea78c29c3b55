#include "state/shard_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "base/log.h"
#include "base/status_macros.h"
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

std::string_view ShardSeverityName(ShardSeverity s) {
  switch (s) {
    case ShardSeverity::kOk:
      return "ok";
    case ShardSeverity::kRetryable:
      return "retryable";
    case ShardSeverity::kUnavailable:
      return "unavailable";
    case ShardSeverity::kFatal:
      return "fatal";
  }
  return "unknown";
}

std::string ShardWriter::error_reason() const {
  std::lock_guard<std::mutex> lock(reason_mutex_);
  return reason_;
}

void ShardWriter::SetError(ShardSeverity severity, std::string reason) {
  // A fatal error is never downgraded: only a restart clears it.
  if (this->severity() == ShardSeverity::kFatal) return;
  {
    std::lock_guard<std::mutex> lock(reason_mutex_);
    reason_ = std::move(reason);
  }
  severity_.store(severity, std::memory_order_relaxed);
}

namespace {
absl::Status SyncFile(FileSystem* fs, const std::string& path) {
  int fd = -1;
  int err = fs->Open(path, O_RDONLY, 0, &fd);
  if (err == 0) err = fs->Fsync(fd);
  if (fd >= 0) fs->Close(fd);
  if (err != 0) {
    return absl::UnavailableError(
        fmt::format("cannot fsync the replayed log segment {}: {}", path, std::strerror(err)));
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status ShardWriter::RecoverLog(WalPosition checkpoint, RecoveryStats* stats) {
  FileSystem* fs = options_.wal.fs;
  auto segments = ListWalSegments(options_.wal.dir);
  if (!segments.ok()) return segments.status();
  uint64_t next_sequence = std::max<uint64_t>(1, checkpoint.sequence + 1);
  for (size_t i = 0; i < segments->size(); ++i) {
    const WalSegment& seg = (*segments)[i];
    bool newest = i + 1 == segments->size();
    next_sequence = std::max(next_sequence, seg.sequence + 1);
    if (seg.sequence < checkpoint.sequence) continue;  // wholly covered; archived below
    uint64_t skip_below = seg.sequence == checkpoint.sequence ? checkpoint.offset : 0;
    // A read error is an error: taking it for the end of the segment would cut acknowledged
    // records off.
    auto scan = ScanWalSegment(
        seg.path,
        [&](uint64_t offset, std::string_view payload) {
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
        },
        fs);
    if (!scan.ok()) {
      return absl::UnavailableError(
          fmt::format("{}; refusing to start rather than take a read error for the end of the log",
                      std::string(scan.status().message())));
    }
    ++stats->segments;
    if (scan->problem.empty()) {
      // What was just replayed will be checkpointed; after a crash it may still sit unsynced in
      // the page cache (a group whose fdatasync failed and could not be cut off), so make it
      // durable before any checkpoint names it.
      if (options_.wal.fsync) {
        absl::Status synced = SyncFile(fs, seg.path);
        if (!synced.ok()) return synced;
      }
      continue;
    }
    if (!newest) {
      return absl::DataLossError(fmt::format(
          "WAL segment {} is damaged before its end ({}); refusing to start so that no "
          "acknowledged event is silently lost (move the segment away to start without it)",
          seg.path, scan->problem));
    }
    bool torn = scan->header_torn || scan->records_after_problem == 0;
    if (options_.recovery == WalRecoveryMode::kStrict) {
      return absl::DataLossError(fmt::format(
          "WAL segment {} does not read back whole ({}); storage.wal_recovery = \"strict\" "
          "refuses to start (\"torn_tail\" cuts a torn tail off)",
          seg.path, scan->problem));
    }
    if (scan->header_torn) {
      // A crash while the segment was being created: nothing in it was ever acknowledged.
      int err = fs->Unlink(seg.path);
      if (err == 0) err = fs->SyncDir(options_.wal.dir);
      if (err != 0) {
        return absl::UnavailableError(fmt::format("cannot remove the unfinished segment {}: {}",
                                                  seg.path, std::strerror(err)));
      }
      LOG_WARN("WAL {}: removed a segment whose header was never completed", seg.path);
      continue;
    }
    if (scan->valid_bytes < kWalHeaderBytes) {
      return absl::DataLossError(fmt::format(
          "WAL segment {} has a damaged header ({}); refusing to start (move the segment away "
          "to start without it)",
          seg.path, scan->problem));
    }
    if (!torn && options_.recovery != WalRecoveryMode::kCutDamage) {
      return absl::DataLossError(fmt::format(
          "WAL segment {} is damaged at byte {} ({}) and {} valid records follow from byte {}: "
          "that is damage, not a torn tail, so refusing to start. Restore the segment, or set "
          "storage.wal_recovery = \"cut_damage\" to start without the records after byte {}",
          seg.path, scan->valid_bytes, scan->problem, scan->records_after_problem,
          scan->next_valid_offset, scan->valid_bytes));
    }
    // A torn tail of the newest segment is what a crash mid-write leaves: nothing in it was
    // acknowledged. Cut it off so the log ends at the last whole record.
    uint64_t cut = scan->file_bytes - scan->valid_bytes;
    stats->truncated_bytes += cut;
    int fd = -1;
    int err = fs->Open(seg.path, O_WRONLY, 0, &fd);
    if (err == 0) err = fs->Truncate(fd, scan->valid_bytes);
    if (err == 0) err = fs->Fsync(fd);  // the cut, and the records kept before it, are durable
    if (fd >= 0) fs->Close(fd);
    if (err != 0) {
      return absl::UnavailableError(
          fmt::format("cannot truncate the torn tail of {}: {}", seg.path, std::strerror(err)));
    }
    if (torn) {
      LOG_WARN(
          "WAL {}: {}; truncated {} bytes after the last whole record (byte {}), kept {} "
          "records{}",
          seg.path, scan->problem, cut, scan->valid_bytes, scan->records,
          scan->valid_bytes < skip_below
              ? "; the store's checkpoint already holds the cut records, so nothing is lost"
              : "");
    } else {
      LOG_ERROR(
          "WAL {}: damaged at byte {} ({}); storage.wal_recovery = \"cut_damage\": cut {} bytes "
          "there, losing {} valid records after the damage",
          seg.path, scan->valid_bytes, scan->problem, cut, scan->records_after_problem);
    }
  }
  auto wal = WalWriter::Open(options_.wal, next_sequence);
  if (!wal.ok()) return wal.status();
  wal_ = std::move(*wal);
  return absl::OkStatus();
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
    absl::Status log = RecoverLog(checkpoint, stats);
    if (!log.ok()) return log;
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
  if (!s.ok()) SetError(ShardSeverity::kFatal, std::string(s.message()));
  return s;
}

bool ShardWriter::AcceptingEvents(int64_t now_ms) {
  ShardSeverity sev = severity();
  if (sev < ShardSeverity::kUnavailable) return true;
  if (sev == ShardSeverity::kFatal || !wal_ || now_ms < next_repair_ms_) return false;
  next_repair_ms_ = now_ms + options_.repair_interval_ms;
  absl::Status repaired = wal_->Repair();
  if (!repaired.ok()) {
    SetError(ShardSeverity::kUnavailable, std::string(repaired.message()));
    return false;
  }
  LOG_WARN("shard {}: the log was cut back to its last synced byte; ingestion resumes",
           state_->shard());
  SetError(ShardSeverity::kOk, {});
  return true;
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
  if (severity() >= ShardSeverity::kUnavailable && !AcceptingEvents(now_ms)) {
    *outcome = EventOutcome::kFailed;
    if (failure->empty())
      *failure = fmt::format("shard {} is unavailable: {}", state_->shard(), error_reason());
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
      auto started = std::chrono::steady_clock::now();
      int sync_errno = sync ? sync(fd) : options_.wal.fs->Fdatasync(fd);
      if (options_.fsync_seconds) {
        options_.fsync_seconds->Observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      }
      s = wal_->FinishSync(sync_errno);
    }
    while (rotation_failures_.Get() < wal_->rotation_failures()) ++rotation_failures_;
    if (wal_->rotation_error() != last_rotation_error_) {
      last_rotation_error_ = wal_->rotation_error();
      if (!last_rotation_error_.empty()) {
        LOG_ERROR(
            "shard {}: log rotation failed ({}); the current segment goes on and the "
            "rotation is tried again after the next group",
            state_->shard(), last_rotation_error_);
      }
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
    if (severity() == ShardSeverity::kRetryable) {
      LOG_WARN("shard {}: log writes work again", state_->shard());
      SetError(ShardSeverity::kOk, {});
    }
  } else {
    ++commit_failures_;
    std::string message(s.message().data(), s.message().size());
    // DataLoss: the log could not be cut back, so its tail is in doubt until it can be.
    bool in_doubt = s.code() == absl::StatusCode::kDataLoss;
    if (in_doubt || commit_failures_.Get() == 1 || commit_failures_.Get() % 1000 == 0) {
      LOG_ERROR("shard {}: ingestion failed for {} events: {}{}", state_->shard(), staged_.size(),
                message, in_doubt ? "; the shard refuses events until the log is repaired" : "");
    }
    SetError(in_doubt ? ShardSeverity::kUnavailable : ShardSeverity::kRetryable, message);
    next_repair_ms_ = NowMs() + options_.repair_interval_ms;
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
  // Nothing is flushed or checkpointed while the log is in doubt, nor with events staged: a
  // checkpoint names only bytes that are synced and applied, and a dedup run only ids of
  // committed events.
  if (!options_.store || !wal_ || severity() >= ShardSeverity::kUnavailable) return;
  ADPULSE_CHECK(staged_.empty());
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
    std::string reason = fmt::format("state store write failed ({}); restart adpulse to recover",
                                     std::string_view(s.message().data(), s.message().size()));
    LOG_ERROR("shard {}: {}", state_->shard(), reason);
    SetError(ShardSeverity::kFatal, std::move(reason));
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
  // Reconciliation runs as a task of the worker, in the middle of a group: the events staged
  // before it are committed first, so that the log it reads and the dedup ids a rebuild flushes
  // hold only committed events (an id flushed for a group that then failed would answer its
  // resend "duplicate").
  CommitGroup();
  ReconcileSources sources{options_.wal.dir, options_.archiver, options_.max_future_ms};
  auto flush = [this]() -> absl::Status {
    MaybeFlush(NowMs(), true);
    if (severity() >= ShardSeverity::kUnavailable) return absl::UnavailableError(error_reason());
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
