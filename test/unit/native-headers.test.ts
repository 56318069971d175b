// The addon builds against uapi headers older than the commands it uses (Linux 4.1's: no LOOP_CONFIGURE, no
// DM_DEV_ARM_POLL, ...): native/uapi.h supplies what they lack, and the kernel decides at run time. Every
// native source is compiled (syntax and types) against headers cut back to that age.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.join(__dirname, '..', '..', '..');

function nodeHeaders(): string {
  const candidates = [
    path.join(path.dirname(process.execPath), '..', 'include', 'node'),
    path.join(os.homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
  ];
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
  if (!found) throw new Error(`no node_api.h in ${candidates.join(' or ')}`);
  return found;
}

test('every native source compiles against Linux 4.1-era dm-ioctl.h and loop.h', () => {
  const old = fs.mkdtempSync(path.join(os.tmpdir(), 'old-uapi-'));
  try {
    execFileSync('bash', [path.join(root, 'test/fixtures/old-uapi/make.sh'), old]);
    const dm = fs.readFileSync(path.join(old, 'linux/dm-ioctl.h'), 'utf8');
    const loop = fs.readFileSync(path.join(old, 'linux/loop.h'), 'utf8');
    // The cut-back headers really lack what the addon uses.
    expect(dm).not.toMatch(/DM_DEV_ARM_POLL|DM_GET_TARGET_VERSION|#define DM_DATA_OUT_FLAG/);
    expect(loop).not.toMatch(/LOOP_CONFIGURE|LOOP_SET_BLOCK_SIZE|LOOP_SET_DIRECT_IO|LO_FLAGS_DIRECT_IO|struct loop_config/);
    expect(loop).toMatch(/LOOP_SET_CAPACITY/);
    const napi = (require('node-addon-api') as { include_dir: string }).include_dir;
    const sources = fs.readdirSync(path.join(root, 'native')).filter((f) => f.endsWith('.cc'));
    expect(sources.length).toBeGreaterThan(5);
    for (const f of sources) {
      execFileSync('g++', ['-std=c++17', '-fsyntax-only', '-I', old, '-I', nodeHeaders(), '-I', path.resolve(root, napi), '-I', path.join(root, 'deps/lmdb'),
        '-DNAPI_VERSION=8', '-DNAPI_CPP_EXCEPTIONS', path.join(root, 'native', f)], { stdio: ['ignore', 'ignore', 'pipe'] });
    }
  } finally {
    fs.rmSync(old, { recursive: true, force: true });
  }
});
