#!/usr/bin/env bash
# Runs an example (examples/<name>.ts, compiled): here as root when this kernel has device-mapper,
# otherwise inside the test VM.   usage: examples/run.sh examples/layered-images [args...]
set -euo pipefail
cd "$(dirname "$0")/.."
example=$(basename "$1" .ts); shift
[ -d node_modules ] || npm install --no-audit --no-fund
[ -f build/Release/devmapper.node ] || npx node-gyp rebuild
npx tsc -p tsconfig.json
if [ "$(id -u)" = 0 ] && grep -q device-mapper /proc/misc 2>/dev/null; then
  node "dist/examples/$example.js" "$@"
else
  echo "(no device-mapper on this kernel: running in the test VM)" >&2
  test/vm/run.sh node "dist/examples/$example.js" "$@"
fi
