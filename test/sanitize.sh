#!/usr/bin/env bash
# The metadata reader's fuzz and fixture tests (test/unit/metadata-*) again, on a build of the addon with
# AddressSanitizer and UBSan, where any report ends the process and so fails the run.
#   test/sanitize.sh --check          exit 0 when this machine can (gcc with libasan and libubsan, cmake)
#   test/sanitize.sh [jest args...]   build (incrementally), then run jest on those tests
# The build is CMakeLists.txt's with DEVMAPPER_SANITIZE=ON, by cmake-js with this machine's gcc, in
# build-sanitize/build/Release, so build/ and what users load are left alone. node-gyp-build, the addon's
# loader (lib/core/binding.ts), loads it when DEVMAPPER_PREBUILD names that folder. Node itself is not
# instrumented: libasan is preloaded. Expects the TypeScript compiled (dist/), as test/run.sh leaves it.
set -euo pipefail
cd "$(dirname "$0")/.."

asan=$(gcc -print-file-name=libasan.so 2>/dev/null || true)
ubsan=$(gcc -print-file-name=libubsan.so 2>/dev/null || true)
# gcc prints the bare name when it has no such library.
can() { [ -f "$asan" ] && [ -f "$ubsan" ] && command -v g++ >/dev/null && command -v cmake >/dev/null; }
if [ "${1:-}" = --check ]; then can; exit; fi
can || { echo "sanitize: gcc has no libasan/libubsan here" >&2; exit 2; }

dir=build-sanitize
# A folder node-gyp built before holds no CMake cache: start it again.
[ ! -d "$dir/build" ] || [ -f "$dir/build/CMakeCache.txt" ] || rm -rf "$dir"
mkdir -p "$dir"
log=$dir/build.log
# gcc, whose libasan is preloaded below. Incremental after the first build.
CC=gcc CXX=g++ npx cmake-js build --out "$dir/build" --CDDEVMAPPER_SANITIZE=ON --parallel 2 >"$log" 2>&1 \
  || { cat "$log" >&2; echo "sanitize: build failed" >&2; exit 1; }

export DEVMAPPER_PREBUILD=$PWD/$dir
export LD_PRELOAD=$asan
export ASAN_OPTIONS=detect_leaks=0
export UBSAN_OPTIONS=print_stacktrace=1
# The tests must load this build, not build/Release.
node -e 'const p = require("node-gyp-build").path("."); if (!p.startsWith(process.env.DEVMAPPER_PREBUILD)) { console.error(`sanitize: loaded ${p}`); process.exit(1); }'
# Fewer cases than the plain run (instrumented code is slower), and other ones: a seed of their own.
export DEVMAPPER_FUZZ_CASES=${DEVMAPPER_FUZZ_CASES:-1000} DEVMAPPER_FUZZ_SEED=${DEVMAPPER_FUZZ_SEED:-20261130}
export DEVMAPPER_FUZZ_TRACE=$PWD/$dir/fuzz-case
rm -f "$DEVMAPPER_FUZZ_TRACE"
status=0
npx jest --selectProjects unit --testPathPattern 'dist/test/unit/metadata-' "$@" || status=$?
# A sanitizer report ends the worker before jest prints which case it was on.
if [ $status != 0 ] && [ -f "$DEVMAPPER_FUZZ_TRACE" ]; then echo "sanitize: the fuzz test's last case: $(cat "$DEVMAPPER_FUZZ_TRACE")" >&2; fi
exit $status
