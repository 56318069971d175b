// The promise API's changes on the offload worker (lib/thin/offload.ts), against the real kernel: they run
// there and not on this thread, give the same results and the same typed errors, queue with this process's
// other calls, and a process that leaves its pool open still exits.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DevmapperError, ThinPool } from '../../lib';
import { native } from '../../lib/core/binding';
import { offloadWorkerState } from '../../lib/thin/offload';
import { poolLockFile } from '../../lib/thin/provisioning';
import { dmsetup, scratchDir, uniqueName } from './helpers';
import { readAt, withPool, writeAt } from './thin-helpers';

const MiB = 1 << 20;

/** Counts the calls made on this thread's DeviceMapper of the pool, by method. */
function countDmCalls(pool: ThinPool): Map<string, number> {
  const counts = new Map<string, number>();
  const dm = pool.dm as unknown as Record<string, unknown>;
  for (let o = Object.getPrototypeOf(dm); o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const m of Object.getOwnPropertyNames(o)) {
      const f = dm[m];
      if (m === 'constructor' || typeof f !== 'function' || Object.prototype.hasOwnProperty.call(dm, m)) continue;
      dm[m] = function (this: unknown, ...args: unknown[]) {
        counts.set(m, (counts.get(m) ?? 0) + 1);
        return (f as (...a: unknown[]) => unknown).apply(this, args);
      };
    }
  }
  return counts;
}

test('create, activate, snapshot, resize and delete through the promise API run on the worker, none of their ioctls here', async () => {
  await withPool({}, async (pool) => {
    const calls = countDmCalls(pool);
    const base = await pool.createVolume(uniqueName('base'), 8 * MiB);
    expect(base).toMatchObject({ id: 0, size: 16384, parent: null });
    expect(await base.activate()).toBe(base);
    writeAt(base.path, 0, 'written through the base');
    const snap = await pool.snapshot(base, uniqueName('snap'));  // an active origin: suspended and resumed there
    expect(snap).toMatchObject({ id: 1, parent: base.name, size: base.size });
    await snap.activate({ readOnly: true });
    expect(readAt(snap.path, 0, 24).toString()).toBe('written through the base');
    await base.resize(16 * MiB);
    expect(base.size).toBe(32768);
    expect(dmsetup('table', base.name).trim().split(' ')[1]).toBe('32768');
    expect((await pool.resizeVolume(snap.name, 12 * MiB)).size).toBe(24576);
    await snap.deactivate();
    expect(dmsetup('ls')).not.toContain(snap.name);
    await snap.delete();
    await pool.deleteVolume(base.name, { deactivate: {} });
    expect([...calls.keys()]).toEqual([]);

    expect(pool.volume(base.name)).toBeUndefined();
    expect(dmsetup('ls')).not.toContain(base.name);
    expect(await pool.list()).toEqual([]);
    expect(await pool.transactionId()).toBe(4);
    expect(pool.registry.pending()).toMatchObject({ op: 'delete', name: base.name });  // this process's last change, left
    expect(await pool.check()).toMatchObject({ clean: true });
  });
});

test('errors from the worker are DevmapperErrors with their fields; bad input is refused here', async () => {
  await withPool({}, async (pool, dir) => {
    const v = await (await pool.createVolume(uniqueName('v'), MiB)).activate();
    const dup = await pool.createVolume(v.name, MiB).catch((e) => e);
    expect(dup).toBeInstanceOf(DevmapperError);
    expect(dup).toMatchObject({ code: 'ERR_DM_VOLUME_EXISTS', device: v.name });
    expect(dup.stack).toContain(dup.message);
    await expect(pool.snapshot('nothing-here', uniqueName('s'))).rejects.toMatchObject({ code: 'ERR_DM_NO_SUCH_VOLUME' });
    const fd = fs.openSync(v.path, 'r');
    try {
      const busy = await v.delete().catch((e) => e);
      expect(busy).toBeInstanceOf(DevmapperError);
      expect(busy.holders).toMatchObject({ openCount: 1 });
      expect(['EBUSY', 'ERR_DM_BUSY']).toContain(busy.code);
    } finally {
      fs.closeSync(fd);
    }
    expect(pool.volume(v.name)).toBeDefined();
    expect(dmsetup('info', '-c', '--noheadings', '-o', 'name', v.name).trim()).toBe(v.name);

    await expect(pool.createVolume('a/b', MiB)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_NAME' });
    await expect(pool.createVolume(uniqueName('v'), 1.5)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_SIZE' });
    await expect(pool.createVolume(uniqueName('v'), MiB, { bogus: 1 } as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    await expect(v.activate({ readOnly: 'yes' } as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    // Options a structured clone would not carry (a getter) run here, as before: same checks, same result.
    const withGetter = Object.defineProperty({}, 'deactivate', { enumerable: true, get: () => ({}) });
    await pool.deleteVolume(v.name, withGetter);
    expect(pool.volume(v.name)).toBeUndefined();
    await withPool({ name: uniqueName('other'), dataFile: path.join(dir, 'other') }, async (other) => {
      const theirs = await other.createVolume(uniqueName('theirs'), MiB);
      await expect(pool.snapshot(theirs, uniqueName('s'))).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    });
  });
});

test('promise changes queue in order with this process\'s other calls; a sync twin refuses while they are in flight', async () => {
  await withPool({}, async (pool) => {
    const names = Array.from({ length: 12 }, () => uniqueName('q'));
    const made = Promise.all(names.map((n) => pool.createVolume(n, MiB)));
    expect(() => pool.createVolumeSync(uniqueName('sync'), MiB)).toThrow(expect.objectContaining({ code: 'ERR_DM_IN_PROGRESS' }));
    const vols = await made;
    expect(vols.map((v) => v.id)).toEqual(names.map((_, i) => i));
    // Sync and promise changes, one after the other, share the last committed change and the ids.
    const s = pool.createVolumeSync(uniqueName('sync'), MiB);
    expect(s.id).toBe(12);
    await Promise.all(vols.map((v) => v.delete()));
    pool.deleteVolumeSync(s.name);
    expect(await pool.transactionId()).toBe(26);
    expect(await pool.check()).toMatchObject({ clean: true });
  });
});

test('with the lock file held elsewhere, a change waits for it and then runs', async () => {
  await withPool({}, async (pool) => {
    const fd = native.lockFile(poolLockFile(pool.name, pool.registryDir));  // as another process would hold it
    let done = false;
    const made = pool.createVolume(uniqueName('late'), MiB).then((v) => { done = true; return v; });
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toBe(false);
    expect(await pool.list()).toEqual([]);
    expect(() => pool.createVolumeSync(uniqueName('sync'), MiB)).toThrow(expect.objectContaining({ code: 'ERR_DM_IN_PROGRESS' }));
    fs.closeSync(fd);
    expect((await made).id).toBe(0);
    expect(await pool.transactionId()).toBe(1);
  });
});

test('a process that leaves its pool open exits once its promise calls are done', async () => {
  await withPool({}, async (pool) => {
    const lib = path.resolve(__dirname, '../../lib');
    const script = `
      const { ThinPool } = require(${JSON.stringify(lib)});
      (async () => {
        const pool = await ThinPool.open(${JSON.stringify(pool.name)}, { check: false });
        const v = await pool.createVolume('left-open', '1M');
        await v.activate();
        await v.delete();
        // Another handle opened and closed: the worker, now idle, is kept a while, and does not hold the exit.
        await (await ThinPool.open(${JSON.stringify(pool.name)}, { check: false })).close();
        console.log('done ' + v.id);
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('done 0');
    expect(pool.volume('left-open')).toBeUndefined();
  });
});

test('a pool opened by the promise API starts the worker before its first change; a closed one leaves it idle a while, for the next', async () => {
  const dir = scratchDir();
  const name = uniqueName('warm');
  const created = ThinPool.createSync({ name, dataFile: path.join(dir, 'data'), dataSize: '64M' });  // a sync twin does not start it
  expect(offloadWorkerState()).toMatchObject({ pools: 0, calls: 0 });
  let last: ThinPool | undefined = created;  // an open handle, for the cleanup
  try {
    const opened = await ThinPool.open(name, { check: false });
    const warm = offloadWorkerState();
    expect(warm.threadId).toBeGreaterThan(0);
    expect(warm).toMatchObject({ pools: 1, calls: 0, idle: false });
    const v = await opened.createVolume('v', MiB);
    expect(offloadWorkerState()).toEqual(warm);  // the same thread ran it
    await opened.close();
    // A closed handle's change is refused on this thread, as its sync twin's is; the worker makes no shadow.
    const late = await opened.createVolume('late', MiB).catch((e) => e);
    expect(late).toBeInstanceOf(DevmapperError);
    expect(late.code).toBe((() => { try { opened.createVolumeSync('late', MiB); } catch (e) { return (e as DevmapperError).code; } })());
    expect(offloadWorkerState()).toMatchObject({ pools: 0 });
    expect(created.volume('late')).toBeUndefined();
    created.closeSync();
    last = undefined;
    // close() sends the shadow's drop without waiting for its answer; once answered, the worker is idle.
    for (let i = 0; i < 500 && offloadWorkerState().calls > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(offloadWorkerState()).toEqual({ threadId: warm.threadId, pools: 0, calls: 0, idle: true, holdsLock: false });
    last = await ThinPool.open(name, { check: false });
    expect(offloadWorkerState()).toEqual({ threadId: warm.threadId, pools: 1, calls: 0, idle: false, holdsLock: false });
    await last.deleteVolume(v.name);
    expect(last.volume(v.name)).toBeUndefined();
    expect(last.registry.count()).toBe(0);
  } finally {
    await (last ?? ThinPool.openSync(name, { check: false })).destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the arguments are taken when the call is made: a change to them while the call waits does not reach it', async () => {
  await withPool({}, async (pool) => {
    const v = await pool.createVolume(uniqueName('v'), MiB);
    const o = { readOnly: false };
    const ahead = pool.createVolume(uniqueName('w'), MiB);  // queued first: the activate waits behind it
    const activating = v.activate(o);
    o.readOnly = true;
    await ahead;
    await activating;
    expect((await pool.dm.info(v.name)).readOnly).toBe(false);
    await v.deactivate();
  });
});

test('a pool opened with offload: false runs its promise changes on the calling thread', async () => {
  await withPool({}, async (pool) => {
    const before = offloadWorkerState();
    const here = await ThinPool.open(pool.name, { check: false, offload: false });
    try {
      expect(offloadWorkerState().pools).toBe(before.pools);  // not started for it
      const calls = countDmCalls(here);
      const v = await (await here.createVolume(uniqueName('here'), MiB)).activate();
      await v.delete();
      expect([...calls.values()].reduce((a, b) => a + b, 0)).toBeGreaterThan(3);  // its ioctls, here
      expect(here.volume(v.name)).toBeUndefined();
      expect(dmsetup('ls')).not.toContain(v.name);
    } finally {
      await here.close();
    }
  });
});
