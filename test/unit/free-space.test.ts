// The free-space guard's option and its check, and the default metadata size: pure, on the host. A bad option is
// refused by create, open and attach before anything is touched (no kernel is needed to see that).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LmdbRegistry, ThinPool, defaultMetadataSize } from '../../lib';
import type { RegistryStore } from '../../lib';
import type { Bytes, Sectors } from '../../lib/core/units';
import { checkFreeSpace, checkMinFreeSpace, minFreeSpaceOption, readMinFreeSpace, writeMinFreeSpace } from '../../lib/thin/free-space';
import { MAX_METADATA_SECTORS, ThinPoolStatusOk } from '../../lib/targets';
import { scriptedPoolDevice } from './fake-kernel';
import { tripwireDm } from './hostile-helpers';

const invalid = expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' });
const BAD: unknown[] = [
  '110%', '100.5%', '-1%', '%', '10 %%', 'ten', '10X', '1.5G', '', '  ', -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53,
  true, [], () => 0, Symbol('x'), 10n, new Date(), { data: '110%' }, { metadata: -5 }, { data: 0.5 }, { data: NaN },
  { data: '10%', extra: 1 }, { date: '10%' }, { data: null },
];

test('minFreeSpace: percentages 0..100, bytes or sizes, per space or for both; null or undefined is none', () => {
  expect(checkMinFreeSpace('10%')).toEqual({ data: { percent: 10 }, metadata: { percent: 10 } });
  expect(checkMinFreeSpace('2.5%')).toEqual({ data: { percent: 2.5 }, metadata: { percent: 2.5 } });
  expect(checkMinFreeSpace('100%')).toEqual({ data: { percent: 100 }, metadata: { percent: 100 } });
  expect(checkMinFreeSpace('0%')).toEqual({ data: { percent: 0 }, metadata: { percent: 0 } });
  expect(checkMinFreeSpace(1073741824)).toEqual({ data: { bytes: 2 ** 30 }, metadata: { bytes: 2 ** 30 } });
  expect(checkMinFreeSpace({ data: '1G' })).toEqual({ data: { bytes: 2 ** 30 } });
  expect(checkMinFreeSpace({ data: '10%', metadata: 4096 })).toEqual({ data: { percent: 10 }, metadata: { bytes: 4096 } });
  expect(checkMinFreeSpace({})).toEqual({});
  expect(checkMinFreeSpace(null)).toEqual({});
  expect(checkMinFreeSpace(undefined)).toEqual({});
});

const label = (v: unknown): string => (typeof v === 'symbol' ? 'a symbol' : typeof v === 'bigint' ? '10n' : typeof v === 'function' ? 'a function'
  : typeof v === 'number' ? String(v) : v instanceof Date ? 'a Date' : v !== null && typeof v === 'object' && !Array.isArray(v)
    ? `{ ${Object.entries(v).map(([k, x]) => `${k}: ${label(x)}`).join(', ')} }` : JSON.stringify(v));
test.each(BAD.map((v) => [label(v), v]))(
  'minFreeSpace %s is refused with ERR_DM_INVALID_ARGUMENT', (_label, v) => {
    expect(() => checkMinFreeSpace(v)).toThrow(invalid);
  });

test('create, open and attach refuse a bad minFreeSpace before touching anything', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-free-'));
  try {
    const dataFile = path.join(dir, 'data');
    for (const v of ['110%', -1, 0.5, NaN, { data: '10%', bogus: 1 }]) {
      expect(() => ThinPool.createSync({ name: 'p', dataFile, dataSize: '16M', minFreeSpace: v as never })).toThrow(invalid);
      await expect(ThinPool.create({ name: 'p', dataFile, dataSize: '16M', minFreeSpace: v as never })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
      expect(() => ThinPool.openSync('p', { minFreeSpace: v as never })).toThrow(invalid);
      await expect(ThinPool.open('p', { minFreeSpace: v as never })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
      expect(() => ThinPool.attachSync({ name: 'p', dataFile, minFreeSpace: v as never })).toThrow(invalid);
    }
    expect(fs.readdirSync(dir)).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// A pool of 1000 data blocks of 64 KiB and 1000 metadata blocks.
const status = (dataUsed: number, metaUsed: number): ThinPoolStatusOk => ({
  state: 'ok', transactionId: 0, metadata: { used: metaUsed, total: 1000 }, data: { used: dataUsed, total: 1000 }, heldMetadataRoot: null,
  mode: 'rw', discard: 'discard_passdown', noSpacePolicy: 'queue_if_no_space', needsCheck: false, metadataLowWatermark: 0,
});

test('the check: below the limit is ERR_DM_POOL_FULL naming the space and its free bytes; at it passes', () => {
  const s10 = checkMinFreeSpace('10%');
  expect(() => checkFreeSpace('p', 'create_thin', status(900, 0), 128, s10)).not.toThrow();
  let e: unknown;
  try { checkFreeSpace('p', 'create_thin', status(901, 0), 128, s10); } catch (x) { e = x; }
  expect(e).toMatchObject({ code: 'ERR_DM_POOL_FULL', space: 'data', freeBytes: 99 * 65536, device: 'p' });
  expect((e as Error).message).toMatch(/6488064 bytes of data space are free/);
  expect(() => checkFreeSpace('p', 'create_snap', status(0, 901), 128, s10))
    .toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_FULL', space: 'metadata', freeBytes: 99 * 4096 }));
  // Bytes, per space: only the space that has a limit is checked.
  const bytes = checkMinFreeSpace({ metadata: 100 * 4096 });
  expect(() => checkFreeSpace('p', 'create_thin', status(1000, 900), 128, bytes)).not.toThrow();
  expect(() => checkFreeSpace('p', 'create_thin', status(0, 901), 128, bytes)).toThrow(expect.objectContaining({ space: 'metadata' }));
  expect(() => checkFreeSpace('p', 'create_thin', status(1000, 1000), 128, {})).not.toThrow();
});

test('the setting is saved beside the registry, read back as given, and removed when none', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-free-'));
  try {
    expect(readMinFreeSpace(dir)).toEqual({});
    writeMinFreeSpace(dir, checkMinFreeSpace({ data: '10%', metadata: 1048576 }));
    expect(minFreeSpaceOption(readMinFreeSpace(dir))).toEqual({ data: '10%', metadata: 1048576 });
    fs.writeFileSync(path.join(dir, 'min-free-space.json'), '{"data":{"percent":900}}');
    expect(() => readMinFreeSpace(dir)).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_STATE' }));
    writeMinFreeSpace(dir, {});
    expect(fs.existsSync(path.join(dir, 'min-free-space.json'))).toBe(false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('default metadata size: 2 % of the data, at least 32 MiB, capped at the kernel maximum', () => {
  const MiB = 2 ** 20, GiB = 2 ** 30;
  expect(defaultMetadataSize((256 * MiB) as Bytes, 128 as Sectors)).toBe(32 * MiB);
  expect(defaultMetadataSize((100 * GiB) as Bytes, 128 as Sectors)).toBe(2 * GiB);
  expect(defaultMetadataSize((2 ** 50) as Bytes, 128 as Sectors)).toBe(MAX_METADATA_SECTORS * 512);
});

test('suspend timeoutMs: a positive integer, refused before any call otherwise, and refused in a batch', async () => {
  const { dm, calls } = tripwireDm();
  for (const bad of [0, -1, 1.5, NaN, Infinity, '100', 2 ** 31]) {
    expect(() => dm.suspendSync('x', { timeoutMs: bad as number })).toThrow(invalid);
    await expect(dm.suspend('x', { timeoutMs: bad as number })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
  }
  expect(() => dm.batch().suspend('x', { timeoutMs: 1000 })).toThrow(invalid);
  expect(calls).toEqual([]);
});

describe('where the setting is kept', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-free-pool-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  let n = 0;
  // A thin-pool device in the scripted kernel, as create() leaves one, and a registry folder of its own.
  const scripted = () => {
    const name = `free-pool-${++n}`;
    const { dm } = scriptedPoolDevice(name);
    const registryDir = path.join(tmp, name);
    fs.mkdirSync(registryDir);
    return { name, dm, registryDir, file: path.join(registryDir, 'min-free-space.json') };
  };

  test('in the registry: one durable write, seen by every later open, no file beside it', () => {
    const { name, dm, registryDir, file } = scripted();
    const pool = ThinPool.openSync(name, { dm, registryDir });
    pool.setMinFreeSpaceSync({ data: '10%', metadata: 1048576 });
    expect(JSON.parse(pool.registry.minFreeSpace!()!)).toEqual({ data: { percent: 10 }, metadata: { bytes: 1048576 } });
    expect(fs.existsSync(file)).toBe(false);
    pool.closeSync();
    const again = ThinPool.openSync(name, { dm, registryDir });
    expect(again.minFreeSpace).toEqual({ data: '10%', metadata: 1048576 });
    again.setMinFreeSpaceSync(null);
    expect(again.registry.minFreeSpace!()).toBeUndefined();
    expect(again.minFreeSpace).toBeUndefined();
    again.closeSync();
  });

  test('a file an earlier version left beside the registry moves into it at open; a setting already in the registry wins', () => {
    const { name, dm, registryDir, file } = scripted();
    fs.writeFileSync(file, JSON.stringify({ data: { percent: 5 } }));
    const pool = ThinPool.openSync(name, { dm, registryDir });
    expect(pool.minFreeSpace).toEqual({ data: '5%' });
    expect(fs.existsSync(file)).toBe(false);
    pool.closeSync();
    // Killed between the registry write and the file's removal: both there, the registry's is the setting.
    fs.writeFileSync(file, JSON.stringify({ data: { percent: 50 } }));
    const again = ThinPool.openSync(name, { dm, registryDir });
    expect(again.minFreeSpace).toEqual({ data: '5%' });
    expect(fs.existsSync(file)).toBe(false);
    again.closeSync();
  });

  test('a corrupt setting in the registry is ERR_DM_POOL_STATE at the check, never ignored', () => {
    const { name, dm, registryDir } = scripted();
    const pool = ThinPool.openSync(name, { dm, registryDir });
    pool.registry.setMinFreeSpace!('{"data":{"percent":900}}');
    expect(() => pool.minFreeSpace).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_STATE' }));
    expect(() => pool.createVolumeSync('v', '1M')).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_STATE' }));
    pool.registry.setMinFreeSpace!(null);
    pool.closeSync();
  });

  test('a registry store that cannot keep it: the file beside the registry', () => {
    const { name, dm, registryDir, file } = scripted();
    const own = LmdbRegistry.open(path.join(registryDir, 'own'));
    // The same store less the two optional methods, as a user's RegistryStore may be.
    const store: RegistryStore = {
      get: (x) => own.get(x), list: () => own.list(), children: (x) => own.children(x), count: () => own.count(),
      pending: () => own.pending(), nextFreeId: () => own.nextFreeId(), commit: (w) => own.commit(w),
      intend: (c, d, e) => own.intend(c, d, e), refresh: () => own.refresh(), metadataSnapshot: () => own.metadataSnapshot(),
      setMetadataSnapshot: (h) => own.setMetadataSnapshot(h), close: () => own.close(),
    };
    const pool = ThinPool.openSync(name, { dm, registryDir, registry: store });
    pool.setMinFreeSpaceSync('20%');
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ data: { percent: 20 }, metadata: { percent: 20 } });
    expect(pool.minFreeSpace).toEqual({ data: '20%', metadata: '20%' });
    pool.closeSync();
  });
});
