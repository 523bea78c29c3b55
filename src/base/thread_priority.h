// CPU priority of background threads. On a machine whose cores are all busy, Linux's scheduler
// shares each core in time slices of several milliseconds; a worker or HTTP thread that becomes
// runnable behind a background writer or a compaction waits for the slice to end, which shows up
// directly in acknowledgement and query latency. Background threads therefore run under
// SCHED_IDLE: the latency-critical threads preempt them the moment they wake, and they still get
// every cycle those leave. A shard whose background writer falls behind waits for it
// (backpressure), so nothing starves for long. Lowering a thread's own priority needs no rights.
#pragma once

namespace adpulse {

// Nice values (higher: lower priority) of adpulse's thread kinds, for a kernel without
// SCHED_IDLE.
inline constexpr int kNiceStateWriter = 5;  // a shard's background slice writer
inline constexpr int kNiceBackground = 10;  // roll-ups, the archiver

// Sets the calling thread's nice value, then moves it to SCHED_IDLE; failures are ignored.
void SetCurrentThreadBackground(int nice);

}  // namespace adpulse
