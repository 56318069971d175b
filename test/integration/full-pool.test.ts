// A full pool, as a new user meets one: its metadata full (the pool turns read-only), its data full in
// error_if_no_space mode and in queue_if_no_space mode with writes held back. Every ThinPool call either works
// or fails with a typed error naming the pool's mode or the space that is short, and returns; the remedy
// (growData, growMetadata) works from a freshly opened handle; the registry stays consistent (check() clean)
// and data written before reads back the same once space is added.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DeviceMapper, DevmapperError, PoolEvent, ThinPool } from '../../lib';
import { eventually } from './helpers';
import { checksum, withPool, writeAt } from './thin-helpers';

// The queue-mode case waits out the library's suspend bound and writes through a slow VM.
jest.setTimeout(300_000);

const MiB = 2 ** 20;
const NO_SPACE_TIMEOUT = '/sys/module/dm_thin_pool/parameters/no_space_timeout';

async function rejection(p: Promise<unknown>): Promise<DevmapperError> {
  try {
    await p;
  } catch (e) {
    return e as DevmapperError;
  }
  throw new Error('expected a rejection');
}

async function mode(pool: ThinPool): Promise<string> {
  const s = await pool.status({ noflush: true });
  return s.state === 'ok' ? s.mode : s.state;
}

// Writes `data` to `device` with O_DIRECT from a child process (dd): a write the kernel holds back blocks the
// child, never jest. Resolves with dd's exit code.
function writeInChild(device: string, file: string): { exited: Promise<number | null>; pid: number } {
  const child = spawn('dd', [`if=${file}`, `of=${device}`, 'bs=1M', 'oflag=direct'], { stdio: 'ignore' });
  return { exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))), pid: child.pid! };
}

test('a pool on the default metadata size gets max(32 MiB, 2 % of its data)', async () => {
  await withPool({ dataSize: '64M' }, async (pool) => {
    expect(fs.statSync(pool.files.metadata!).size).toBe(32 * MiB);
  });
});

test('metadata full: creates fail typed (mode ro), open() still works with its recovery deferred, check() reads it, growMetadata from a fresh handle brings it back', async () => {
  await withPool({ dataSize: '64M', metadataSize: '512K' }, async (pool) => {
    const v0 = await pool.createVolume('v0', '4M');
    await v0.activate();
    const pattern = crypto.randomBytes(MiB);
    writeAt(v0.path, 0, pattern);
    const before = checksum(v0.path, 4 * MiB);
    await v0.deactivate();

    // The pool's events see the metadata run low, then the pool turn read-only.
    const events: PoolEvent[] = [];
    const onEvent = (e: PoolEvent) => { events.push(e); };
    for (const t of ['metadataLow', 'mode'] as const) pool.on(t, onEvent);
    let full: DevmapperError | undefined;
    for (let i = 1; i < 2000 && !full; i++) {
      try { await pool.createVolume(`v${i}`, '4M'); } catch (e) { full = e as DevmapperError; }
    }
    expect(full).toMatchObject({ code: 'ERR_DM_POOL_STATE', mode: 'ro' });
    expect(full!.message).toMatch(/metadata is full.*growMetadata/);
    expect(await mode(pool)).toBe('ro');
    expect(await eventually(async () => events.some((e) => e.type === 'mode' && e.from === 'rw' && e.to === 'ro'))).toBe(true);
    const low = events.find((e) => e.type === 'metadataLow');
    expect(low).toBeDefined();
    if (low?.type === 'metadataLow') expect(low.freeBlocks).toBeLessThanOrEqual(low.lowWatermark);
    for (const t of ['metadataLow', 'mode'] as const) pool.off(t, onEvent);

    // A create cut after its intent (as a killed process leaves it): a recovery the read-only pool refuses.
    // (The create that failed may have left one already: its create_thin ran, its commit was refused.)
    const cut = await ThinPool.open(pool.name, { check: false, hooks: { step: (s) => { if (s === 'intent') throw new Error('cut'); } } });
    const leftBehind = (await cut.check()).unfinished;
    if (!leftBehind) await expect(cut.createVolume('cut', '4M')).rejects.toThrow('cut');
    await cut.close();
    const pendingName = leftBehind?.name ?? 'cut';

    // A fresh handle: open() works, says what it could not finish and why.
    const fresh = await ThinPool.open(pool.name);
    try {
      expect(fresh.deferredRecovery).toMatchObject({ change: { op: 'create', name: pendingName }, error: { code: 'ERR_DM_POOL_STATE', mode: 'ro' } });
      expect(fresh.drift).toMatchObject({ mode: 'ro', unfinished: { name: pendingName } });
      expect(fresh.driftError).toBeUndefined();
      // Every change answers with the mode, and returns.
      expect(await rejection(fresh.createVolume('more', '4M'))).toMatchObject({ code: 'ERR_DM_POOL_STATE', mode: 'ro' });
      expect(await rejection(fresh.snapshot('v0', 'v0-snap'))).toMatchObject({ code: 'ERR_DM_POOL_STATE', mode: 'ro' });
      expect(await rejection(fresh.deleteVolume('v1'))).toMatchObject({ code: 'ERR_DM_POOL_STATE', mode: 'ro' });
      expect(fresh.volume('v1')).toBeDefined();

      // The remedy, from the fresh handle: the kernel switches the pool back to write mode when it resumes.
      await fresh.growMetadata('2M');
      expect(await mode(fresh)).toBe('rw');
      await fresh.createVolume('after', '4M');  // finishes the deferred change first
      expect(fresh.volume(pendingName)).toBeUndefined();
      await fresh.deleteVolume('v1');
      const check = await fresh.check();
      expect(check).toMatchObject({ clean: true, mode: 'rw', unfinished: null });

      await v0.activate();
      expect(checksum(v0.path, 4 * MiB)).toBe(before);
      await v0.deactivate();
    } finally {
      await fresh.close();
    }
    // And a pool opened now has nothing deferred.
    const again = await ThinPool.open(pool.name);
    expect(again.deferredRecovery).toBeNull();
    expect(again.drift?.clean).toBe(true);
    await again.close();
  });
});

test('data full, error_if_no_space: writes fail fast; a snapshot of the active origin is ERR_DM_POOL_FULL; creates work; minFreeSpace refuses them; growData from a fresh handle brings it back', async () => {
  await withPool({ dataSize: '16M', errorIfNoSpace: true, skipBlockZeroing: true }, async (pool) => {
    const v = await pool.createVolume('v', '64M');
    await v.activate();
    try {
      const head = crypto.randomBytes(4 * MiB);
      writeAt(v.path, 0, head);
      const fd = fs.openSync(v.path, 'r+');
      let failure: NodeJS.ErrnoException | undefined;
      try {
        for (let off = 4 * MiB; off < 64 * MiB && !failure; off += MiB) {
          try { fs.writeSync(fd, Buffer.alloc(MiB, 7), 0, MiB, off); fs.fsyncSync(fd); } catch (e) { failure = e as NodeJS.ErrnoException; }
        }
      } finally {
        try { fs.closeSync(fd); } catch { /* the close may report the same error */ }
      }
      expect(failure?.code).toMatch(/EIO|ENOSPC/);
      expect(await mode(pool)).toBe('out_of_data_space');

      const snap = await rejection(pool.snapshot('v', 'v-snap'));
      expect(snap).toMatchObject({ code: 'ERR_DM_POOL_FULL', space: 'data', freeBytes: 0, mode: 'out_of_data_space' });
      expect(snap.message).toMatch(/out of data space.*growData/);
      expect(pool.volume('v-snap')).toBeUndefined();
      expect((await pool.dm.info(v.path.split('/').pop()!)).suspended).toBe(false);

      // create_thin works in out_of_data_space, and so does a snapshot of an inactive volume.
      await pool.createVolume('w', '4M');
      await pool.snapshot('w', 'w-snap');

      // The guard: saved beside the registry, so a handle opened later applies it.
      await pool.setMinFreeSpace({ data: '10%' });
      const fresh = await ThinPool.open(pool.name);
      try {
        expect(fresh.minFreeSpace).toEqual({ data: '10%' });
        const guarded = await rejection(fresh.createVolume('x', '4M'));
        expect(guarded).toMatchObject({ code: 'ERR_DM_POOL_FULL', space: 'data', freeBytes: 0 });
        expect(guarded.message).toMatch(/0 bytes of data space are free.*minFreeSpace of 10%/);
        expect(fresh.volume('x')).toBeUndefined();
        expect(() => fresh.createVolumeSync('x', '4M')).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_FULL', space: 'data' }));

        await fresh.growData('64M');
        expect(await mode(fresh)).toBe('rw');
        await fresh.createVolume('x', '4M');  // 48 MiB of 64 free: above 10 %
        await fresh.snapshot('v', 'v-snap');  // the active origin
        await fresh.setMinFreeSpace(null);
        expect(fresh.minFreeSpace).toBeUndefined();
        expect(await fresh.check()).toMatchObject({ clean: true, mode: 'rw' });
      } finally {
        await fresh.close();
      }
      expect(checksum(v.path, 4 * MiB)).toBe(crypto.createHash('sha256').update(head).digest('hex'));
    } finally {
      await v.deactivate();
    }
  });
});

test('data full, queue_if_no_space with no_space_timeout=0: nothing hangs, the held writer is not failed, growData is not blocked, data reads back', async () => {
  const savedTimeout = fs.readFileSync(NO_SPACE_TIMEOUT, 'utf8').trim();
  fs.writeFileSync(NO_SPACE_TIMEOUT, '0');
  try {
    await withPool({ dataSize: '16M', skipBlockZeroing: true }, async (pool, dir) => {
      const v = await pool.createVolume('v', '64M');
      await v.activate();
      const name = path.basename(v.path);
      const file = path.join(dir, 'pattern');
      fs.writeFileSync(file, crypto.randomBytes(20 * MiB));
      const writer = writeInChild(v.path, file);
      let writerDone = false;
      void writer.exited.then(() => { writerDone = true; });
      try {
        expect(await eventually(async () => (await mode(pool)) === 'out_of_data_space', 120_000)).toBe(true);
        expect(writerDone).toBe(false);  // held back, not failed

        // The snapshot is refused before any suspend: it returns, typed, and the origin runs on.
        expect(await rejection(pool.snapshot(v, 'v-snap'))).toMatchObject({ code: 'ERR_DM_POOL_FULL', space: 'data', mode: 'out_of_data_space' });
        expect(pool.volume('v-snap')).toBeUndefined();
        // A flushing suspend of the origin waits on the held writes: bounded, it gives up and the kernel undoes it.
        const dm = new DeviceMapper();
        try {
          expect(await rejection(dm.suspend(name, { timeoutMs: 1000 }))).toMatchObject({ code: 'ERR_DM_TIMEOUT', command: 'DM_DEV_SUSPEND' });
          expect(() => dm.suspendSync(name, { timeoutMs: 1000 })).toThrow(expect.objectContaining({ code: 'ERR_DM_TIMEOUT' }));
          expect((await dm.info(name)).suspended).toBe(false);
        } finally {
          dm.close();
        }

        // A resize of the active volume suspends it: it gives up (typed) within the library's bound, and
        // growData from another handle, queued behind it on the pool's lock, runs once it has.
        const resizing = rejection(pool.resizeVolume('v', '128M'));
        const fresh = await ThinPool.open(pool.name, { check: false });
        try {
          const growing = fresh.growData('64M');
          expect(await resizing).toMatchObject({ code: 'ERR_DM_POOL_FULL', space: 'data', mode: 'out_of_data_space' });
          await growing;
          expect(await mode(fresh)).toBe('rw');
          expect(fresh.volume('v')?.size).toBe(64 * MiB / 512);
          expect(await writer.exited).toBe(0);
          await fresh.snapshot('v', 'v-snap');
          expect(await fresh.check()).toMatchObject({ clean: true, mode: 'rw' });
        } finally {
          await fresh.close();
        }
        expect(checksum(v.path, 20 * MiB)).toBe(crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
      } finally {
        if (!writerDone) {
          // Never leave a writer held: error_if_no_space fails what is queued.
          try { await pool.setFeatures({ errorIfNoSpace: true }); } catch { /* reported by the test's own failure */ }
          await writer.exited;
        }
        await v.deactivate();
      }
    });
  } finally {
    fs.writeFileSync(NO_SPACE_TIMEOUT, savedTimeout);
  }
});
