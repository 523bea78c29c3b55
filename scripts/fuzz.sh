#!/usr/bin/env bash
# Runs the libFuzzer targets (tests/fuzz/) for SECONDS each (default 60), built with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer in build-fuzz/. New inputs that find new paths
# go to build-fuzz/corpus/<target>; a crash leaves its input in build-fuzz/ and fails the run.
# FUZZ_TARGETS="api config" runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DADPULSE_FUZZ=ON -DADPULSE_BUILD_BENCHMARKS=OFF -DBUILD_TESTING=OFF
targets=${FUZZ_TARGETS:-event_decoder wal_reader api config}
for target in $targets; do cmake --build build-fuzz -j2 --target "${target}_fuzz"; done
for target in $targets; do
  mkdir -p "build-fuzz/corpus/$target"
  (cd build-fuzz && "./${target}_fuzz" -max_total_time="$seconds" -max_len=65536 \
     "corpus/$target" "../tests/fuzz/corpus/$target")
done
