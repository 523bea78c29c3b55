// CPU priority of background threads. On a machine whose cores are all busy, Linux's scheduler
// shares each core in time slices of several milliseconds; a worker or HTTP thread that becomes
// runnable behind a background writer or a compaction waits for the slice to end, which shows up
// directly in acknowledgement and query latency. Background work runs at a higher nice value, so
// the latency-critical threads preempt it; it still gets every cycle they leave, and a shard
// whose background writer falls behind waits for it (backpressure), so nothing starves for long.
#pragma once

namespace adpulse {

// Nice values (higher: lower priority) of adpulse's thread kinds.
inline constexpr int kNiceStateWriter = 5;  // a shard's background slice writer
inline constexpr int kNiceBackground = 10;  // roll-ups, the archiver

// Sets the calling thread's nice value; failures (a container without the right) are ignored.
void SetCurrentThreadNice(int nice);

}  // namespace adpulse
