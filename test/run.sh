#!/usr/bin/env bash
# npm test: unit tests on this machine (the metadata reader's also under sanitizers, test/sanitize.sh), then the
# integration suite against a real device-mapper kernel: here when this machine has one and we are root,
# otherwise inside the qemu VM (test/vm/run.sh, on the kernel DEVMAPPER_VM_KERNEL names).
#   --unit-only | --integration-only    run one half
#   --matrix      what CI runs: the integration suite in VMs on Debian's 6.1 and 6.12 kernels, side by side,
#                 and the unit suite and a short integration smoke under Node 18 and 22 too (test/node.sh)
#   any other arguments go to jest (e.g. -t 'pattern' or a test path)
set -euo pipefail
cd "$(dirname "$0")/.."

unit=1 integration=1 matrix=0 jest_args=()
for a in "$@"; do
  case "$a" in
    --unit-only) integration=0 ;;
    --integration-only) unit=0 ;;
    --matrix) matrix=1 ;;
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

# Each run writes jest's JSON results under a name of its own; the closing line sums them.
results=dist/test-results
rm -rf "$results" && mkdir -p "$results"
status=0

kernels=("${DEVMAPPER_VM_KERNEL:-6.1}") nodes=()
[ $matrix = 0 ] || { kernels=(6.1 6.12); nodes=(18 22); }
declare -A node_bin=()
for v in "${nodes[@]}"; do node_bin[$v]=$(test/node.sh "$v"); done
# The smoke under other Nodes: loading the addon, a pool's life (create, volumes, snapshots, destroy) and
# the kernel's errors.
smoke='dist/test/integration/(thin-pool|volumes|errno)\.test\.js'

# A jest run under the Node binary $1 (its folder first on PATH, so the processes tests spawn use it too).
jest_cmd() {
  local bin=$1; shift
  echo "PATH=$(dirname "$bin"):\$PATH $(printf '%q ' "$bin" node_modules/jest/bin/jest.js --ci "$@")"
}

# The integration suite: here when this kernel has device-mapper and we are root, else in a VM per kernel. In a
# matrix, each VM then runs the smoke under some of the other Nodes, and the VMs run side by side, in the
# background (vm_pids), each line of their output marked with the kernel.
vm_pids=()
run_integration() {
  # /proc/misc, not /dev/mapper/control: a stale node proves nothing about this kernel.
  if [ $matrix = 0 ] && [ "$(id -u)" = 0 ] && grep -q device-mapper /proc/misc 2>/dev/null; then
    echo "integration: this kernel has device-mapper; running here" >&2
    node node_modules/jest/bin/jest.js --selectProjects integration --runInBand --ci --json \
      --outputFile="$results/integration.json" "${jest_args[@]}" || status=$?
    return
  fi
  echo "integration: no device-mapper here or a matrix; running in the VM (test/vm/run.sh), kernel ${kernels[*]}" >&2
  local k ki=0 v vi script
  # apt and the caches first, one kernel at a time: two apt-gets at once would fight over dpkg's lock.
  for k in "${kernels[@]}"; do DEVMAPPER_VM_KERNEL=$k test/vm/run.sh --prepare || { status=1; return; }; done
  for k in "${kernels[@]}"; do
    # Every run in the VM counts; a failure does not stop the ones after it.
    script="rc=0; $(jest_cmd "$(command -v node)" --selectProjects integration --runInBand --json \
      --outputFile="$results/integration-$k.json" "${jest_args[@]}") || rc=1"
    vi=0
    for v in "${nodes[@]}"; do
      [ $((vi++ % ${#kernels[@]})) = $ki ] || continue
      script+="; $(jest_cmd "${node_bin[$v]}" --selectProjects integration --runInBand --json \
        --outputFile="$results/integration-$k-node$v.json" --testPathPattern "$smoke") || rc=1"
    done
    script+="; exit \$rc"
    if [ $matrix = 0 ]; then
      DEVMAPPER_VM_KERNEL=$k test/vm/run.sh bash -c "$script" || status=$?
    else
      ( set -o pipefail; DEVMAPPER_VM_KERNEL=$k test/vm/run.sh bash -c "$script" 2>&1 | sed -u "s/^/[$k] /" ) &
      vm_pids+=($!)
    fi
    ki=$((ki + 1))
  done
}

run_unit() {
  npx jest --selectProjects unit --ci --json --outputFile="$results/unit.json" "${jest_args[@]}" || status=$?
  # The metadata reader's fuzz and fixture tests again on an AddressSanitizer + UBSan build of the addon, where
  # gcc can make one (test/sanitize.sh); not when jest was given a selection of its own.
  if [ ${#jest_args[@]} = 0 ]; then
    if bash test/sanitize.sh --check; then
      bash test/sanitize.sh --ci --json --outputFile="$results/unit-sanitized.json" || status=$?
    else
      echo "sanitize: no libasan/libubsan for gcc here; the metadata tests ran without sanitizers only" >&2
    fi
    # The prebuilds the package carries: what they link against, the packed tarball installed without a
    # compiler, and the arm64 one under qemu (test/prebuilds.sh).
    bash test/prebuilds.sh --json "$results/unit-prebuilds-arm64.json" || status=$?
  fi
  # The API reference's validation (typedoc.json): every exported symbol and public member documented, every {@link} resolves.
  npx typedoc --emit none || { echo "docs: typedoc validation failed (warnings above; npm run docs)" >&2; status=1; }
  # The addon is N-API: the build made with this machine's Node loads in the others.
  local v
  for v in "${nodes[@]}"; do
    echo "unit: under Node $("${node_bin[$v]}" --version)" >&2
    bash -c "$(jest_cmd "${node_bin[$v]}" --selectProjects unit --json \
      --outputFile="$results/unit-node$v.json" "${jest_args[@]}")" || status=$?
  done
}

# A matrix starts its VMs first: the unit runs fit on this machine's CPUs while they boot and run.
[ $matrix = 0 ] || [ $integration = 0 ] || run_integration
[ $unit = 0 ] || run_unit
[ $matrix = 1 ] || [ $integration = 0 ] || run_integration
for p in "${vm_pids[@]}"; do wait "$p" || status=$?; done

node -e '
  const fs = require("fs"); let passed = 0, failed = 0, skipped = 0;
  for (const f of fs.readdirSync(process.argv[1]).sort()) {
    const r = JSON.parse(fs.readFileSync(process.argv[1] + "/" + f, "utf8"));
    const fail = r.numFailedTests + (r.numRuntimeErrorTestSuites || 0);
    console.log(`  ${f}: ${r.numPassedTests} passed, ${fail} failed, ${r.numPendingTests} skipped`);
    passed += r.numPassedTests; failed += fail; skipped += r.numPendingTests;
  }
  console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
' "$results" || status=1
exit $status
