// A burst of hostile calls against the real kernel: a DeviceMapper, Loop and Block, and a live ThinPool with
// an active and an inactive ThinVolume (and a second pool, whose volume is offered to the first as a snapshot
// origin). Every call gets hostile names, sizes, numbers, options or objects: each sync form must throw a
// DevmapperError of our own (ERR_DM_*), each promise form must return a promise that rejects with one (never
// throw), none may hang. Then nothing may have changed: the same dm devices, the same loop devices, the pool's
// registry and transaction id as before, its volumes as active or inactive as they were, nothing suspended.
//
// The arguments around the hostile one are chosen so that a check that lets a bad value through is seen and
// does little harm: destructive commands name devices that do not exist (a slip ends in ENXIO, not in a
// removed or suspended device), reads and messages name the real pool (a slip shows in its transaction id),
// loop attaches name a real file (a slip leaves a loop device behind, which the end check finds).
import fs from 'node:fs';
import path from 'node:path';
import { Block, DeviceMapper, DevmapperError, Loop, ThinPool, ThinVolume } from '../../lib';
import { eventually, uniqueName } from './helpers';
import { withPool } from './thin-helpers';
import {
  BAD_BOOLEANS, BAD_NAMES, BAD_NUMBERS, BAD_OPTION_OBJECTS, BAD_REFS, Expect, NOT_STRINGS, NUL_STRINGS, asyncRefuses, label, syncRefuses,
} from '../unit/hostile-helpers';

jest.setTimeout(900_000);

const MiB = 1 << 20;
// Under TCG the guest is slow, and the promise forms run all at once: a generous bound, not a speed claim.
const BOUND_MS = 180_000;

interface Call { label: string; sync?: () => unknown; promise?: () => unknown; x?: Expect }

/** The sync forms one after another, then every promise form at once; failures collected, not thrown. */
export async function burst(calls: Call[]): Promise<string[]> {
  const failures: string[] = [];
  for (const c of calls) {
    if (!c.sync) continue;
    try { syncRefuses(c.sync, c.x); } catch (e) { failures.push(`${c.label} [sync]: ${(e as Error).message}`); }
  }
  await Promise.all(calls.filter((c) => c.promise).map(async (c) => {
    try { await asyncRefuses(c.promise!, { ...c.x, boundMs: BOUND_MS }); } catch (e) { failures.push(`${c.label} [promise]: ${(e as Error).message}`); }
  }));
  return failures;
}

const dmNames = (dm: DeviceMapper) => dm.listSync().map((d) => `${d.name} ${d.dev.major}:${d.dev.minor}`).sort();
const loops = () => Loop.list().map((l) => `${l.path} ${l.backingFile}`).sort();

const BAD_SIZES: unknown[] = [
  NaN, Infinity, -Infinity, -1, -512, 0.5, 511, 1000, 2 ** 53, 2 ** 64, '', 'potato', '10 potatoes', '-1G', '1.5G', '1e3', 'G', '1G\0',
  null, true, {}, [], new Number(MiB), new String('1G'), Symbol('size'), 10n,
];
const BAD_TEXTS: unknown[] = ['', 'create_thin 99\0', 'create_thin 99\ndelete 0', 'set_transaction_id 0 1\n', '\n', 'a\rb', ...NOT_STRINGS];
const BAD_TABLES: unknown[] = [
  undefined, null, [], 'zero', [{}], [{ start: 0, length: 8, type: 'zero' }], [{ start: 0, length: 0, type: 'zero', params: '' }],
  [{ start: 1, length: 8, type: 'zero', params: '' }], [{ start: 0, length: NaN, type: 'zero', params: '' }], [{ start: 0, length: 8.5, type: 'zero', params: '' }],
  [{ start: 0, length: 2 ** 53, type: 'zero', params: '' }], [{ start: 0, length: 8, type: 'zero\0', params: '' }], [{ start: 0, length: 8, type: 'zero', params: 'a\nb' }],
  [{ start: 0, length: 8, type: 'zero', params: 'a\0b' }], [{ start: 0, length: 8, type: 'zero', params: '', extra: 1 }], [{ start: 0, length: 8, type: 'a b', params: '' }],
];
const BAD_GEOMETRIES: unknown[] = [
  undefined, null, {}, { cylinders: 65536, heads: 1, sectors: 1, start: 0 }, { cylinders: 1, heads: 256, sectors: 1, start: 0 },
  { cylinders: 1, heads: 1, sectors: 256, start: 0 }, { cylinders: 1, heads: 1, sectors: 1, start: 2 }, { cylinders: 1.5, heads: 1, sectors: 1, start: 0 },
  { cylinders: -1, heads: 1, sectors: 1, start: 0 }, { cylinders: 1, heads: 1, sectors: 1, start: 0, extra: 1 }, { cylinders: '1', heads: 1, sectors: 1, start: 0 },
];
const BAD_LOOPS: unknown[] = ['', '/dev/loop', '/dev/loopX', '/dev/loop01', '/dev/loop1048576', '/dev/loop0\0', '/dev/loop0\n', 'loop0', '/dev/sda', '/dev/loop-control', ...NOT_STRINGS];
const BAD_PATHS: unknown[] = ['', ...NUL_STRINGS, ...NOT_STRINGS];
/** Options objects no call takes: not objects, and objects with keys no call knows. */
const BAD_OPTIONS: unknown[] = [...BAD_OPTION_OBJECTS, { nonsense: true }, { [Symbol('k')]: true }, JSON.parse('{"__proto__": {"readOnly": true}}')];
const withKey = (key: string, values: unknown[]) => values.map((v) => ({ [key]: v }));

export interface BurstTargets {
  dm: DeviceMapper; pool: ThinPool; other: ThinPool; active: ThinVolume; idle: ThinVolume; foreign: ThinVolume; gone: ThinVolume;
  /** The pool's folder, and a plain file in it. */
  dir: string; file: string;
  registryBefore: ReturnType<ThinPool['listSync']>;
}

/** What the burst sends: every call with one hostile argument (or a conflict), and what each must do. */
export function hostileCalls(c: BurstTargets): Call[] {
  const { dm, pool, other, active, idle, foreign, gone, dir, file, registryBefore } = c;
  const absent = () => uniqueName('hb-absent');  // a dm name nothing has
  const calls: Call[] = [];
  const add = (lbl: string, sync: (() => unknown) | undefined, promise: (() => unknown) | undefined, x?: Expect) =>
    calls.push({ label: lbl, sync, promise, x });
  const d = dm as unknown as Record<string, (...a: unknown[]) => unknown>;
  const both = (method: string, args: unknown[], x?: Expect) =>
    add(`dm.${method}(${args.map(label).join(', ')})`, () => d[`${method}Sync`](...args), () => d[method](...args), x);

  // ---- DeviceMapper: names and references --------------------------------------------------------
  for (const ref of BAD_REFS) {
    for (const m of ['remove', 'resume', 'info', 'clear', 'infoIfExists', 'exists']) both(m, [ref]);
    both('suspend', [ref]);
    both('status', [ref]);
    both('setUuid', [ref, 'U-hostile']);
    both('rename', [ref, absent()]);
  }
  for (const name of BAD_NAMES) {
    both('create', [name]);
    both('createDevice', [name, [{ start: 0, length: 8, type: 'zero', params: '' }]]);
    both('rename', [absent(), name]);
  }
  // ---- DeviceMapper: options -----------------------------------------------------------------------
  for (const o of [...BAD_OPTIONS, { readonly: true }, { uuid: '' }, { uuid: 'a\0b' }, ...withKey('readOnly', BAD_BOOLEANS), ...withKey('minor', [...BAD_NUMBERS, 2 ** 20])]) {
    both('create', [absent(), o]);
    both('createDevice', [absent(), [{ start: 0, length: 8, type: 'zero', params: '' }], o]);
  }
  for (const o of [...BAD_OPTIONS, { Deferred: true }, ...withKey('deferred', BAD_BOOLEANS)]) {
    both('remove', [absent(), o]);
    both('removeAll', [o]);  // refused before anything: a slip would remove every unused device
  }
  for (const o of [...BAD_OPTIONS, { noFlush: true }, ...withKey('noflush', BAD_BOOLEANS), ...withKey('skipLockfs', BAD_BOOLEANS)]) both('suspend', [absent(), o]);
  for (const o of [...BAD_OPTIONS, { inActive: true }, ...withKey('inactive', BAD_BOOLEANS), ...withKey('noflush', BAD_BOOLEANS)]) {
    for (const m of ['status', 'table', 'deps']) both(m, [pool.name, o]);  // reads of the real pool
    add(`dm.waitSync(pool, 0, ${label(o)})`, () => dm.waitSync(pool.name, 0, o as never), undefined);
  }
  for (const o of [...BAD_OPTIONS, { timeout: 5 }, ...withKey('timeoutMs', [...BAD_NUMBERS, 2 ** 31]), ...withKey('signal', [null, {}, 'signal'])]) {
    add(`dm.wait(pool, 0, ${label(o)})`, undefined, () => dm.wait(pool.name, 0, o as never));
    add(`dm.pollEvent(${label(o)})`, undefined, () => dm.pollEvent(o as never));
  }
  add('dm.waitSync(pool, 0, { timeoutMs })', () => dm.waitSync(pool.name, 0, { timeoutMs: 5 } as never), undefined);  // cannot honour it: refused
  for (const n of [undefined, ...BAD_NUMBERS, 2 ** 32]) {
    add(`dm.wait(pool, ${label(n)})`, () => dm.waitSync(pool.name, n as number), () => dm.wait(pool.name, n as number));
  }
  // ---- DeviceMapper: tables, messages, geometry, target names ------------------------------------------
  for (const t of BAD_TABLES) {
    both('load', [absent(), t]);
    both('createDevice', [absent(), t]);
  }
  for (const o of [...BAD_OPTIONS, { readonly: true }, ...withKey('secure', BAD_BOOLEANS)]) both('load', [absent(), [{ start: 0, length: 8, type: 'zero', params: '' }], o]);
  for (const text of BAD_TEXTS) both('message', [pool.name, 0, text]);  // the real pool: a slip shows in its transaction id
  for (const sector of [undefined, ...BAD_NUMBERS]) both('message', [pool.name, sector, 'create_thin 99']);
  for (const o of [...BAD_OPTIONS, ...withKey('secure', BAD_BOOLEANS)]) both('message', [pool.name, 0, 'create_thin 99', o]);
  for (const g of BAD_GEOMETRIES) both('setGeometry', [active.name, g]);
  for (const type of ['', 'thin pool', 'x'.repeat(16), 'a\0', 'control', ...NOT_STRINGS]) both('targetVersion', [type]);
  for (const o of [...BAD_OPTIONS, { uuid: true }, ...withKey('uuids', BAD_BOOLEANS)]) both('list', [o]);
  for (const bad of [() => dm.batch().create('a/b'), () => dm.batch().suspend(pool.name, { noflsh: true } as never), () => dm.batch().message(pool.name, 0, 'create_thin 99\n'),
    () => dm.batch().remove({ uuid: 'U' } as never), () => dm.batch().load(absent(), [] as never)]) add('dm.batch() builder', bad, undefined);

  // ---- Loop and Block --------------------------------------------------------------------------------
  for (const f of BAD_PATHS) {
    add(`Loop.attach(${label(f)})`, () => Loop.attachSync(f as string), () => Loop.attach(f as string));
    add(`Loop.find(${label(f)})`, () => Loop.findSync(f as string), () => Loop.find(f as string));
    for (const m of ['size', 'flush', 'deviceNumber'] as const) {
      const b = Block as unknown as Record<string, (p: unknown) => unknown>;
      add(`Block.${m}(${label(f)})`, () => b[`${m}Sync`](f), () => b[m](f));
    }
    add(`Block.discard(${label(f)})`, () => Block.discardSync(f as string, 0, 512), () => Block.discard(f as string, 0, 512));
  }
  for (const o of [...BAD_OPTIONS, { readonly: true }, { autoClear: true }, ...withKey('readOnly', BAD_BOOLEANS), ...withKey('autoclear', BAD_BOOLEANS),
    ...withKey('offset', BAD_NUMBERS), ...withKey('sizeLimit', [...BAD_NUMBERS, 1000]), ...withKey('blockSize', [1000, '512', 0, 8192, NaN]), ...withKey('method', ['losetup', 1])]) {
    add(`Loop.attach(file, ${label(o)})`, () => Loop.attachSync(file, o as never), () => Loop.attach(file, o as never));  // a slip leaves a loop behind
  }
  for (const dev of BAD_LOOPS) {
    add(`Loop.detach(${label(dev)})`, () => Loop.detachSync(dev as string), () => Loop.detach(dev as string));
    add(`Loop.status(${label(dev)})`, () => Loop.statusSync(dev as string), () => Loop.status(dev as string));
    add(`Loop.setCapacity(${label(dev)})`, () => Loop.setCapacitySync(dev as string), () => Loop.setCapacity(dev as string));
  }
  for (const n of [undefined, ...BAD_NUMBERS, 1, 511]) {
    add(`Block.discard(active, ${label(n)}, 512)`, () => Block.discardSync(active.path, n as number, 512), () => Block.discard(active.path, n as number, 512));
    add(`Block.discard(active, 0, ${label(n)})`, () => Block.discardSync(active.path, 0, n as number), () => Block.discard(active.path, 0, n as number));
  }
  add('Block.discard(active, 0, 0)', () => Block.discardSync(active.path, 0, 0), () => Block.discard(active.path, 0, 0));

  // ---- the pool ----------------------------------------------------------------------------------------
  for (const name of BAD_NAMES) {
    add(`pool.createVolume(${label(name)})`, () => pool.createVolumeSync(name as string, MiB), () => pool.createVolume(name as string, MiB));
    add(`pool.snapshot(active, ${label(name)})`, () => pool.snapshotSync(active, name as string), () => pool.snapshot(active, name as string));
    add(`pool.snapshot(${label(name)}, new)`, () => pool.snapshotSync(name as string, absent()), () => pool.snapshot(name as string, absent()));
    add(`pool.deleteVolume(${label(name)})`, () => pool.deleteVolumeSync(name as string), () => pool.deleteVolume(name as string));
    add(`pool.resizeVolume(${label(name)})`, () => pool.resizeVolumeSync(name as string, 8 * MiB), () => pool.resizeVolume(name as string, 8 * MiB));
    add(`pool.isActiveThin(${label(name)})`, () => pool.isActiveThinSync(name as string, 0), () => pool.isActiveThin(name as string, 0));
    add(`pool.volume(${label(name)})`, () => pool.volume(name as string), undefined);
  }
  for (const size of [...BAD_SIZES, 0]) {
    add(`pool.createVolume(new, ${label(size)})`, () => pool.createVolumeSync(absent(), size as number), () => pool.createVolume(absent(), size as number));
    add(`pool.resizeVolume(idle, ${label(size)})`, () => pool.resizeVolumeSync(idle.name, size as number), () => pool.resizeVolume(idle.name, size as number));
    add(`active.resize(${label(size)})`, () => active.resizeSync(size as number), () => active.resize(size as number));
    add(`pool.growData(${label(size)})`, () => pool.growDataSync(size as number), () => pool.growData(size as number));
    add(`pool.growMetadata(${label(size)})`, () => pool.growMetadataSync(size as number), () => pool.growMetadata(size as number));
  }
  // Shrinking is refused: volumes and pools only grow.
  add('idle.resize(smaller)', () => idle.resizeSync(MiB), () => idle.resize(MiB), { code: 'ERR_DM_INVALID_SIZE' });
  add('pool.growData(smaller)', () => pool.growDataSync(MiB), () => pool.growData(MiB), { code: 'ERR_DM_INVALID_SIZE' });
  // Names already taken, volumes that are not there, another pool's volume, objects that only look like volumes.
  add('pool.createVolume(taken)', () => pool.createVolumeSync(active.name, MiB), () => pool.createVolume(active.name, MiB), { code: 'ERR_DM_VOLUME_EXISTS' });
  add('pool.createVolume(pool name)', () => pool.createVolumeSync(pool.name, MiB), () => pool.createVolume(pool.name, MiB), { code: 'ERR_DM_VOLUME_EXISTS' });
  add('pool.snapshot(active, taken)', () => pool.snapshotSync(active, idle.name), () => pool.snapshot(active, idle.name), { code: 'ERR_DM_VOLUME_EXISTS' });
  add('pool.snapshot(deleted volume)', () => pool.snapshotSync(gone, absent()), () => pool.snapshot(gone, absent()), { code: 'ERR_DM_NO_SUCH_VOLUME' });
  add('pool.snapshot(absent name)', () => pool.snapshotSync(absent(), absent()), () => pool.snapshot(absent(), absent()), { code: 'ERR_DM_NO_SUCH_VOLUME' });
  add('pool.snapshot(foreign volume)', () => pool.snapshotSync(foreign, absent()), () => pool.snapshot(foreign, absent()), { code: 'ERR_DM_INVALID_ARGUMENT', mentions: other.name });
  add('other.snapshot(this pool\'s volume)', () => other.snapshotSync(active, absent()), () => other.snapshot(active, absent()), { code: 'ERR_DM_INVALID_ARGUMENT' });
  for (const fake of [{ name: active.name, pool }, Object.create(ThinVolume.prototype), new ThinVolume(other, { ...registryBefore[0] }), [active.name], new String(active.name)]) {
    add(`pool.snapshot(${label(fake)})`, () => pool.snapshotSync(fake as never, absent()), () => pool.snapshot(fake as never, absent()));
  }
  add('pool.deleteVolume(foreign volume object)', () => pool.deleteVolumeSync(foreign as never), () => pool.deleteVolume(foreign as never));
  add('pool.deleteVolume(absent)', () => pool.deleteVolumeSync(absent()), () => pool.deleteVolume(absent()), { code: 'ERR_DM_NO_SUCH_VOLUME' });
  for (const id of [-1, 1.5, NaN, 2 ** 24, '0', null]) add(`pool.isActiveThin(active, ${label(id)})`, () => pool.isActiveThinSync(active.name, id as number), () => pool.isActiveThin(active.name, id as number));
  // Options of the pool's and the volumes' methods.
  for (const o of [...BAD_OPTIONS, { discard: 'yes' }, { discard: 1 }, { deactivate: 5 }, { deactivate: { retries: -1 } }, { deactivate: { deferred: 'yes' } }, { Discard: true }]) {
    add(`pool.deleteVolume(idle, ${label(o)})`, () => pool.deleteVolumeSync(idle.name, o as never), () => pool.deleteVolume(idle.name, o as never));
  }
  for (const o of [...BAD_OPTIONS, { discard: 'yes' }, { retries: -1 }, { retries: 1.5 }, { retryDelayMs: 2 ** 31 }, { deferred: 1 }, { deferd: true }]) {
    add(`idle.delete(${label(o)})`, () => idle.deleteSync(o as never), () => idle.delete(o as never));
  }
  for (const o of [...BAD_OPTIONS, { retries: -1 }, { retries: 10_001 }, { retryDelayMs: -1 }, { retryDelayMs: NaN }, ...withKey('deferred', BAD_BOOLEANS), { defered: true }]) {
    add(`active.deactivate(${label(o)})`, () => active.deactivateSync(o as never), () => active.deactivate(o as never));
  }
  for (const o of [...BAD_OPTIONS, { readonly: true }, ...withKey('readOnly', BAD_BOOLEANS)]) {
    add(`idle.activate(${label(o)})`, () => idle.activateSync(o as never), () => idle.activate(o as never));
    add(`active.activate(${label(o)})`, () => active.activateSync(o as never), () => active.activate(o as never));
  }
  for (const o of [...BAD_OPTIONS, { noFlush: true }, ...withKey('noflush', BAD_BOOLEANS)]) add(`pool.status(${label(o)})`, () => pool.statusSync(o as never), () => pool.status(o as never));
  for (const o of [...BAD_OPTIONS, { deletefiles: true }, ...withKey('deleteFiles', BAD_BOOLEANS)]) add(`pool.destroy(${label(o)})`, () => pool.destroySync(o as never), () => pool.destroy(o as never));
  for (const f of [undefined, null, 'skip', [], { readonly: true }, { skipBlockZeroing: 'yes' }, { ignoreDiscard: 1 }, { errorIfNoSpace: null }, new Map()]) {
    add(`pool.setFeatures(${label(f)})`, () => pool.setFeaturesSync(f as never), () => pool.setFeatures(f as never));
  }
  for (const n of [undefined, ...BAD_NUMBERS]) add(`pool.setLowWaterMark(${label(n)})`, () => pool.setLowWaterMarkSync(n as number), () => pool.setLowWaterMark(n as number));
  for (const fn of [null, 'describe', 5, {}]) add(`pool.tree(${label(fn)})`, () => pool.treeSync(fn as never), () => pool.tree(fn as never));
  const signal = new AbortController().signal;
  for (const [fn, o] of [[undefined, { signal }], ['x', { signal }], [() => undefined, undefined], [() => undefined, {}], [() => undefined, { signal: 'x' }],
    [() => undefined, { signl: signal }], [() => undefined, { signal, extra: 1 }], [() => undefined, null]] as const) {
    add(`pool.watchLowWater(${label(fn)}, ${label(o)})`, undefined, () => pool.watchLowWater(fn as never, o as never));
  }
  // ---- ThinPool's entry points ------------------------------------------------------------------------
  const dataFile = path.join(dir, 'hb-never-made');
  const createBad: unknown[] = [
    undefined, null, 'pool', [], new Map(),
    ...BAD_NAMES.map((name) => ({ name, dataFile, dataSize: '64M' })),
    { name: absent(), dataFile, dataSize: '64M', readonly: true }, { name: absent(), datafile: dataFile, dataSize: '64M' },
    ...BAD_PATHS.map((f) => ({ name: absent(), dataFile: f, dataSize: '64M' })),
    ...BAD_SIZES.map((s) => ({ name: absent(), dataFile, dataSize: s })), ...BAD_SIZES.map((s) => ({ name: absent(), dataFile, dataSize: '64M', metadataSize: s })),
    ...[0, 64, 100, 129, 2 ** 22, NaN, '128'].map((b) => ({ name: absent(), dataFile, dataSize: '64M', blockSize: b })),
    ...[-1, 1.5, NaN, '10'].map((l) => ({ name: absent(), dataFile, dataSize: '64M', lowWaterMark: l })),
    ...BAD_BOOLEANS.map((b) => ({ name: absent(), dataFile, dataSize: '64M', skipBlockZeroing: b })),
    { name: absent(), dataFile, dataSize: '64M', readOnly: true }, { name: absent(), dataFile, dataSize: '64M', dm: {} }, { name: absent(), dataFile, dataSize: '64M', hooks: { stp() {} } },
    { name: absent(), dataFile, dataSize: '64M', registry: {} }, { name: absent(), dataFile }, { name: absent() },
    { name: pool.name, dataFile, dataSize: 'potato' }, { name: pool.name, dataFile, dataSize: '64M' },  // the name is taken: ERR_DM_POOL_EXISTS, nothing made
  ];
  for (const o of createBad) add(`ThinPool.create(${label(o)})`, () => ThinPool.createSync(o as never), () => ThinPool.create(o as never));
  for (const name of BAD_NAMES) add(`ThinPool.open(${label(name)})`, () => ThinPool.openSync(name as string), () => ThinPool.open(name as string));
  for (const o of [...BAD_OPTIONS, { registrydir: dir }, { dm: {} }, { registryDir: 'a\0' }, { hooks: 5 }]) {
    add(`ThinPool.open(pool, ${label(o)})`, () => ThinPool.openSync(pool.name, o as never), () => ThinPool.open(pool.name, o as never));
  }
  for (const o of [undefined, null, { name: pool.name }, { name: pool.name, dataFile: 'a\0' }, { name: pool.name, dataFile: pool.files.data, readonly: true },
    { name: 'control', dataFile: pool.files.data }, { name: pool.name, dataFile: pool.files.data, dataSize: '64M' }, { name: absent(), dataDevice: '/dev/null' }]) {
    add(`ThinPool.attach(${label(o)})`, () => ThinPool.attachSync(o as never), () => ThinPool.attach(o as never));
  }

  return calls;
}

test('a burst of hostile calls against a live pool, its volumes, DeviceMapper, Loop and Block changes nothing', async () => {
  const dm = new DeviceMapper();
  const dmAtStart = dmNames(dm);
  const loopsAtStart = loops();
  try {
    await withPool({}, async (pool, dir) => {
      await withPool({}, async (other) => {
        const active = await (await pool.createVolume(uniqueName('hb-active'), 4 * MiB)).activate();
        const idle = await pool.createVolume(uniqueName('hb-idle'), 4 * MiB);
        const foreign = await other.createVolume(uniqueName('hb-foreign'), 4 * MiB);
        const gone = await pool.createVolume(uniqueName('hb-gone'), MiB);
        await gone.delete();
        const file = path.join(dir, 'plain.img');
        fs.writeFileSync(file, Buffer.alloc(MiB));

        // What must not change.
        const dmBefore = dmNames(dm);
        const loopsBefore = loops();
        const registryBefore = pool.listSync();
        const tidBefore = pool.transactionIdSync();
        const otherRegistryBefore = other.listSync();
        const otherTidBefore = other.transactionIdSync();
        const filesBefore = fs.readdirSync(dir).sort();  // no file made (the data file a refused create names, a marker)

        const calls = hostileCalls({ dm, pool, other, active, idle, foreign, gone, dir, file, registryBefore });
        expect(calls.length).toBeGreaterThan(300);
        const failures = await burst(calls);

        // Nothing changed, whatever failed above.
        const after = {
          dm: dmNames(dm), loops: loops(), registry: pool.listSync(), tid: pool.transactionIdSync(),
          otherRegistry: other.listSync(), otherTid: other.transactionIdSync(),
          suspended: [pool.name, other.name, active.name].filter((n) => dm.infoSync(n).suspended),
          files: fs.readdirSync(dir).sort(),
        };
        expect(after).toEqual({
          dm: dmBefore, loops: loopsBefore, registry: registryBefore, tid: tidBefore, otherRegistry: otherRegistryBefore, otherTid: otherTidBefore,
          suspended: [], files: filesBefore,
        });
        expect(await active.isActive()).toBe(true);
        expect(await idle.isActive()).toBe(false);
        expect((await pool.status()).state).toBe('ok');
        // Every failure: which call, which form, what it did instead.
        expect(failures).toEqual([]);
      });
    });
    // The pools are gone with withPool: the kernel has what it had before this test, no more (their loops
    // are autoclear: they go at last close, a moment after).
    await eventually(() => loops().join() === loopsAtStart.join());
    expect(dmNames(dm)).toEqual(dmAtStart);
    expect(loops()).toEqual(loopsAtStart);
  } finally {
    dm.close();
  }
});

test('DevmapperError from the burst helpers is the library\'s own class', () => {
  expect(syncRefuses(() => { throw new DevmapperError('x', { code: 'ERR_DM_INVALID_ARGUMENT' }); })).toBeInstanceOf(DevmapperError);
});
