// Prints the folder of LMDB's C sources for binding.gyp: the lmdb npm package ships them (we compile LMDB
// into the addon and call its C API; see native/kv_store.cc).
const fs = require('fs');
const path = require('path');
// The package's own folder: the nearest package.json above its entry point that names it.
const named = (d) => { try { return JSON.parse(fs.readFileSync(path.join(d, 'package.json'), 'utf8')).name === 'lmdb'; } catch { return false; } };
let dir = path.dirname(require.resolve('lmdb'));
while (!named(dir)) {
  if (dir === path.dirname(dir)) throw new Error('lmdb-src: cannot find the lmdb package folder');
  dir = path.dirname(dir);
}
// Relative to the package root: gyp makes object paths from source paths, which must not be absolute.
process.stdout.write(path.relative(path.join(__dirname, '..'), path.join(dir, 'dependencies', 'lmdb', 'libraries', 'liblmdb')));
