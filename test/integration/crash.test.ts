// Kills aimed at the points where a SIGKILL used to leave something the library could not put right by
// itself: inside a snapshot of an active origin, inside activate, inside a delete with discard, inside
// resize, inside ThinPool.create, attach and destroy. A worker process is SIGKILLed there (for real); then
// the library alone must finish or undo what it left: open(), attach() or create() again, nothing else.
import fs from 'node:fs';
import path from 'node:path';
import { DeviceMapper, DevmapperError, ThinPool } from '../../lib';
import { scratchDir, scratchLoop, uniqueName } from './helpers';
import { Journal, checkAfterKill, leftovers, pattern, PATTERN_BYTES, runWorker } from './crash-helpers';
import { readAt, writeAt } from './thin-helpers';

async function poolWithPatternedVolume(dir: string): Promise<{ pool: ThinPool; journal: Journal; base: string }> {
  const journal = new Journal(path.join(dir, 'journal'));
  const pool = await ThinPool.create({ name: uniqueName('crash'), dataFile: path.join(dir, 'data'), dataSize: '128M' });
  const base = uniqueName('base');
  const v = await pool.createVolume(base, '8M');
  await v.activate();
  writeAt(v.path, 0, pattern(base));
  journal.written(base);
  await v.deactivate();
  return { pool, journal, base };
}

function noLeftovers(tag: string): string[] {
  const dm = new DeviceMapper();
  try { return leftovers(dm, tag); } finally { dm.close(); }
}

async function expectClean(poolName: string, journal: Journal): Promise<ThinPool> {
  const { problems, pool } = await checkAfterKill(poolName, journal);
  expect(problems).toEqual([]);
  return pool;
}

describe('a worker killed inside an operation: open() finishes or undoes it', () => {
  test.each([
    ['snapshot-active@batch:1', 'after suspending the origin'],
    ['snapshot-active@batch:2', 'after create_snap, before the origin is resumed'],
    ['activate@createDevice:create', 'after CREATE (no table)'],
    ['activate@createDevice:load', 'after LOAD (inactive table only)'],
    ['activate-nonode@createDevice:resume', 'after RESUME, before /dev/mapper/<name> is made'],
    ['deactivate-nonode@remove', 'after REMOVE, before /dev/mapper/<name> is removed'],
    ['delete-discard@before-remove', 'after the discard, before the deactivation'],
    ['delete-discard@remove', 'after the deactivation, before the delete message'],
    ['resize@load', 'after the new table is loaded'],
    ['resize@suspend', 'after the volume is suspended'],
    ['grow@load', "after the pool's grown table is loaded"],
    ['grow@suspend', 'after the pool is suspended'],
  ])('%s (%s)', async (point) => {
    const dir = scratchDir();
    const { pool, journal, base } = await poolWithPatternedVolume(dir);
    try {
      expect(await runWorker(['aimed', pool.name, point, journal.file])).toBe('SIGKILL');
      const reopened = await expectClean(pool.name, journal);
      try {
        const [what] = point.split('@');
        const origin = reopened.volume(base);
        if (what === 'delete-discard') {
          // The delete had begun (its data may be discarded): it is finished, never listed with zeros.
          expect(origin).toBeUndefined();
        } else {
          expect(origin).toBeDefined();
          // The origin serves I/O (not suspended) and still holds its data.
          await origin!.activate();
          expect(readAt(origin!.path, 0, PATTERN_BYTES).equals(pattern(base))).toBe(true);
          if (what === 'snapshot-active') expect(reopened.volume('aimed-snap')).toBeUndefined();  // not committed: rolled back
          if (what === 'grow') {
            // The pool serves I/O again with its old table; asking for the same size finishes the growth.
            expect((await reopened.dm.info(reopened.name)).suspended).toBe(false);
            const before = (await reopened.dm.table(reopened.name))[0].length;
            await reopened.growData(fs.statSync(reopened.files.data!).size);
            expect((await reopened.dm.table(reopened.name))[0].length).toBe(before + 64 * 2048);
          }
          if (what === 'resize') {
            const info = await reopened.dm.info(base);
            expect(info.suspended).toBe(false);
            expect((await reopened.dm.table(base))[0].length).toBe(origin!.size);
          }
          // Activation works again, and a new snapshot of it reads its data.
          const snap = await reopened.snapshot(base, uniqueName('after'));
          await snap.activate();
          expect(readAt(snap.path, 0, PATTERN_BYTES).equals(pattern(base))).toBe(true);
          await snap.deactivate();
          await origin!.deactivate();
        }
      } finally {
        await reopened.close();
      }
    } finally {
      await pool.destroy({ deleteFiles: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ThinPool.create killed part-way: create again, or open, puts it right; nothing is left', () => {
  test.each([
    ['fs:truncateSync:1', 'after the data file is made'],
    ['createDevice:create', 'after the pool device is created (no table)'],
    ['createDevice:load', 'after its table is loaded, before resume'],
    ['createDevice:resume', 'after the pool is live, before its registry'],
  ])('%s (%s)', async (point) => {
    const dir = scratchDir();
    const name = uniqueName('mk');
    const o = { name, dataFile: path.join(dir, 'data'), dataSize: '64M' };
    const dm = new DeviceMapper();
    try {
      expect(await runWorker(['create', point, JSON.stringify(o)])).toBe('SIGKILL');
      let pool: ThinPool;
      if (point === 'createDevice:resume') {
        pool = await ThinPool.open(name);  // the pool was made: open finds it (and its registry)
        expect(fs.existsSync(`${o.dataFile}.incomplete`)).toBe(false);
      } else {
        if (point !== 'fs:truncateSync:1') {
          // A pool device with no live table: open says what happened instead of misreading it.
          await expect(ThinPool.open(name)).rejects.toMatchObject({ code: 'ERR_DM_POOL_STATE' });
        }
        await expect(ThinPool.attach({ name, dataFile: o.dataFile })).rejects.toBeInstanceOf(DevmapperError);  // the files are no whole pool
        pool = await ThinPool.create(o);
      }
      const v = await pool.createVolume('v', '4M');
      await v.activate();
      await v.deactivate();
      await pool.destroy({ deleteFiles: true });
      expect(leftovers(dm, name)).toEqual([]);
      expect(fs.readdirSync(dir)).toEqual([]);
    } finally {
      dm.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('resizing a volume activated read-only keeps it read-only', async () => {
  const dir = scratchDir();
  const { pool, base } = await poolWithPatternedVolume(dir);
  try {
    const v = await pool.volume(base)!.activate({ readOnly: true });
    await v.resize((v.size + 2048) * 512);
    const info = await pool.dm.info(base);
    expect(info.readOnly).toBe(true);
    expect((await pool.dm.table(base))[0].length).toBe(v.size);
    await v.deactivate();
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('ThinPool.attach brings a pool back from its files', () => {
  test('after destroy() kept the files: same volumes, same data, same settings', async () => {
    const dir = scratchDir();
    const { pool, journal, base } = await poolWithPatternedVolume(dir);
    const name = pool.name;
    await pool.setLowWaterMark(7);
    await pool.destroy();  // keeps the files
    const dataFile = path.join(dir, 'data');
    const back = await ThinPool.attach({ name, dataFile });
    try {
      expect(back.params.lowWaterMark).toBe(7);
      expect(back.registry.list().map((v) => v.name)).toEqual([base]);
      const again = await ThinPool.attach({ name, dataFile });  // already active on these files: opened
      await again.close();
      await expectClean(name, journal).then((p) => p.close());
    } finally {
      await back.destroy({ deleteFiles: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a pool on block devices comes back too (dataDevice, metadataDevice, registryDir)', async () => {
    const meta = scratchLoop(8 << 20), data = scratchLoop(64 << 20);
    const dir = scratchDir();
    const o = { name: uniqueName('battach'), metadataDevice: meta.path, dataDevice: data.path, registryDir: path.join(dir, 'reg') };
    try {
      const pool = await ThinPool.create(o);
      const v = await (await pool.createVolume('bv', '4M')).activate();
      writeAt(v.path, 0, pattern('bv'));
      await v.deactivate();
      await pool.destroy();
      // The metadata device's page cache still holds the zeros create() wrote: attach must read past it.
      const back = await ThinPool.attach(o);
      try {
        const again = await ThinPool.attach(o);  // already active on these devices: opened
        await again.close();
        const bv = await back.volume('bv')!.activate();
        expect(readAt(bv.path, 0, PATTERN_BYTES).equals(pattern('bv'))).toBe(true);
        await bv.deactivate();
        await expect(ThinPool.attach({ ...o, dataDevice: meta.path })).rejects.toMatchObject({ code: 'ERR_DM_POOL_EXISTS' });
      } finally {
        await back.destroy({ deleteFiles: true });
      }
      expect(fs.existsSync(o.registryDir)).toBe(false);
    } finally {
      meta.detach();
      data.detach();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each(['createDevice:create', 'createDevice:load', 'createDevice:resume'])('killed inside attach at %s: attach again works', async (point) => {
    const dir = scratchDir();
    const { pool, journal } = await poolWithPatternedVolume(dir);
    const name = pool.name;
    await pool.destroy();
    const o = { name, dataFile: path.join(dir, 'data') };
    try {
      expect(await runWorker(['attach', point, JSON.stringify(o)])).toBe('SIGKILL');
      const back = await ThinPool.attach(o);
      await back.close();
      const checked = await expectClean(name, journal);
      await checked.destroy({ deleteFiles: true });
      expect(noLeftovers(name)).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('destroy() harms nothing it does not own, and a killed destroy can be finished', () => {
  test('a busy volume or a foreign device on the pool: nothing is removed', async () => {
    const dir = scratchDir();
    const { pool, base } = await poolWithPatternedVolume(dir);
    const other = uniqueName('foreign');
    try {
      const v = pool.volume(base)!;
      await v.activate();
      const fd = fs.openSync(v.path, 'r');
      try {
        await expect(pool.destroy()).rejects.toMatchObject({ code: 'ERR_DM_BUSY', message: expect.stringContaining(base) });
      } finally {
        fs.closeSync(fd);
      }
      expect(await v.isActive()).toBe(true);
      // A thin device of this pool made behind the registry's back (as dmsetup would): not ours to remove.
      await pool.dm.message(pool.name, 0, 'create_thin 4000');
      await pool.dm.createDevice(other, [{ start: 0 as never, length: 2048 as never, type: 'thin', params: `${pool.devSpec} 4000` }]);
      await expect(pool.destroy()).rejects.toMatchObject({ code: 'ERR_DM_BUSY', message: expect.stringContaining(other) });
      expect(await v.isActive()).toBe(true);  // the volume was not removed either
      expect(await pool.dm.exists(other)).toBe(true);
      await pool.dm.remove(other);
      await pool.dm.message(pool.name, 0, 'delete 4000');
      await pool.destroy({ deleteFiles: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a pool whose name another pool's begins with: destroy leaves the other's volumes alone", async () => {
    const dir = scratchDir();
    const name = uniqueName('pre');
    const a = await ThinPool.create({ name, dataFile: path.join(dir, 'a'), dataSize: '64M' });
    const b = await ThinPool.create({ name: `${name}-1`, dataFile: path.join(dir, 'b'), dataSize: '64M' });
    try {
      const vb = await (await b.createVolume(uniqueName('vb'), '4M')).activate();
      const va = await (await a.createVolume(uniqueName('va'), '4M')).activate();
      await a.destroy({ deleteFiles: true });
      expect(await b.dm.exists(va.name)).toBe(false);
      expect(await vb.isActive()).toBe(true);
    } finally {
      await b.destroy({ deleteFiles: true });
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test.each([
    ['remove', false, 'after the first volume is removed'],
    ['fs:rmSync:2', true, 'while deleting the files'],
  ])('killed at %s (deleteFiles %s, %s)', async (point, deleteFiles) => {
    const dir = scratchDir();
    const { pool, journal } = await poolWithPatternedVolume(dir);
    const name = pool.name;
    const o = { name, dataFile: path.join(dir, 'data'), dataSize: '128M' };
    try {
      await (await pool.createVolume('second', '4M')).activate();
      await pool.volume(pool.registry.list()[0].name)!.activate();
      await pool.close();
      expect(await runWorker(['destroy', point, JSON.stringify({ name, deleteFiles })])).toBe('SIGKILL');
      if (!deleteFiles) {
        // The pool is still there: open it and destroy it again.
        const again = await expectClean(name, journal);
        await again.destroy({ deleteFiles: true });
      } else {
        // The pool device is gone and some files with it: attach refuses, create over them works.
        await expect(ThinPool.attach({ name, dataFile: o.dataFile })).rejects.toBeInstanceOf(DevmapperError);
        const fresh = await ThinPool.create(o);
        expect(fresh.registry.count()).toBe(0);
        await fresh.destroy({ deleteFiles: true });
      }
      expect(noLeftovers(name)).toEqual([]);
      expect(fs.readdirSync(dir).filter((f) => f !== 'journal')).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('a create that fails after opening the registry closes it: a retry in the same process works', async () => {
  const dir = scratchDir();
  const o = { name: uniqueName('retry'), dataFile: path.join(dir, 'data'), dataSize: '64M', registryDir: path.join(dir, 'reg') };
  try {
    const first = await ThinPool.create(o);
    await first.createVolume('v', '1M');
    await first.destroy();
    fs.rmSync(o.dataFile);
    fs.rmSync(`${o.dataFile}.meta`);
    // The registry holds volumes of the older pool: refused, after the registry was opened.
    await expect(ThinPool.create(o)).rejects.toMatchObject({ code: 'ERR_DM_POOL_STATE' });
    fs.rmSync(o.registryDir, { recursive: true });
    const second = await ThinPool.create(o);
    expect(second.registry.count()).toBe(0);
    await second.destroy({ deleteFiles: true });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
