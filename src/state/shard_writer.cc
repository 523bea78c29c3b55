#include "state/shard_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include "base/log.h"
#include "storage/wal_record.h"

namespace adpulse {

ShardWriter::ShardWriter(ShardState* state, WalWriter::Options wal_options, bool use_wal)
    : state_(state), wal_options_(std::move(wal_options)), use_wal_(use_wal) {
  staged_.reserve(4096);
}

absl::Status ShardWriter::Recover(RecoveryStats* stats) {
  if (!use_wal_) return absl::OkStatus();
  auto recover = [&]() -> absl::Status {
    auto segments = ListWalSegments(wal_options_.dir);
    if (!segments.ok()) return segments.status();
    uint64_t next_sequence = 1;
    for (size_t i = 0; i < segments->size(); ++i) {
      const WalSegment& seg = (*segments)[i];
      bool newest = i + 1 == segments->size();
      auto scan = ScanWalSegment(seg.path, [&](std::string_view payload) {
        Event e;
        if (!DecodeEventRecord(payload, e)) {
          return absl::DataLossError(
              fmt::format("WAL segment {} holds a record that does not decode", seg.path));
        }
        state_->Apply(e);
        return absl::OkStatus();
      });
      if (!scan.ok()) return scan.status();
      ++stats->segments;
      stats->records += scan->records;
      next_sequence = seg.sequence + 1;
      if (scan->problem.empty()) continue;
      if (!newest) {
        return absl::DataLossError(fmt::format(
            "WAL segment {} is damaged before its end ({}), and it is not the newest segment; "
            "refusing to start so that no acknowledged event is silently lost (move the segment "
            "away to start without it)",
            seg.path, scan->problem));
      }
      // A torn tail of the newest segment is what a crash mid-write leaves: nothing in it was
      // acknowledged. Cut it off so the log ends at the last whole record.
      uint64_t cut = scan->file_bytes - scan->valid_bytes;
      stats->truncated_bytes += cut;
      if (scan->valid_bytes < kWalHeaderBytes) {
        ::unlink(seg.path.c_str());
        LOG_WARN("WAL {}: removed a segment whose header was never completed", seg.path);
      } else {
        int fd = ::open(seg.path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(scan->valid_bytes)) != 0 ||
            ::fsync(fd) != 0) {
          int err = errno;
          if (fd >= 0) ::close(fd);
          return absl::UnavailableError(
              fmt::format("cannot truncate the torn tail of {}: {}", seg.path, std::strerror(err)));
        }
        ::close(fd);
        LOG_WARN("WAL {}: {}; truncated {} bytes after the last whole record (byte {}), kept {} "
                 "records",
                 seg.path, scan->problem, cut, scan->valid_bytes, scan->records);
      }
    }
    auto wal = WalWriter::Open(wal_options_, next_sequence);
    if (!wal.ok()) return wal.status();
    wal_ = std::move(*wal);
    return absl::OkStatus();
  };
  absl::Status s = recover();
  if (!s.ok()) unavailable_ = std::string(s.message().data(), s.message().size());
  return s;
}

void ShardWriter::Stage(const Event& e, EventOutcome* outcome, std::string* failure) {
  if (!state_->dedup().Insert(e.event_id, e.timestamp_ms)) {
    state_->CountDuplicate();
    *outcome = EventOutcome::kDuplicate;
    return;
  }
  if (wal_) {
    record_.clear();
    EncodeEventRecord(e, record_);
    wal_->Append(record_);
  }
  staged_.push_back({&e, outcome, failure});
}

void ShardWriter::CommitGroup() {
  if (staged_.empty()) return;
  absl::Status s = absl::OkStatus();
  if (!unavailable_.empty()) {
    s = absl::UnavailableError(unavailable_);
  } else if (use_wal_ && !wal_) {
    s = absl::UnavailableError("the write-ahead log is not open");
  } else if (wal_) {
    s = wal_->Commit();
  }
  if (s.ok()) {
    ++commits_;
    for (const Staged& st : staged_) {
      state_->AddToCubes(*st.event);
      *st.outcome = EventOutcome::kAccepted;
    }
  } else {
    ++commit_failures_;
    std::string message(s.message().data(), s.message().size());
    if (commit_failures_ == 1 || commit_failures_ % 1000 == 0) {
      LOG_ERROR("ingestion failed for {} events: {}", staged_.size(), message);
    }
    for (const Staged& st : staged_) {
      state_->dedup().Erase(st.event->event_id);
      *st.outcome = EventOutcome::kFailed;
      if (st.failure->empty()) *st.failure = message;
    }
  }
  staged_.clear();
}

}  // namespace adpulse
