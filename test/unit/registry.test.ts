// The LMDB registry on its own (no kernel): O(1)-ish allocation, reuse of freed ids, atomic writes.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { DevmapperError, LmdbRegistry, PendingChange, RegistryWrite, VolumeRecord } from '../../lib';
import { bound, childNode, emulated, fuzzRuns } from './emulation';

const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'registry-'));
const rec = (name: string, id: number): VolumeRecord => ({ name, id, size: 2048 as never, parent: null, state: 'ready', created: 0 });

test('the registry never loads lmdb-js (~10 MiB): LMDB is compiled into the addon', () => {
  const lib = path.join(__dirname, '..', '..', 'lib');
  const script = `const m = require(${JSON.stringify(lib)}); const has = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/lmdb/'));
    const d = require('fs').mkdtempSync(require('os').tmpdir() + '/registry-');
    const r = m.LmdbRegistry.open(d); r.commit({ takeIds: [0] }); const used = r.nextFreeId(); r.close(); require('fs').rmSync(d, { recursive: true });
    process.stdout.write(JSON.stringify([has(), used]));`;
  expect(JSON.parse(execFileSync(...childNode(['-e', script]), { encoding: 'utf8' }))).toEqual([false, 1]);
});

test("a store's failure is one typed error; a registry in an earlier build's format is refused, not started empty", async () => {
  const d = dir();
  try {
    fs.writeFileSync(path.join(d, 'file'), '');  // a file where the folder should be: refused before LMDB
    expect(() => LmdbRegistry.open(path.join(d, 'file'))).toThrow(expect.objectContaining({ code: 'EEXIST', syscall: 'mkdir', device: path.join(d, 'file') }));
    expect(() => LmdbRegistry.open(path.join(d, 'file'))).toThrow(DevmapperError);
    const sub = path.join(d, 'reg');
    fs.mkdirSync(path.join(sub, 'registry.mdb'), { recursive: true });  // a folder where the file should be
    // The store's own failures carry ERR_DM_REGISTRY, with the errno LMDB gave.
    expect(() => LmdbRegistry.open(sub)).toThrow(expect.objectContaining({ code: 'ERR_DM_REGISTRY', errno: -os.constants.errno.EISDIR, syscall: 'mdb_env_open', command: 'registry' }));
    const old = path.join(d, 'old');
    fs.mkdirSync(old);
    fs.writeFileSync(path.join(old, 'registry.lmdb'), '');
    expect(() => LmdbRegistry.open(old)).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_STATE' }));
  } finally {
    fs.rmSync(d, { recursive: true });
  }
});

test('ids are allocated from 0, freed ids are reused lowest first, pending is set and cleared', async () => {
  const d = dir();
  const r = LmdbRegistry.open(d);
  try {
    for (let i = 0; i < 5; i++) { const id = r.nextFreeId(); expect(id).toBe(i); r.commit({ takeIds: [id], put: [rec(`v${i}`, id)] }); }
    r.commit({ remove: ['v1', 'v3'], freeIds: [3, 1] });
    expect(r.nextFreeId()).toBe(1);
    r.commit({ takeIds: [1] });
    expect(r.nextFreeId()).toBe(3);
    r.commit({ takeIds: [3, 9] });  // 9: taken in the pool behind our back; 5..8 stay free
    expect(r.nextFreeId()).toBe(5);
    expect(r.count()).toBe(3);
    expect(r.list().map((v) => v.name)).toEqual(['v0', 'v2', 'v4']);
    r.commit({ put: [{ ...rec('c1', 1), parent: 'v0' }, { ...rec('c2', 3), parent: 'v0' }] });
    expect(r.children('v0').map((v) => v.name)).toEqual(['c1', 'c2']);
    r.commit({ put: [{ ...rec('c1', 1), parent: 'v2' }], remove: ['c2'] });
    expect(r.children('v0')).toEqual([]);
    expect(r.children('v2').map((v) => v.name)).toEqual(['c1']);
    r.commit({ remove: ['c1'], freeIds: [1, 3] });
    r.commit({ pending: { op: 'create', id: 5, name: 'x', size: 8 as never, parent: null, fromTid: 1, toTid: 2 } });
    expect(r.pending()).toMatchObject({ id: 5 });
    r.commit({ pending: null });
    expect(r.pending()).toBeUndefined();
  } finally {
    await r.close();
    fs.rmSync(d, { recursive: true });
  }
});

test('intend() takes the next free id and records the change atomically, or hands back an unfinished one', async () => {
  const d = dir();
  const r = LmdbRegistry.open(d);
  try {
    r.commit({ takeIds: [0, 1, 2], put: [rec('a', 0), rec('b', 1), rec('c', 2)] });
    r.commit({ remove: ['b'], freeIds: [1] });
    const change = { op: 'create', name: 'n', size: 8 as never, parent: null, fromTid: 4, toTid: 5 } as const;
    const first = r.intend(change);
    expect(first).toEqual({ recorded: { ...change, id: 1 } });
    expect(r.pending()).toEqual({ ...change, id: 1 });
    expect(r.nextFreeId()).toBe(3);  // id 1 is taken by the intent
    // A second intent while one is pending writes nothing and returns the pending one.
    expect(r.intend({ ...change, name: 'm' })).toEqual({ unfinished: { ...change, id: 1 } });
    expect(r.nextFreeId()).toBe(3);
    // Once the pool's transaction id reached the pending change's toTid, it committed: the next one replaces it.
    expect(r.intend({ ...change, name: 'm', fromTid: 5, toTid: 6 })).toEqual({ recorded: { ...change, name: 'm', id: 3, fromTid: 5, toTid: 6 } });
    expect(r.nextFreeId()).toBe(4);
    r.commit({ pending: null, freeIds: [1, 3] });
    // A delete names its id: nothing is allocated.
    expect(r.intend({ op: 'delete', id: 2, name: 'c', size: 8 as never, parent: null, fromTid: 5, toTid: 6 })).toMatchObject({ recorded: { id: 2 } });
    expect(r.nextFreeId()).toBe(1);
    // Removing a volume re-parents its children to its own parent.
    r.commit({ takeIds: [1, 3], put: [{ ...rec('k1', 1), parent: 'c' }, { ...rec('k2', 3), parent: 'c' }] });
    r.commit({ put: [{ ...rec('c', 2), parent: 'a' }] });
    r.commit({ remove: ['c'] });
    expect(r.children('a').map((v) => v.name)).toEqual(['k1', 'k2']);
    expect(r.get('k1')?.parent).toBe('a');
    expect(r.children('c')).toEqual([]);
  } finally {
    await r.close();
    fs.rmSync(d, { recursive: true });
  }
});

test("intend() writes the change's effect on the records in the same write, and none when it hands one back", async () => {
  const d = dir();
  const r = LmdbRegistry.open(d);
  try {
    const create = { op: 'create', name: 'n', size: 8 as never, parent: null, fromTid: 1, toTid: 2 } as const;
    expect(r.intend(create, undefined, (id) => ({ put: [rec('n', id)] }))).toEqual({ recorded: { ...create, id: 0 } });
    expect(r.get('n')).toEqual(rec('n', 0));
    // Unfinished: neither the pending record nor the records change.
    expect(r.intend({ ...create, name: 'm' }, undefined, (id) => ({ put: [rec('m', id)] }))).toMatchObject({ unfinished: { name: 'n' } });
    expect(r.get('m')).toBeUndefined();
    expect(r.nextFreeId()).toBe(1);
    // A delete's effect: the record goes, its children move up, its id is free.
    const snap = r.intend({ ...create, op: 'snapshot', name: 's', parent: 'n', fromTid: 2, toTid: 3 }, undefined,
      (id) => ({ put: [{ ...rec('s', id), parent: 'n' }] }));
    expect(snap).toMatchObject({ recorded: { id: 1 } });
    const before = { n: r.get('n')!, kids: r.children('n') };
    expect(before.kids.map((v) => v.name)).toEqual(['s']);
    r.intend({ op: 'delete', id: 0, name: 'n', size: 8 as never, parent: null, fromTid: 3, toTid: 4 }, undefined,
      (id) => ({ remove: ['n'], freeIds: [id] }));
    expect(r.get('n')).toBeUndefined();
    expect(r.get('s')?.parent).toBeNull();
    expect(r.nextFreeId()).toBe(0);
    // ThinPool's undo when the delete never reached the pool: record, id and children as they were.
    r.commit({ put: [before.n, ...before.kids], takeIds: [0], pending: null });
    expect(r.get('n')).toEqual(rec('n', 0));
    expect(r.children('n').map((v) => v.name)).toEqual(['s']);
    expect(r.nextFreeId()).toBe(2);
    expect(r.pending()).toBeUndefined();
  } finally {
    await r.close();
    fs.rmSync(d, { recursive: true });
  }
});

test('100,000 volumes: allocation stays cheap', async () => {
  const d = dir();
  const r = LmdbRegistry.open(d);
  try {
    for (let i = 0; i < 100_000; i += 1000) {
      const batch: VolumeRecord[] = [];
      const ids: number[] = [];
      for (let k = 0; k < 1000; k++) { ids.push(i + k); batch.push(rec(`v${i + k}`, i + k)); }
      r.commit({ takeIds: ids, put: batch });
    }
    expect(r.count()).toBe(100_000);
    expect(r.nextFreeId()).toBe(100_000);
    r.commit({ freeIds: [77_777] });
    expect(r.nextFreeId()).toBe(77_777);
    expect(r.get('v99999')).toMatchObject({ id: 99_999 });
  } finally {
    await r.close();
    fs.rmSync(d, { recursive: true });
  }
});

test('two registries on one folder in one process share the store: each sees the other, closing one leaves the other', async () => {
  const d = dir();
  const a = LmdbRegistry.open(d), b = LmdbRegistry.open(d);
  try {
    a.commit({ takeIds: [0], put: [rec('x', 0)] });
    expect(b.get('x')).toEqual(rec('x', 0));
    a.close();
    a.close();  // twice: still one reference dropped
    b.commit({ takeIds: [1], put: [rec('y', 1)] });
    expect(b.list().map((v) => v.name)).toEqual(['x', 'y']);
    const c = LmdbRegistry.open(d);
    expect(c.nextFreeId()).toBe(2);
    c.close();
  } finally {
    b.close();
    fs.rmSync(d, { recursive: true });
  }
});

// 141 Node starts: under emulation each costs seconds of CPU, and the test alone most of the emulated run. What
// it checks is LMDB's C (its reader table), the same source natively, where it always runs.
(emulated ? test.skip : test)('reader slots of killed processes are reclaimed: 140 readers SIGKILLed while one stays open, then a new open reads', async () => {
  const d = dir();
  const keeper = LmdbRegistry.open(d);  // a long-lived process with the registry open, as a runtime keeps it
  try {
    keeper.commit({ put: [rec('v', 0)], takeIds: [0] });
    expect(keeper.get('v')).toBeDefined();
    const lib = path.join(__dirname, '..', '..', 'lib');
    // Each reader opens the registry, reads (which takes an LMDB reader slot) and dies holding it.
    const script = `const r = require(${JSON.stringify(lib)}).LmdbRegistry.open(${JSON.stringify(d)}); r.get('v'); process.kill(process.pid, 'SIGKILL');`;
    const reader = () => new Promise<string | null>((resolve) => {
      const child = spawn(...childNode(['-e', script]), { stdio: 'ignore' });
      child.once('exit', (_code, signal) => resolve(signal));
    });
    // More than LMDB's 126 slots, 10 at a time.
    for (let i = 0; i < 140; i += 10) expect(await Promise.all(Array.from({ length: 10 }, reader))).toEqual(Array(10).fill('SIGKILL'));
    const check = `const r = require(${JSON.stringify(lib)}).LmdbRegistry.open(${JSON.stringify(d)}); process.stdout.write(JSON.stringify(r.get('v'))); r.close();`;
    expect(JSON.parse(execFileSync(...childNode(['-e', check]), { encoding: 'utf8' }))).toMatchObject({ name: 'v', id: 0 });
    expect(keeper.get('v')).toBeDefined();  // and the long-lived one still reads
  } finally {
    keeper.close();
    fs.rmSync(d, { recursive: true });
  }
}, bound(120_000));

// Everything a registry holds, as its reads give it.
function dump(r: LmdbRegistry): unknown {
  const vols = r.list();
  return { vols, children: vols.map((v) => [v.name, r.children(v.name).map((c) => c.name)]), pending: r.pending() ?? null, next: r.nextFreeId(), count: r.count() };
}

test('the promise forms (commitAsync, intendAsync: committed off the main thread) leave exactly what the sync forms leave', async () => {
  const name = fc.constantFrom('a', 'b', 'c', 'd', 'e');
  const id = fc.integer({ min: 0, max: 12 });
  const write: fc.Arbitrary<RegistryWrite> = fc.record({
    put: fc.array(fc.record({ name, id, parent: fc.option(name, { nil: null }) }).map((v) => ({ ...rec(v.name, v.id), parent: v.parent === v.name ? null : v.parent })), { maxLength: 2 }),
    remove: fc.array(name, { maxLength: 2 }),
    takeIds: fc.array(id, { maxLength: 3 }),
    freeIds: fc.array(id, { maxLength: 3 }),
    pending: fc.constantFrom(undefined, null),
  }, { requiredKeys: [] });
  const intent = fc.record({ name, fromTid: fc.integer({ min: 0, max: 3 }), withId: fc.option(id, { nil: undefined }) });
  const action = fc.oneof(write.map((w) => ({ w })), intent.map((i) => ({ i })));
  await fc.assert(fc.asyncProperty(fc.array(action, { maxLength: 12 }), async (actions) => {
    const d = dir();
    const syncReg = LmdbRegistry.open(path.join(d, 's')), asyncReg = LmdbRegistry.open(path.join(d, 'a'));
    try {
      for (const a of actions) {
        if ('w' in a) {
          syncReg.commit(a.w);
          await asyncReg.commitAsync(a.w);
        } else {
          const change = { op: 'create' as const, name: a.i.name, size: 8 as never, parent: null, fromTid: a.i.fromTid, toTid: a.i.fromTid + 1, ...(a.i.withId !== undefined && { id: a.i.withId }) };
          const effect = (n: number): RegistryWrite => ({ put: [rec(a.i.name, n)] });
          expect(await asyncReg.intendAsync(change, undefined, effect)).toEqual(syncReg.intend(change, undefined, effect));
        }
        expect(dump(asyncReg)).toEqual(dump(syncReg));
      }
    } finally {
      syncReg.close();
      asyncReg.close();
      fs.rmSync(d, { recursive: true });
    }
  }), { numRuns: fuzzRuns(60), seed: 17 });
}, bound(120_000));

test('a commit that lands while a promise-form write is on its way is never overwritten: the write is worked out again', async () => {
  const d = dir();
  const r = LmdbRegistry.open(d);
  try {
    for (let round = 0; round < 20; round++) {
      const a = `a${round}`, b = `b${round}`;
      const first = r.nextFreeId();
      // The batch is worked out now, from the last commit; its commit runs on the libuv pool.
      const pending = r.commitAsync({ put: [rec(a, first)], takeIds: [first] });
      r.commit({ put: [rec(b, first + 1)], takeIds: [first + 1] });  // lands first, or waits for it
      await pending;
      expect(r.get(a)).toMatchObject({ id: first });
      expect(r.get(b)).toMatchObject({ id: first + 1 });
      expect(r.nextFreeId()).toBe(first + 2);  // 'next' written by neither over the other
    }
    const change: Omit<PendingChange, 'id'> = { op: 'create', name: 'x', size: 8 as never, parent: null, fromTid: 5, toTid: 6 };
    const before = r.nextFreeId();
    const intended = r.intendAsync(change, undefined, (n) => ({ put: [rec('x', n)] }));
    // Another commit takes the id the intent worked out (it lands first: the intent is worked out again, on the
    // next id), or the one after it (the intent landed first: a slow main thread, as under emulation).
    const taken = r.nextFreeId();
    r.commit({ takeIds: [taken] });
    const got = await intended;
    expect('recorded' in got).toBe(true);
    const id = (got as { recorded: PendingChange }).recorded.id;
    expect([before, before + 1]).toContain(id);
    expect(r.get('x')).toMatchObject({ id });
    expect(r.pending()).toMatchObject({ id, name: 'x' });
    expect(r.nextFreeId()).toBe(Math.max(id, taken) + 1);  // both writes kept: neither id given back
  } finally {
    r.close();
    fs.rmSync(d, { recursive: true });
  }
});

test('close() while a promise-form write is on its way: the write finishes or fails typed, never a crash', async () => {
  for (let i = 0; i < 20; i++) {
    const d = dir();
    const r = LmdbRegistry.open(d);
    const p = r.commitAsync({ put: [rec('v', 0)], takeIds: [0] });
    r.close();
    const out = await p.then(() => 'written', (e: unknown) => (e as DevmapperError).code);
    expect(['written', 'ERR_DM_REGISTRY']).toContain(out);
    fs.rmSync(d, { recursive: true });
  }
});
