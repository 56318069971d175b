// The offload worker dying in the middle of a change (lib/thin/offload.ts), against the real kernel: that call
// fails with ERR_DM_INTERNAL, the pool's lock it held is released as a dead process's would be, and the change
// queued behind it runs on this thread in its place. Its own file: once a worker has died, this process's later calls all run on the calling thread.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DevmapperError, ThinPool } from '../../lib';
import { native } from '../../lib/core/binding';
import { offloadWorkerState, stopOffloadWorker } from '../../lib/thin/offload';
import { poolLockFile } from '../../lib/thin/provisioning';
import { uniqueName } from './helpers';
import { withPool } from './thin-helpers';

const MiB = 1 << 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a worker that dies inside a change: the call fails, its lock is released, the change queued behind runs here', async () => {
  await withPool({}, async (pool) => {
    const v = await (await pool.createVolume(uniqueName('v'), MiB)).activate();
    const fd = fs.openSync(v.path, 'r');  // the volume is busy: the delete retries EBUSY (1 s), holding the lock
    let deleting: Promise<unknown> | undefined;
    try {
      deleting = v.delete().then(() => 'deleted', (e) => e);
      const after = pool.createVolume(uniqueName('after'), MiB);  // queued behind the delete
      // The worker holds the pool's lock file and retries the REMOVE.
      for (let i = 0; i < 1000 && !offloadWorkerState().holdsLock; i++) await sleep(5);
      expect(offloadWorkerState()).toMatchObject({ holdsLock: true, calls: 1 });
      const lockFile = poolLockFile(pool.name, pool.registryDir);
      expect(native.tryLockFile(lockFile)).toBe(-1);
      await stopOffloadWorker();

      const failed = await deleting;
      expect(failed).toBeInstanceOf(DevmapperError);
      expect(failed).toMatchObject({ code: 'ERR_DM_INTERNAL' });
      expect((failed as Error).message).toContain('finished or undone by the next change or open()');
      // The queued change ran here, under the lock the dead worker no longer holds.
      const made = await after;
      expect(made).toMatchObject({ id: 1 });
      expect(offloadWorkerState()).toMatchObject({ pools: 0, calls: 0 });
      const free = native.tryLockFile(lockFile);
      expect(free).toBeGreaterThanOrEqual(0);
      fs.closeSync(free);
    } finally {
      fs.closeSync(fd);
    }
    // Later calls run on this thread, and work.
    await v.delete();
    expect(pool.volume(v.name)).toBeUndefined();
    expect((await pool.list()).map((x) => x.name)).toEqual([expect.stringContaining('after')]);
    expect(await pool.check()).toMatchObject({ clean: true });
  });
});

test('a worker ended (by process.exit() or terminate) inside a change never aborts the process', async () => {
  await withPool({}, async (pool) => {
    const v = await (await pool.createVolume(uniqueName('held'), MiB)).activate();
    // Held open here: each child's delete retries EBUSY on its worker (20 tries, 50 ms apart), and the worker
    // is ended in the middle: inside an ioctl or the making of its error, a terminated thread once aborted
    // the whole process.
    const fd = fs.openSync(v.path, 'r');
    try {
      const lib = path.resolve(__dirname, '../../lib');
      for (const [how, delay] of [['stop', 80], ['exit', 80], ['stop', 230], ['exit', 230], ['stop', 410], ['exit', 410], ['stop', 640], ['exit', 640]] as const) {
        const script = `
          const { ThinPool } = require(${JSON.stringify(lib)});
          const { stopOffloadWorker } = require(${JSON.stringify(path.join(lib, 'thin/offload'))});
          (async () => {
            const pool = await ThinPool.open(${JSON.stringify(pool.name)}, { check: false });
            const deleting = pool.volume(${JSON.stringify(v.name)}).delete().then(() => 'deleted', (e) => e.code);
            await new Promise((r) => setTimeout(r, ${delay}));
            if (${JSON.stringify(how)} === 'exit') process.exit(7);
            await stopOffloadWorker();
            console.log(await deleting);
            process.exit(7);
          })().catch((e) => { console.error(e); process.exit(1); });`;
        const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
        expect({ how, delay, signal: r.signal, status: r.status, stderr: r.stderr }).toEqual({ how, delay, signal: null, status: 7, stderr: '' });
        if (how === 'stop') expect(['ERR_DM_INTERNAL', 'EBUSY', 'ERR_DM_BUSY']).toContain(r.stdout.trim());
      }
    } finally {
      fs.closeSync(fd);
    }
    const free = native.tryLockFile(poolLockFile(pool.name, pool.registryDir));
    expect(free).toBeGreaterThanOrEqual(0);
    fs.closeSync(free);
    const again = await ThinPool.open(pool.name);
    try {
      expect(again.drift).toMatchObject({ clean: true });
      expect(again.volume(v.name)).toBeDefined();
    } finally {
      await again.close();
    }
  });
});
