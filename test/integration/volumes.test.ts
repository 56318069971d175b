// ThinVolume against the real kernel: activate, write, snapshot (copy-on-write isolation), delete, resize.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DeviceMapper, DevmapperError, MessageOptions, ThinVolume, line, mapperPath, thin } from '../../lib';
import type { DeviceRef } from '../../lib';
import { eventually, uniqueName } from './helpers';
import { checksum, readAt, withPool, writeAt } from './thin-helpers';

const MiB = 1 << 20;

test('volumes and snapshots keep their data apart; deleting an origin leaves its snapshots intact', async () => {
  await withPool({}, async (pool) => {
    const base = await pool.createVolume(uniqueName('base'), 16 * MiB);
    expect(base).toMatchObject({ id: 0, size: 32768, parent: null });
    await base.activate();
    expect(fs.statSync(base.path).isBlockDevice()).toBe(true);
    expect(base.path).toBe(mapperPath(base.name));
    writeAt(base.path, 0, 'hello world, I am a base');
    writeAt(base.path, 8 * MiB, Buffer.alloc(MiB, 0xab));
    const baseSum = checksum(base.path, 16 * MiB);

    const snap1 = await pool.snapshot(base, uniqueName('snap1'));  // origin is active: suspended and resumed
    expect((await pool.dm.info(base.name)).suspended).toBe(false);
    expect(snap1).toMatchObject({ id: 1, parent: base.name, size: base.size });
    await snap1.activate();
    expect(checksum(snap1.path, 16 * MiB)).toBe(baseSum);
    writeAt(snap1.path, 0, 'I am snap1');
    const snap2 = await pool.snapshot(snap1.name, uniqueName('snap2'));
    await snap2.activate();
    writeAt(snap2.path, 4 * MiB, 'I am snap2');

    expect(readAt(base.path, 0, 24).toString()).toBe('hello world, I am a base');
    expect(readAt(snap1.path, 0, 10).toString()).toBe('I am snap1');
    expect(readAt(snap2.path, 0, 10).toString()).toBe('I am snap1');
    expect(readAt(snap2.path, 4 * MiB, 10).toString()).toBe('I am snap2');
    expect(readAt(snap1.path, 4 * MiB, 10)).toEqual(Buffer.alloc(10));
    expect(checksum(base.path, 16 * MiB)).toBe(baseSum);

    const u = await snap1.usage();
    expect(u.mappedSectors).toBeGreaterThan(0);
    expect(u.size).toBe(snap1.size);
    expect(await pool.tree()).toBe(`${base.name} (id 0)\n  ${snap1.name} (id 1)\n    ${snap2.name} (id 2)`);

    const snap2Sum = checksum(snap2.path, 16 * MiB);
    await snap1.delete();
    expect(await pool.dm.exists(snap1.name)).toBe(false);
    expect(pool.volume(snap1.name)).toBeUndefined();
    expect(checksum(snap2.path, 16 * MiB)).toBe(snap2Sum);
    expect(pool.volume(snap2.name)?.parent).toBe(base.name);  // re-parented to the deleted volume's parent
    const next = await pool.createVolume(uniqueName('reuse'), MiB);
    expect(next.id).toBe(1);  // the freed id is reused
    expect((await pool.status()).state === 'ok' && (await pool.transactionId())).toBe(5);
  });
});

test('a snapshot of an active origin resumes it whatever create_snap does: a taken id (EEXIST), a refusal (read-only pool)', async () => {
  await withPool({}, async (pool) => {
    const base = await (await pool.createVolume(uniqueName('base'), MiB)).activate();
    await pool.dm.message(pool.name, 0, 'create_thin 1');  // the next id, behind the registry's back
    const snap = await pool.snapshot(base, uniqueName('snap'));
    expect(snap.id).toBe(2);
    expect((await pool.dm.info(base.name)).suspended).toBe(false);
    await pool.setFeatures({ readOnly: true });
    await expect(pool.snapshot(base, uniqueName('refused'))).rejects.toMatchObject({ command: 'DM_TARGET_MSG', device: pool.name });
    expect((await pool.dm.info(base.name)).suspended).toBe(false);
    expect(pool.registry.list().map((v) => v.name).sort()).toEqual([base.name, snap.name].sort());
    expect(pool.registry.pending()).toBeUndefined();  // the refused change is gone, not left to recover
    await pool.setFeatures({ readOnly: false });
    writeAt(base.path, 0, 'still writable');
    expect(readAt(base.path, 0, 14).toString()).toBe('still writable');
    expect((await pool.snapshot(base, uniqueName('after'))).id).toBe(3);
  });
});

test('delete with discard gives a sparse data file its space back, except blocks a snapshot shares', async () => {
  await withPool({}, async (pool, dir) => {
    const allocated = () => fs.statSync(path.join(dir, 'data')).blocks * 512;
    const junk = crypto.randomBytes(8 * MiB);
    const vols = [];
    for (const n of ['plain', 'discard', 'origin']) {
      const v = await (await pool.createVolume(uniqueName(n), 16 * MiB)).activate();
      writeAt(v.path, 0, junk);
      vols.push(v);
    }
    const [plain, discarded, origin] = vols;
    await origin.deactivate();
    const snap = await pool.snapshot(origin, uniqueName('snap'));
    const written = allocated();
    await plain.delete();
    expect(allocated()).toBe(written);  // freed inside the pool only
    await discarded.delete({ discard: true });
    const afterDiscard = allocated();
    expect(afterDiscard).toBeLessThanOrEqual(written - 8 * MiB);
    await origin.delete({ discard: true });  // inactive: activated for the discard, then deleted
    expect(fs.existsSync(origin.path)).toBe(false);
    expect(allocated()).toBe(afterDiscard);  // the snapshot still maps those blocks
    await snap.activate();
    expect(readAt(snap.path, 0, 8 * MiB).equals(junk)).toBe(true);
    await snap.delete({ discard: true });
    expect(allocated()).toBeLessThanOrEqual(afterDiscard - 8 * MiB);
    expect(pool.registry.list()).toEqual([]);
  });
});

test('activate is undone if it fails; deactivate retries while busy, or defers', async () => {
  await withPool({}, async (pool) => {
    const v = await pool.createVolume(uniqueName('busy'), 4 * MiB);
    await v.activate();
    await v.activate();  // already active: no-op
    const fd = fs.openSync(v.path, 'r');
    const closer = setTimeout(() => fs.closeSync(fd), 200);
    await v.deactivate({ retries: 100, retryDelayMs: 20 });  // succeeds once the opener goes
    clearTimeout(closer);
    expect(await v.isActive()).toBe(false);
    await v.activate();
    const fd2 = fs.openSync(v.path, 'r');
    await expect(v.deactivate({ retries: 2, retryDelayMs: 5 })).rejects.toMatchObject({ code: 'EBUSY', command: 'DM_DEV_REMOVE' });
    await v.deactivate({ deferred: true });
    expect((await pool.dm.info(v.name)).deferredRemove).toBe(true);
    await v.cancelDeferredRemove();
    expect((await pool.dm.info(v.name)).deferredRemove).toBe(false);
    await v.deactivate({ deferred: true });
    fs.closeSync(fd2);
    expect(await eventually(async () => !(await pool.dm.exists(v.name)))).toBe(true);  // from a kernel workqueue
    // The pool refuses to delete an active thin: activating over a missing id fails and leaves nothing behind.
    await pool.deleteVolume(v.name);
    await expect(v.activate()).rejects.toMatchObject({ command: 'DM_TABLE_LOAD' });
    expect(await pool.dm.exists(v.name)).toBe(false);
  });
});

test('resize grows a live volume; list gives parents and active state', async () => {
  await withPool({}, async (pool) => {
    const v = await pool.createVolume(uniqueName('grow'), 4 * MiB);
    await v.activate();
    await v.resize(8 * MiB);
    expect(v.size).toBe(16384);
    expect(fs.statSync(v.path).isBlockDevice()).toBe(true);
    expect((await pool.dm.table(v.name))[0].length).toBe(16384);
    await expect(v.resize(MiB)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_SIZE' });
    const s = await pool.snapshot(v, uniqueName('lsnap'));
    expect((await pool.list()).map((e) => [e.name, e.parent, e.active])).toEqual([[v.name, null, true], [s.name, v.name, false]].sort());
    await v.deactivate();
  });
});

test('bad arguments give the documented typed errors, and change nothing', async () => {
  await withPool({}, async (pool) => {
    const v = await pool.createVolume(uniqueName('dup'), MiB);
    const tid = await pool.transactionId();
    for (const [call, code] of [
      [() => pool.createVolume('bad/name', MiB), 'ERR_DM_INVALID_NAME'],
      [() => pool.createVolume('x'.repeat(128), MiB), 'ERR_DM_INVALID_NAME'],
      [() => pool.createVolume(uniqueName('odd'), 1000), 'ERR_DM_INVALID_SIZE'],
      [() => pool.createVolume(uniqueName('neg'), -512), 'ERR_DM_INVALID_SIZE'],
      [() => pool.createVolume(uniqueName('zero'), 0), 'ERR_DM_INVALID_SIZE'],
      [() => pool.createVolume(v.name, MiB), 'ERR_DM_VOLUME_EXISTS'],
      [() => pool.createVolume(pool.name, MiB), 'ERR_DM_VOLUME_EXISTS'],
      [() => pool.snapshot('no-such-origin', uniqueName('s')), 'ERR_DM_NO_SUCH_VOLUME'],
      [() => pool.snapshot(v, v.name), 'ERR_DM_VOLUME_EXISTS'],
      [() => pool.deleteVolume('no-such-volume'), 'ERR_DM_NO_SUCH_VOLUME'],
    ] as const) {
      await expect(call()).rejects.toMatchObject({ code });
    }
    expect(await pool.transactionId()).toBe(tid);
    expect((await pool.list()).map((e) => e.name)).toEqual([v.name]);
  });
});

// A DeviceMapper that calls back when a pool `delete` message fails with EBUSY.
class WatchedDm extends DeviceMapper {
  busyDeletes = 0;
  onBusyDelete?: () => void;
  override async message(ref: DeviceRef, sector: number, text: string, o?: MessageOptions): Promise<string | undefined> {
    try {
      return await super.message(ref, sector, text, o);
    } catch (e) {
      if ((e as DevmapperError).code === 'EBUSY' && text.startsWith('delete ')) { this.busyDeletes++; this.onBusyDelete?.(); }
      throw e;
    }
  }
}

test('delete retries a thin id still held by a closing device (bounded): EBUSY and the record back if it stays, done once it goes', async () => {
  // The race a deferred remove leaves (the name gone, the thin still open a moment longer), made deterministic:
  // a second device on the volume's thin id plays the device that is still closing.
  const dm = new WatchedDm();
  try {
    await withPool({ dm }, async (pool) => {
      const v = await pool.createVolume(uniqueName('held'), MiB);
      const holder = uniqueName('holder');
      await dm.createDevice(holder, [line(thin, 0, v.size, { pool: pool.devSpec, deviceId: v.id })]);
      const tid = await pool.transactionId();

      // It stays: every retry is EBUSY, then the error, with the registry as it was (promise, then sync).
      await expect(pool.deleteVolume(v.name)).rejects.toMatchObject({ code: 'EBUSY', command: 'DM_TARGET_MSG' });
      expect(dm.busyDeletes).toBe(51);  // the first try and 50 retries
      expect(() => pool.deleteVolumeSync(v.name)).toThrow(expect.objectContaining({ code: 'EBUSY', command: 'DM_TARGET_MSG' }));
      expect(pool.volume(v.name)?.id).toBe(v.id);
      expect(pool.registry.pending()).toBeUndefined();
      expect(await pool.transactionId()).toBe(tid);

      // It goes after the first EBUSY: a retry deletes the thin.
      dm.busyDeletes = 0;
      dm.onBusyDelete = () => { if (dm.busyDeletes === 1) void dm.remove(holder); };
      await pool.deleteVolume(v.name);
      expect(dm.busyDeletes).toBeGreaterThanOrEqual(1);
      expect(pool.volume(v.name)).toBeUndefined();
      expect(await pool.transactionId()).toBe(tid + 1);
      await expect(dm.message(pool.name, 0, `delete ${v.id}`)).rejects.toMatchObject({ code: 'ENODATA' });  // gone from the pool
    });
  } finally {
    dm.close();
  }
});
