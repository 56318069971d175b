#!/usr/bin/env bash
# npm test: unit tests on this machine (the metadata reader's also under sanitizers, test/sanitize.sh), then the
# integration suite against a real device-mapper kernel: here when this machine has one and we are root,
# otherwise inside the qemu VM (test/vm/run.sh).
#   --unit-only | --integration-only    run one half
#   any other arguments go to jest (e.g. -t 'pattern' or a test path)
set -euo pipefail
cd "$(dirname "$0")/.."

unit=1 integration=1 jest_args=()
for a in "$@"; do
  case "$a" in
    --unit-only) integration=0 ;;
    --integration-only) unit=0 ;;
    *) jest_args+=("$a") ;;
  esac
done

# What a fresh clone lacks: npm deps (which build the addon) and the compiled TypeScript. npm ci installs
# exactly the lock, and fails if package.json and the lock disagree.
if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ] ||
   [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
[ -f build/Release/devmapper.node ] || npx node-gyp rebuild
npx tsc -p tsconfig.json

# Each half writes jest's JSON results; the closing line sums them.
results=dist/test-results
rm -rf "$results" && mkdir -p "$results"
status=0
if [ $unit = 1 ]; then
  npx jest --selectProjects unit --ci --json --outputFile="$results/unit.json" "${jest_args[@]}" || status=$?
  # The metadata reader's fuzz and fixture tests again on an AddressSanitizer + UBSan build of the addon, where
  # gcc can make one (test/sanitize.sh); not when jest was given a selection of its own.
  if [ ${#jest_args[@]} = 0 ]; then
    if bash test/sanitize.sh --check; then
      bash test/sanitize.sh --ci --json --outputFile="$results/unit-sanitized.json" || status=$?
    else
      echo "sanitize: no libasan/libubsan for gcc here; the metadata tests ran without sanitizers only" >&2
    fi
  fi
fi

if [ $integration = 1 ]; then
  jest=(node node_modules/jest/bin/jest.js --selectProjects integration --runInBand --ci --json --outputFile="$results/integration.json" "${jest_args[@]}")
  # /proc/misc, not /dev/mapper/control: a stale node proves nothing about this kernel.
  if [ "$(id -u)" = 0 ] && grep -q device-mapper /proc/misc 2>/dev/null; then
    echo "integration: this kernel has device-mapper; running here" >&2
    "${jest[@]}" || status=$?
  else
    echo "integration: no device-mapper here; running in the VM (test/vm/run.sh)" >&2
    test/vm/run.sh "${jest[@]}" || status=$?
  fi
fi

node -e '
  const fs = require("fs"); let passed = 0, failed = 0, skipped = 0;
  for (const f of fs.readdirSync(process.argv[1])) {
    const r = JSON.parse(fs.readFileSync(process.argv[1] + "/" + f, "utf8"));
    passed += r.numPassedTests; failed += r.numFailedTests + (r.numRuntimeErrorTestSuites || 0); skipped += r.numPendingTests;
  }
  console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
' "$results" || status=1
exit $status
