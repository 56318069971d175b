// ThinPool against the real kernel: create from files, typed status, open, settings, destroy.
import fs from 'node:fs';
import path from 'node:path';
import { DeviceMapper, ThinPool, ThinPoolStatusOk, Loop, sectors } from '../../lib';
import { eventually, removeQuietly, scratchDir, scratchLoop, uniqueName } from './helpers';
import { readAt, withPool, writeAt } from './thin-helpers';

const MiB = 1 << 20;

test('a pool on two sparse files: loops attached with autoclear, zeroed metadata, typed status', async () => {
  await withPool({ dataSize: '512M', blockSize: 256, skipBlockZeroing: true }, async (pool, dir) => {
    const s = await pool.status();
    expect(s).toMatchObject({ state: 'ok', transactionId: 0, mode: 'rw', data: { used: 0, total: (512 << 20) / (256 * 512) },
      discard: 'discard_passdown', noSpacePolicy: 'queue_if_no_space', needsCheck: false, heldMetadataRoot: null });
    expect(pool.params).toMatchObject({ blockSize: 256, lowWaterMark: 409, features: { skipBlockZeroing: true } });
    expect(fs.statSync(path.join(dir, 'data')).blocks).toBeLessThan(1024);  // sparse
    const loops = Loop.list().filter((l) => l.backingFile.startsWith(dir));
    expect(loops).toHaveLength(2);
    for (const l of loops) expect((await Loop.status(l.path)).autoclear).toBe(true);
  });
});

test('growData and growMetadata extend the files, the loops and the pool while a volume stays live; never shrink', async () => {
  await withPool({ dataSize: '64M', metadataSize: '4M' }, async (pool, dir) => {
    const data = path.join(dir, 'data'), meta = path.join(dir, 'data.meta');
    const v = await (await pool.createVolume(uniqueName('live'), 128 * MiB)).activate();
    writeAt(v.path, 0, 'before the grow');
    expect(await pool.status()).toMatchObject({ data: { total: 1024 }, metadata: { total: 1024 } });

    await pool.growData('128M');
    expect(fs.statSync(data).size).toBe(128 * MiB);
    expect((await pool.dm.table(pool.name))[0].length).toBe(128 * MiB / 512);
    expect(await pool.status()).toMatchObject({ state: 'ok', mode: 'rw', data: { total: 2048 } });
    writeAt(v.path, 100 * MiB, 'after the grow');
    expect(readAt(v.path, 0, 15).toString()).toBe('before the grow');
    expect(readAt(v.path, 100 * MiB, 14).toString()).toBe('after the grow');

    await pool.growMetadata('8M');
    expect(fs.statSync(meta).size).toBe(8 * MiB);
    expect(await pool.status()).toMatchObject({ state: 'ok', metadata: { total: 2048 }, data: { total: 2048 } });

    // Refused before anything changes: a smaller or equal size, a size not in sectors, no growth to take up.
    await expect(pool.growData('64M')).rejects.toMatchObject({ code: 'ERR_DM_INVALID_SIZE' });
    await expect(pool.growData(128 * MiB + 100)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_SIZE' });
    await expect(pool.growData()).rejects.toMatchObject({ code: 'ERR_DM_INVALID_SIZE' });
    await expect(pool.growMetadata('20G')).rejects.toMatchObject({ code: 'ERR_DM_INVALID_SIZE' });
    expect([fs.statSync(data).size, fs.statSync(meta).size]).toEqual([128 * MiB, 8 * MiB]);
    expect((await pool.dm.table(pool.name))[0].length).toBe(128 * MiB / 512);
  });
});

test('a pool on block devices; open finds it; a non-pool device is refused', async () => {
  const meta = scratchLoop(8 << 20), data = scratchLoop(64 << 20);
  const dir = scratchDir();
  const name = uniqueName('bpool');
  const dm = new DeviceMapper();
  const other = uniqueName('notpool');
  try {
    await expect(ThinPool.create({ name, metadataDevice: meta.path, dataDevice: data.path })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    const pool = await ThinPool.create({ name, metadataDevice: meta.path, dataDevice: data.path, registryDir: path.join(dir, 'reg') });
    await pool.createVolume('bvol-' + name, '8M');
    await pool.close();
    const again = await ThinPool.open(name, { registryDir: path.join(dir, 'reg') });
    expect(again.params.dataDev).toBe(`7:${data.number}`);
    expect((await again.list()).map((v) => v.name)).toEqual(['bvol-' + name]);
    await again.destroy();
    await dm.createDevice(other, [{ start: sectors(0), length: sectors(8), type: 'zero', params: '' }]);
    await expect(ThinPool.open(other, { registryDir: dir })).rejects.toMatchObject({ code: 'ERR_DM_NOT_A_THIN_POOL' });
  } finally {
    removeQuietly(dm, other, name);
    dm.close();
    meta.detach(); data.detach();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('open by name finds the loop backing files and the registry beside them', async () => {
  await withPool({}, async (pool, dir) => {
    await pool.createVolume(`ov-${pool.name}`, '4M');
    const opened = await ThinPool.open(pool.name);
    try {
      expect(opened.files.data).toBe(path.join(dir, 'data'));
      expect(opened.registryDir).toBe(path.join(dir, 'data.registry'));
      expect(opened.volume(`ov-${pool.name}`)?.id).toBe(0);
    } finally {
      await opened.close();
    }
  });
});

test('setFeatures and setLowWaterMark reload the table; read_only refused on creation; bad sizes refused', async () => {
  await withPool({}, async (pool) => {
    await pool.setLowWaterMark(5);
    await pool.setFeatures({ errorIfNoSpace: true });
    const [t] = await pool.dm.table(pool.name);
    expect(t.params.trimEnd()).toMatch(/ 128 5 1 error_if_no_space$/);
    expect(await pool.status()).toMatchObject({ noSpacePolicy: 'error_if_no_space' });
    expect((await pool.dm.info(pool.name)).suspended).toBe(false);
  });
  const dir = scratchDir();
  try {
    for (const [o, code] of [
      [{ readOnly: true }, 'ERR_DM_INVALID_ARGUMENT'],
      [{ blockSize: 100 }, 'ERR_DM_INVALID_BLOCK_SIZE'],
      [{ dataSize: 1000 }, 'ERR_DM_INVALID_SIZE'],
      [{ name: 'a/b' }, 'ERR_DM_INVALID_NAME'],
    ] as const) {
      await expect(ThinPool.create({ name: uniqueName('bad'), dataFile: path.join(dir, 'd'), dataSize: '64M', ...o })).rejects.toMatchObject({ code });
    }
    expect(fs.readdirSync(dir)).toEqual([]);  // nothing created
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('watchLowWater calls back when free data blocks fall to the low water mark, not after the pool grew, and ends on abort', async () => {
  // 1024 blocks of 64 KiB; the mark at 960 free blocks is crossed by writing 4 MiB or more.
  await withPool({ dataSize: '64M', lowWaterMark: 960 }, async (pool) => {
    const v = await (await pool.createVolume(uniqueName('fill'), 32 * MiB)).activate();
    const calls: ThinPoolStatusOk[] = [];
    const ac = new AbortController();
    const watching = pool.watchLowWater((s) => { calls.push(s); }, { signal: ac.signal });
    try {
      writeAt(v.path, 0, Buffer.alloc(2 * MiB, 1));  // 32 blocks: 992 free, above the mark
      expect(await eventually(() => calls.length > 0, 1000)).toBe(false);
      writeAt(v.path, 2 * MiB, Buffer.alloc(4 * MiB, 2));  // 96 blocks used: 928 free
      expect(await eventually(() => calls.length > 0)).toBe(true);
      expect(calls[0].data.total).toBe(1024);
      expect(calls[0].data.used).toBeGreaterThanOrEqual(64);  // the status when the wait woke: the write may still be going on
      await pool.growData(128 * MiB);  // 2048 blocks: far above the mark again
      const seen = calls.length;
      writeAt(v.path, 6 * MiB, Buffer.alloc(MiB, 3));
      expect(await eventually(() => calls.length > seen, 1000)).toBe(false);
    } finally {
      ac.abort();
      await watching;
    }
    expect(await pool.status()).toMatchObject({ state: 'ok', data: { used: 112, total: 2048 } });
  });
});
