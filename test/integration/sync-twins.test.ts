// ThinPool and ThinVolume through their sync twins, as an operator's script would use them: the same bodies
// as the promise API (lib/thin/twin.ts), driven with the sync calls, against the real kernel.
import fs from 'node:fs';
import path from 'node:path';
import { ThinPool } from '../../lib';
import { scratchDir, uniqueName } from './helpers';
import { checksum, readAt, writeAt } from './thin-helpers';

const MiB = 1 << 20;

test('a layered pool, start to end, with sync calls only', () => {
  const dir = scratchDir();
  const name = uniqueName('pool');
  const pool = ThinPool.createSync({ name, dataFile: path.join(dir, 'data'), dataSize: '128M', lowWaterMark: 16 });
  try {
    expect(pool.statusSync()).toMatchObject({ state: 'ok', transactionId: 0 });
    const base = pool.createVolumeSync(uniqueName('base'), 8 * MiB).activateSync();
    expect(base.isActiveSync()).toBe(true);
    writeAt(base.path, 0, 'base layer');
    const sum = checksum(base.path, 8 * MiB);

    const layer = pool.snapshotSync(base, uniqueName('layer'));  // the origin is active: suspended and resumed
    expect(pool.dm.infoSync(base.name).suspended).toBe(false);
    layer.activateSync();
    expect(checksum(layer.path, 8 * MiB)).toBe(sum);
    writeAt(layer.path, 0, 'upper layer');
    expect(readAt(base.path, 0, 10).toString()).toBe('base layer');
    expect(layer.usageSync().mappedSectors).toBeGreaterThan(0);
    expect(layer.statusSync().state).toBe('ok');

    layer.resizeSync(16 * MiB);
    expect(layer.size).toBe(32768);
    expect(pool.dm.tableSync(layer.name)[0].length).toBe(32768);
    expect(pool.treeSync()).toBe(`${base.name} (id 0)\n  ${layer.name} (id 1)`);
    expect(pool.listSync().map((v) => [v.name, v.active])).toEqual([[base.name, true], [layer.name, true]]);
    expect(pool.transactionIdSync()).toBe(2);

    pool.setLowWaterMarkSync(32);
    expect(pool.params.lowWaterMark).toBe(32);
    pool.growDataSync('192M');
    expect(fs.statSync(path.join(dir, 'data')).size).toBe(192 * MiB);
    const s = pool.statusSync();
    expect(s.state === 'ok' && s.data.total).toBe((192 * MiB) / (64 * 1024));

    // Another handle on the same pool, opened sync, sees the same volumes.
    const again = ThinPool.openSync(name);
    expect(again.listSync().map((v) => v.name).sort()).toEqual([base.name, layer.name].sort());
    again.closeSync();

    base.deactivateSync();
    expect(base.isActiveSync()).toBe(false);
    base.deleteSync();  // its snapshot keeps its data
    expect(pool.volume(base.name)).toBeUndefined();
    expect(readAt(layer.path, 0, 11).toString()).toBe('upper layer');
    layer.deleteSync({ discard: true });
    expect(pool.dm.existsSync(layer.name)).toBe(false);
    expect(pool.listSync()).toEqual([]);
    expect(pool.transactionIdSync()).toBe(4);
  } finally {
    pool.destroySync({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a sync call refuses (ERR_DM_IN_PROGRESS) while a promise call on the same pool is under way, and works after', async () => {
  const dir = scratchDir();
  const pool = await ThinPool.create({ name: uniqueName('pool'), dataFile: path.join(dir, 'data'), dataSize: '64M' });
  try {
    const creating = pool.createVolume(uniqueName('a'), MiB);
    expect(() => pool.createVolumeSync(uniqueName('b'), MiB)).toThrow(expect.objectContaining({ code: 'ERR_DM_IN_PROGRESS', device: pool.name }));
    const a = await creating;
    const b = pool.createVolumeSync(uniqueName('b'), MiB);
    expect([a.id, b.id]).toEqual([0, 1]);
    expect(pool.listSync().map((v) => v.id)).toEqual([0, 1]);
  } finally {
    pool.destroySync({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
