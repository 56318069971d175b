// What a file pool keeps beside its files (no kernel): the incomplete marker and its owner, the settings,
// the superblock read offline, and the removal of a pool's files.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { markerOwnerAlive, markerPath, readMarker, readPoolConfig, readSuperblock, removeMarker, removePoolFiles, writeMarker, writePoolConfig } from '../../lib/thin/pool-files';
import { childNode } from './emulation';

const scratch = () => fs.mkdtempSync(path.join(os.tmpdir(), 'pool-files-'));

test('a marker names its owner: this process is alive; a dead process, or a marker cut short, is not', () => {
  const d = scratch();
  try {
    const data = path.join(d, 'data');
    expect(readMarker(data)).toBeUndefined();
    writeMarker(data, 'create');
    const m = readMarker(data)!;
    expect(m).toMatchObject({ op: 'create', pid: process.pid });
    expect(markerOwnerAlive(m)).toBe(true);
    // A process that has exited: its pid and start time no longer match a live process.
    const dead = spawnSync(...childNode(['-e', 'process.stdout.write(String(process.pid))']), { encoding: 'utf8' });
    expect(markerOwnerAlive({ ...m, pid: Number(dead.stdout) })).toBe(false);
    expect(markerOwnerAlive({ ...m, start: '1' })).toBe(false);  // a reused pid: another start time
    fs.writeFileSync(markerPath(data), '{"op":"cre');  // cut short by a kill
    expect(markerOwnerAlive(readMarker(data)!)).toBe(false);
    removeMarker(data);
    expect(fs.existsSync(markerPath(data))).toBe(false);
  } finally {
    fs.rmSync(d, { recursive: true });
  }
});

test('settings round-trip; a foreign file is refused', () => {
  const d = scratch();
  try {
    expect(readPoolConfig(d)).toBeUndefined();
    writePoolConfig(d, { blockSize: 256, lowWaterMark: 9, features: { skipBlockZeroing: true } });
    expect(readPoolConfig(d)).toEqual({ blockSize: 256, lowWaterMark: 9, features: { skipBlockZeroing: true } });
    fs.writeFileSync(path.join(d, 'pool.json'), '{"blockSize":"x"}');
    expect(() => readPoolConfig(d)).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_STATE' }));
  } finally {
    fs.rmSync(d, { recursive: true });
  }
});

test('the superblock: blank, a pool\'s (block size at 336), or not a pool\'s', () => {
  const d = scratch();
  try {
    const meta = path.join(d, 'meta');
    fs.writeFileSync(meta, Buffer.alloc(8192));
    expect(readSuperblock(meta)).toEqual({ formatted: false });
    const sb = Buffer.alloc(4096);
    sb.writeBigUInt64LE(27022010n, 32);
    sb.writeUInt32LE(128, 336);
    fs.writeFileSync(meta, sb);
    expect(readSuperblock(meta)).toEqual({ formatted: true, blockSize: 128 });
    sb.writeBigUInt64LE(1n, 32);
    fs.writeFileSync(meta, sb);
    expect(() => readSuperblock(meta)).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_STATE' }));
  } finally {
    fs.rmSync(d, { recursive: true });
  }
});

test("removing a pool's files takes its own and dead processes' temporaries, and leaves the user's", () => {
  const d = scratch();
  try {
    const data = path.join(d, 'data'), reg = path.join(d, 'data.registry');
    fs.mkdirSync(path.join(reg, 'registry.mdb.migrating'), { recursive: true });
    for (const f of [data, `${data}.meta`, path.join(reg, 'registry.mdb'), path.join(reg, 'registry.mdb-lock'), path.join(reg, 'lock'),
      path.join(reg, 'registry.mdb.lmdbjs-v2.bak'), path.join(reg, 'registry.mdb.migrating', 'registry.mdb'),
      path.join(reg, 'pool.json'), path.join(reg, 'pool.json.999999999.tmp'), `${data}.incomplete.999999999.tmp`, path.join(d, 'mine')]) fs.writeFileSync(f, '');
    removePoolFiles(data, `${data}.meta`, reg);
    expect(fs.readdirSync(d)).toEqual(['mine']);
  } finally {
    fs.rmSync(d, { recursive: true });
  }
});
