// Prints the folder of LMDB's C sources for binding.gyp: the lmdb npm package ships them (we compile LMDB
// into the addon and call its C API; see native/kv_store.cc).
const fs = require('fs');
const path = require('path');
let dir = path.dirname(require.resolve('lmdb'));
while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
// Relative to the package root: gyp makes object paths from source paths, which must not be absolute.
process.stdout.write(path.relative(path.join(__dirname, '..'), path.join(dir, 'dependencies', 'lmdb', 'libraries', 'liblmdb')));
