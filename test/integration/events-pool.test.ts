// A pool's events (events(), on()) and autoextend() against the real kernel: writes from a volume cross the
// low water mark, fill the pool, and growth brings it back; all subscribers of one pool share one wait.
import fs from 'node:fs';
import path from 'node:path';
import { DeviceMapper, ExtendRequest, ThinPool, PoolEvent, ThinVolume, line, linear, mapperPath, sectors } from '../../lib';
import { eventSource } from '../../lib/thin/events';
import { lowWaterMarkFor } from '../../lib/thin/autoextend';
import { eventually, removeQuietly, scratchDir, scratchLoop, uniqueName } from './helpers';
import { withPool, writeAt } from './thin-helpers';

const MiB = 1 << 20;

/** Collects an iterator's events until it ends. */
function collect(it: AsyncIterable<PoolEvent>): { events: PoolEvent[]; done: Promise<void> } {
  const events: PoolEvent[] = [];
  const done = (async () => { for await (const e of it) events.push(e); })();
  return { events, done };
}
const ofType = <T extends PoolEvent['type']>(events: PoolEvent[], type: T) =>
  events.filter((e): e is Extract<PoolEvent, { type: T }> => e.type === type);

/**
 * Writes `total` bytes from `offset` in 1 MiB chunks, each synced, pausing between chunks so the event
 * loop runs (the wait's results and autoextend's work are on it). Returns the bytes written and the error
 * that stopped it, if any.
 */
async function fill(v: ThinVolume, offset: number, total: number): Promise<{ written: number; failure?: NodeJS.ErrnoException }> {
  const fh = await fs.promises.open(v.path, 'r+');
  const chunk = Buffer.alloc(MiB, 7);
  let written = 0;
  try {
    while (written < total) {
      await fh.write(chunk, 0, chunk.length, offset + written);
      await fh.sync();
      written += chunk.length;
      await new Promise((r) => setTimeout(r, 20));
    }
    return { written };
  } catch (e) {
    return { written, failure: e as NodeJS.ErrnoException };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

test('lowWater when writes cross the mark and resized after growData, to an iterator and on(); both share one wait', async () => {
  // 1024 blocks of 64 KiB; the mark at 960 free blocks is crossed by writing 4 MiB or more.
  await withPool({ dataSize: '64M', lowWaterMark: 960 }, async (pool) => {
    const v = await (await pool.createVolume(uniqueName('fill'), 32 * MiB)).activate();
    const ac = new AbortController();
    const it = collect(pool.events({ signal: ac.signal }));
    const heard: PoolEvent[] = [];
    const listener = (e: PoolEvent) => { heard.push(e); };
    pool.on('lowWater', listener).on('resized', listener);
    const src = eventSource(pool);
    try {
      expect(await eventually(() => src.waitsStarted >= 1)).toBe(true);
      expect(src.subscriberCount).toBe(2);
      writeAt(v.path, 0, Buffer.alloc(2 * MiB, 1));  // 32 blocks: 992 free, above the mark
      writeAt(v.path, 2 * MiB, Buffer.alloc(4 * MiB, 2));  // 96 blocks used: 928 free
      expect(await eventually(() => ofType(it.events, 'lowWater').length > 0 && heard.length > 0)).toBe(true);
      const low = ofType(it.events, 'lowWater')[0];
      expect(low).toMatchObject({ lowWaterMark: 960, status: { state: 'ok', data: { total: 1024 } } });
      expect(low.freeBlocks).toBeLessThanOrEqual(960);
      expect(heard[0]).toBe(low);  // the same event object, from the one wait
      await pool.growData(128 * MiB);
      expect(await eventually(() => ofType(it.events, 'resized').length > 0 && heard.length > 1)).toBe(true);
      expect(ofType(it.events, 'resized')[0]).toMatchObject({ space: 'data', from: 1024, to: 2048 });
      expect(heard[1]).toMatchObject({ type: 'resized', space: 'data', from: 1024, to: 2048 });
      // One wait for both subscribers: exactly one outstanding, however many events came.
      expect(await eventually(() => src.waitsStarted === src.wakes + 1)).toBe(true);
      expect(ofType(it.events, 'lowWater')).toHaveLength(1);  // edges: not one per wake
      expect(ofType(it.events, 'mode')).toHaveLength(0);
    } finally {
      ac.abort();
      await it.done;
      expect(src.subscriberCount).toBe(1);
      pool.off('lowWater', listener).off('resized', listener);
      await src.stopped();
    }
    expect(src.running).toBe(false);
    await v.deactivate();
  });
});

test('mode: rw to out_of_data_space when the pool fills (error_if_no_space), back to rw after growData', async () => {
  await withPool({ dataSize: '16M', errorIfNoSpace: true, skipBlockZeroing: true }, async (pool) => {
    const v = await (await pool.createVolume(uniqueName('big'), '1G')).activate();
    const ac = new AbortController();
    const it = collect(pool.events({ signal: ac.signal }));
    try {
      const { failure } = await fill(v, 0, 64 * MiB);
      expect(failure?.code).toMatch(/EIO|ENOSPC/);
      expect(await eventually(() => ofType(it.events, 'mode').length > 0)).toBe(true);
      expect(ofType(it.events, 'mode')[0]).toMatchObject({ from: 'rw', to: 'out_of_data_space', status: { mode: 'out_of_data_space' } });
      await pool.growData(32 * MiB);
      expect(await eventually(() => ofType(it.events, 'mode').length > 1)).toBe(true);
      expect(ofType(it.events, 'mode')[1]).toMatchObject({ from: 'out_of_data_space', to: 'rw' });
      // The new size may show in a later status than the mode (the kernel's resume event can come first, the
      // library's read after the reload then shows it), and the iterator hands events over one at a time.
      expect(await eventually(() => ofType(it.events, 'resized').length > 0)).toBe(true);
      expect(ofType(it.events, 'resized')).toEqual([expect.objectContaining({ space: 'data', from: 256, to: 512 })]);
      // The crossing of the default mark (0 free) came with the fill, once.
      expect(ofType(it.events, 'lowWater')).toHaveLength(1);
      // A subscriber that starts now, on a pool that is rw again and has room, hears nothing standing.
      const later = pool.events({ signal: ac.signal });
      const first = later.next();
      expect(await Promise.race([first.then(() => 'event'), new Promise((r) => setTimeout(() => r('none'), 500))])).toBe('none');
      await later.return!();
      expect(await first).toEqual({ value: undefined, done: true });
    } finally {
      ac.abort();
      await it.done;
    }
    expect(await pool.status()).toMatchObject({ state: 'ok', mode: 'rw' });
    await v.deactivate();
  });
});

test('a subscriber that starts on a pool already low gets lowWater at once; return() and abort end the wait at once; close() ends on()', async () => {
  const dir = scratchDir();
  const name = uniqueName('pool');
  let pool = await ThinPool.create({ name, dataFile: path.join(dir, 'data'), dataSize: '64M', lowWaterMark: 1000 });
  try {
    const v = await (await pool.createVolume(uniqueName('low'), 32 * MiB)).activate();
    writeAt(v.path, 0, Buffer.alloc(4 * MiB, 1));  // 64 blocks used: 960 free, at or below 1000
    await v.deactivate();
    const src = eventSource(pool);
    // break out of the iterator at its first event: the standing lowWater.
    for await (const e of pool.events()) {
      expect(e).toMatchObject({ type: 'lowWater', lowWaterMark: 1000, freeBlocks: 960 });
      break;
    }
    await src.stopped();
    expect(src.running).toBe(false);
    // An abort ends a pending next() at once.
    const ac = new AbortController();
    const it = pool.events({ signal: ac.signal });
    expect(await it.next()).toMatchObject({ value: { type: 'lowWater' }, done: false });
    const pending = it.next();
    ac.abort();
    expect(await pending).toEqual({ value: undefined, done: true });
    await src.stopped();
    expect(src.running).toBe(false);
    // An on() listener runs the wait until close(), which ends it.
    const seen: PoolEvent[] = [];
    pool.on('lowWater', (e) => { seen.push(e); });
    expect(await eventually(() => seen.length === 1)).toBe(true);
    expect(src.running).toBe(true);
    await pool.close();
    await src.stopped();
    expect(src.running).toBe(false);
    expect(() => pool.on('mode', () => undefined)).toThrow(expect.objectContaining({ code: 'ERR_DM_CLOSED' }));
    await expect(pool.events().next()).rejects.toMatchObject({ code: 'ERR_DM_CLOSED' });
  } finally {
    pool = await ThinPool.open(name, { registryDir: pool.registryDir });
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('autoextend keeps a filling file-backed pool out of out_of_data_space', async () => {
  // 256 blocks of 64 KiB; at 50% it doubles, up to 64 MiB.
  await withPool({ dataSize: '16M', errorIfNoSpace: true, skipBlockZeroing: true }, async (pool) => {
    const v = await (await pool.createVolume(uniqueName('auto'), '1G')).activate();
    const ac = new AbortController();
    const it = collect(pool.events({ signal: ac.signal }));
    const running = pool.autoextend({ threshold: 50, percent: 100, maxDataSize: '64M', signal: ac.signal });
    try {
      expect(await eventually(() => pool.params.lowWaterMark === lowWaterMarkFor(256, 50))).toBe(true);
      expect(pool.params.lowWaterMark).toBe(128);
      const { written, failure } = await fill(v, 0, 40 * MiB);
      expect(failure).toBeUndefined();
      expect(written).toBe(40 * MiB);
      expect(await eventually(() => ofType(it.events, 'extendLimit').length > 0)).toBe(true);
    } finally {
      ac.abort();
      await running;
      await it.done;
    }
    const extended = ofType(it.events, 'extended');
    expect(extended.map((e) => [e.space, e.from, e.to])).toEqual([['data', 16 * MiB, 32 * MiB], ['data', 32 * MiB, 64 * MiB]]);
    expect(ofType(it.events, 'extendLimit')[0]).toMatchObject({ space: 'data', size: 64 * MiB, max: 64 * MiB });
    expect(ofType(it.events, 'mode')).toHaveLength(0);  // never out of space
    expect(fs.statSync(pool.files.data!).size).toBe(64 * MiB);
    expect(await pool.status()).toMatchObject({ state: 'ok', mode: 'rw', data: { total: 1024 } });
    expect(pool.params.lowWaterMark).toBe(512);
    await v.deactivate();
  });
});

test('autoextend stops at maxDataSize (extendLimit), and the pool then fills', async () => {
  await withPool({ dataSize: '16M', errorIfNoSpace: true, skipBlockZeroing: true }, async (pool) => {
    const v = await (await pool.createVolume(uniqueName('capped'), '1G')).activate();
    const ac = new AbortController();
    const it = collect(pool.events({ signal: ac.signal }));
    const running = pool.autoextend({ threshold: 50, percent: 100, maxDataSize: '24M', signal: ac.signal });
    try {
      expect(await eventually(() => pool.params.lowWaterMark === 128)).toBe(true);
      const { written, failure } = await fill(v, 0, 64 * MiB);
      expect(failure?.code).toMatch(/EIO|ENOSPC/);
      expect(written).toBeLessThanOrEqual(24 * MiB);
      expect(written).toBeGreaterThan(16 * MiB);
      expect(await eventually(() => ofType(it.events, 'mode').some((e) => e.to === 'out_of_data_space'))).toBe(true);
    } finally {
      ac.abort();
      await running;
      await it.done;
    }
    expect(ofType(it.events, 'extended').map((e) => [e.space, e.from, e.to])).toEqual([['data', 16 * MiB, 24 * MiB]]);
    expect(ofType(it.events, 'extendLimit')).toEqual([expect.objectContaining({ space: 'data', size: 24 * MiB, max: 24 * MiB })]);
    expect(fs.statSync(pool.files.data!).size).toBe(24 * MiB);
    expect(await pool.status()).toMatchObject({ state: 'ok', mode: 'out_of_data_space', data: { used: 384, total: 384 } });
    await v.deactivate();
  });
});

test('autoextend of a pool on block devices: the extend hook grows the data device, the pool takes up its size, up to the max', async () => {
  // The data device is a dm linear over a 64 MiB loop, 16 MiB long at first: the hook makes it longer.
  const dm = new DeviceMapper();
  const metaLoop = scratchLoop(8 * MiB), dataLoop = scratchLoop(64 * MiB);
  const dir = scratchDir();
  const names = { metadata: uniqueName('aemeta'), data: uniqueName('aedata') };
  const table = (loop: { path: string }, bytes: number) => [line(linear, 0, sectors(bytes / 512), { device: loop.path, offset: sectors(0) })];
  const requests: ExtendRequest[] = [];
  let pool: ThinPool | undefined;
  try {
    await dm.createDevice(names.metadata, table(metaLoop, 8 * MiB));
    await dm.createDevice(names.data, table(dataLoop, 16 * MiB));
    pool = await ThinPool.create({ name: uniqueName('aepool'), metadataDevice: mapperPath(names.metadata), dataDevice: mapperPath(names.data),
      registryDir: path.join(dir, 'reg'), errorIfNoSpace: true, skipBlockZeroing: true });
    const p = pool;
    const v = await (await p.createVolume(uniqueName('aevol'), '1G')).activate();
    const ac = new AbortController();
    const it = collect(p.events({ signal: ac.signal }));
    const extend = async (r: ExtendRequest) => {
      requests.push(r);
      await dm.load(names[r.space], table(r.space === 'data' ? dataLoop : metaLoop, r.size));
      await dm.suspend(names[r.space]);
      await dm.resume(names[r.space]);
    };
    const running = p.autoextend({ threshold: 50, percent: 100, maxDataSize: '48M', extend, signal: ac.signal });
    try {
      expect(await eventually(() => p.params.lowWaterMark === lowWaterMarkFor(256, 50))).toBe(true);
      const { written, failure } = await fill(v, 0, 30 * MiB);
      expect(failure).toBeUndefined();
      expect(written).toBe(30 * MiB);
      expect(await eventually(() => ofType(it.events, 'extendLimit').length > 0)).toBe(true);
    } finally {
      ac.abort();
      await running;
      await it.done;
    }
    expect(requests).toEqual([{ space: 'data', size: 32 * MiB }, { space: 'data', size: 48 * MiB }]);
    expect(ofType(it.events, 'extended').map((e) => [e.space, e.from, e.to])).toEqual([['data', 16 * MiB, 32 * MiB], ['data', 32 * MiB, 48 * MiB]]);
    expect(ofType(it.events, 'extendLimit')[0]).toMatchObject({ space: 'data', size: 48 * MiB, max: 48 * MiB });
    expect(ofType(it.events, 'mode')).toHaveLength(0);  // never out of space
    expect(await p.status()).toMatchObject({ state: 'ok', mode: 'rw', data: { total: 768 } });
    await v.deactivate();
    await p.destroy();
    pool = undefined;
  } finally {
    if (pool) {
      try { await pool.destroy(); } catch { removeQuietly(dm, ...(await pool.list().catch(() => [])).map((x) => x.name), pool.name); }
    }
    removeQuietly(dm, names.data, names.metadata);
    metaLoop.detach();
    dataLoop.detach();
    fs.rmSync(dir, { recursive: true, force: true });
    dm.close();
  }
});
