#!/usr/bin/env bash
# Builds adpulse and runs every test: unit tests, the end-to-end test and the crash, torn-tail,
# disk-full and restart tests against the real binary; then builds again with AddressSanitizer
# and UndefinedBehaviorSanitizer and runs the same tests on that build; then a ThreadSanitizer
# build runs the unit tests of the concurrent parts (rings, pipeline and workers, the scorer's
# shared state, attribution) and the real binary's end-to-end, access and TLS tests (its HTTP and
# decoder threads, workers, syncers, background writers, attribution writer). This is what CI runs.
# ADPULSE_SANITIZERS=0 skips the sanitizer builds (a quicker local loop, not what CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
ctest --test-dir build --output-on-failure
if [ "${ADPULSE_SANITIZERS:-1}" != "0" ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DADPULSE_SANITIZE=ON \
    -DADPULSE_BUILD_BENCHMARKS=OFF
  cmake --build build-asan -j2
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure

  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DADPULSE_TSAN=ON \
    -DADPULSE_BUILD_BENCHMARKS=OFF
  cmake --build build-tsan -j2 --target adpulse adpulse_unit_tests
  # What fits CI's 20 minutes; ADPULSE_TSAN_ALL=1 runs the longer list below it too.
  tsan_tests='unit:(the ring is FIFO|two threads pass a million|events from two producers|'
  tsan_tests+='queries run ahead of queued|a query is answered while|admission control|'
  tsan_tests+='concurrent scorers|conversions take their click)|'
  tsan_tests+='integration: (end to end over HTTP|tokens, scopes|HTTPS)'
  if [ "${ADPULSE_TSAN_ALL:-0}" = "1" ]; then
    cmake --build build-tsan -j2 --target fraud_ua_test
    tsan_tests+='|unit:(while a slice is written in the background|a restarted shard has the same|'
    tsan_tests+='Parse is thread-safe)|integration: (conversions attributed|hostile clients)|'
    tsan_tests+='crash: kill -9 during ingestion \(5'
  fi
  TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
    ctest --test-dir build-tsan --output-on-failure -R "$tsan_tests"
fi
