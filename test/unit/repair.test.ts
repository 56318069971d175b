// The needs_check writer behind ThinPool.repair() (native/thin_metadata.cc ClearNeedsCheck), on the host: on
// metadata a real kernel wrote (the fixtures) with the flag set by hand, it clears the flag and only the flag,
// with a checksum the reader (and an independent JS checksum) accepts; on metadata that fails any check of the
// full walk (a mapping node, a space-map bitmap, the allocated count) it throws ERR_DM_METADATA and writes
// nothing. And repair()'s options are checked before anything reaches the kernel.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { DeviceMapper, DevmapperError, ThinMetadata, ThinPool, sectors } from '../../lib';
import { native } from '../../lib/core/binding';
import { FakeKernel } from './fake-kernel';
import { BLOCK, SALT, SB, blockOf, checksumOk, fixChecksum, mapImage } from './metadata-image';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'metadata');
const NEEDS_CHECK = 1;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'repair-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const fixture = (name: string): Buffer => zlib.gunzipSync(fs.readFileSync(path.join(FIXTURES, `${name}.img.gz`)));

// The fixture with needs_check set (as the kernel sets it: the flag bit, then a new checksum), in a file.
function flagged(name: string, change?: (image: Buffer) => void): { file: string; image: Buffer } {
  const image = Buffer.from(fixture(name));
  const sb = blockOf(image, 0);
  sb.writeUInt32LE(sb.readUInt32LE(SB.flags) | NEEDS_CHECK, SB.flags);
  fixChecksum(sb, SALT.superblock);
  change?.(image);
  const file = path.join(tmp, `${name}-${Math.random().toString(36).slice(2)}.img`);
  fs.writeFileSync(file, image);
  return { file, image };
}

const clear = (file: string) => native.metadataClearNeedsCheck(file);

describe.each(['chain', 'many', 'held'])('fixture %s', (name) => {
  test('the flag is cleared, the checksum is valid, and nothing else in the metadata changes', () => {
    const { file, image } = flagged(name);
    expect(ThinMetadata.readSync(file).needsCheck).toBe(true);
    const r = clear(file);
    expect(r.wasSet).toBe(true);
    expect(r.live.flags & NEEDS_CHECK).toBe(NEEDS_CHECK);  // the superblock as it was checked
    const after = fs.readFileSync(file);
    const sb = blockOf(after, 0);
    expect(sb.readUInt32LE(SB.flags) & NEEDS_CHECK).toBe(0);
    expect(checksumOk(sb, SALT.superblock)).toBe(true);
    // Only bytes 0..7 (checksum, flags) of block 0 differ.
    expect(after.subarray(8).equals(image.subarray(8))).toBe(true);
    expect(after.equals(fixture(name))).toBe(true);  // exactly what the kernel wrote before the flag
    const read = ThinMetadata.readSync(file);
    expect(read.needsCheck).toBe(false);
    // Again: nothing to clear, nothing written.
    expect(clear(file).wasSet).toBe(false);
    expect(fs.readFileSync(file).equals(after)).toBe(true);
  });

  test('metadata without the flag is checked and left untouched', () => {
    const file = path.join(tmp, `${name}-clean.img`);
    fs.writeFileSync(file, fixture(name));
    expect(clear(file)).toMatchObject({ wasSet: false });
    expect(fs.readFileSync(file).equals(fixture(name))).toBe(true);
  });
});

describe('a check that fails writes nothing: ERR_DM_METADATA, the flag still set', () => {
  const refused = (name: string, change: (image: Buffer) => void, check: RegExp) => {
    const { file, image } = flagged(name, change);
    let error: unknown;
    try { clear(file); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(DevmapperError);
    expect(error).toMatchObject({ code: 'ERR_DM_METADATA' });
    expect((error as DevmapperError).check).toMatch(check);
    expect(fs.readFileSync(file).equals(image)).toBe(true);
  };

  test('a leaf deep in a device\'s mapping tree with a bad checksum (read only by the full walk)', () => {
    const map = mapImage(fixture('many'));
    const [leaf] = [...map.nodes].filter(([, n]) => n.places.some((p) => p.tree.startsWith('dev ')) && n.facts.flags === 2).map(([b]) => b);
    expect(leaf).toBeDefined();
    refused('many', (image) => { blockOf(image, leaf)[100] ^= 0xff; }, /btree node checksum/);
  });

  test('a metadata space-map bitmap with a bad checksum', () => {
    refused('chain', (image) => {
      const index = Number(blockOf(image, 0).readBigUInt64LE(SB.metaSmBitmapRoot));
      const bitmap = Number(blockOf(image, index).readBigUInt64LE(16));
      blockOf(image, bitmap)[200] ^= 0x01;
    }, /space map bitmap checksum/);
  });

  test('a data space map whose allocated count disagrees with its bitmaps', () => {
    refused('chain', (image) => {
      const sb = blockOf(image, 0);
      sb.writeBigUInt64LE(sb.readBigUInt64LE(SB.dataSmNrAllocated) + 1n, SB.dataSmNrAllocated);
      fixChecksum(sb, SALT.superblock);
    }, /data space map: the bitmaps allocate/);
  });

  test('a broken superblock', () => {
    refused('chain', (image) => { blockOf(image, 0)[300] ^= 0x01; }, /superblock checksum/);
  });

  test('a file too short to hold the metadata it names', () => {
    const { file } = flagged('chain');
    const before = fs.readFileSync(file);
    fs.truncateSync(file, 3 * BLOCK);
    expect(() => clear(file)).toThrow(expect.objectContaining({ code: 'ERR_DM_METADATA' }));
    expect(fs.readFileSync(file).equals(before.subarray(0, 3 * BLOCK))).toBe(true);
  });
});

describe('repair() checks its options before anything reaches the kernel', () => {
  test.each([['a string', 'yes'], ['null', null], ['an unknown key', { force: true }], ['deactivate not a boolean', { deactivate: 1 }],
    ['an array', [true]]])('%s', async (_label, bad) => {
    const k = new FakeKernel();
    const dm = new DeviceMapper({ binding: k.binding, nodes: 'none' });
    dm.createDeviceSync('fpool', [{ start: sectors(0), length: sectors(128 * 100), type: 'thin-pool', params: '250:1 250:0 128 10 0' }],
      { uuid: 'DEVMAPPER-POOL-fpool' });
    const registryDir = fs.mkdtempSync(path.join(tmp, 'reg-'));
    const pool = ThinPool.openSync('fpool', { dm, registryDir, check: false });
    try {
      k.calls.length = 0;
      expect(() => pool.repairSync(bad as never)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
      await expect(pool.repair(bad as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
      expect(k.calls).toEqual([]);
    } finally {
      pool.closeSync();
    }
  });
});

test('the writer on a worker thread (the promise form) writes what the sync call writes', async () => {
  const a = flagged('chain').file, b = flagged('chain').file;
  expect(clear(a).wasSet).toBe(true);
  expect((await native.metadataClearNeedsCheckAsync(b)).wasSet).toBe(true);
  expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
  await expect(native.metadataClearNeedsCheckAsync(path.join(tmp, 'absent'))).rejects.toMatchObject({ code: 'ENOENT' });
});
