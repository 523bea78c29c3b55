#!/usr/bin/env bash
# Builds adpulse and runs every test: unit tests, the end-to-end test and the crash, torn-tail,
# disk-full and restart tests against the real binary; then builds again with AddressSanitizer
# and UndefinedBehaviorSanitizer and runs the same tests on that build. This is what CI runs.
# ADPULSE_SANITIZERS=0 skips the second build (a quicker local loop, not what CI does).
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
fi
