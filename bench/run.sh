#!/usr/bin/env bash
# npm run bench: builds the raw C baseline on this machine, then runs the benchmarks in one boot of the VM
# (or here, when this kernel has device-mapper and we are root). Not a test: it prints figures.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm install --no-audit --no-fund
[ -f build/Release/devmapper.node ] || npx node-gyp rebuild
npx tsc -p tsconfig.json
mkdir -p bench/out
cc -O2 -Wall -o bench/out/raw-lifecycle bench/raw-lifecycle.c
cc -O2 -Wall -o bench/out/peak-rss bench/peak-rss.c
npx node-gyp rebuild -C bench/floor --loglevel=error >/dev/null  # the floor rows (bench-only addon)
benches=(${BENCHES:-lifecycle})
cmd="for b in ${benches[*]}; do node --expose-gc dist/bench/\$b.js || exit 1; done"
if [ "$(id -u)" = 0 ] && grep -q device-mapper /proc/misc 2>/dev/null; then
  # The metadata bench runs thin_dump, thin_ls and thin_delta; test/vm/run.sh installs them for the VM.
  case " ${benches[*]} " in
    *" metadata "*) command -v thin_ls >/dev/null || { echo "bench: metadata needs thin-provisioning-tools" >&2; exit 2; } ;;
  esac
  sh -c "$cmd"
else
  test/vm/run.sh sh -c "$cmd"
fi
