#!/usr/bin/env bash
# Installs every build and test dependency of adpulse from Debian 12 packages, by name.
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libboost-dev libboost-system-dev libboost-program-options-dev
  librocksdb-dev libsimdjson-dev libabsl-dev libxxhash-dev libfmt-dev libtomlplusplus-dev
  libzstd-dev zlib1g-dev libre2-dev libyaml-cpp-dev uap-core
  catch2 libbenchmark-dev
  python3 curl redis-server redis-tools
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
