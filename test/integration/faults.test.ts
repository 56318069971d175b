// A pool whose data or metadata device goes faulty: the pool's mode shows in status(), every call answers
// (works, or ERR_DM_POOL_STATE naming the mode), and once the fault is gone repair() brings the pool back with
// its volumes intact. The devices under the pool are dm devices over loop files: `linear` while healthy,
// `flakey` failing writes or `error` while faulty.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Block, DeviceMapper, DevmapperError, PoolEvent, ThinPool, ThinPoolStatus, flakey, line, linear, error as errorTarget, mapperPath, sectors } from '../../lib';
import { dmsetup, eventually, removeQuietly, scratchDir, scratchLoop, uniqueName } from './helpers';
import { readAt, writeAt } from './thin-helpers';

const dm = new DeviceMapper();
afterAll(() => dm.close());

const MiB = 1 << 20;
const PATTERN = Buffer.alloc(2 * MiB);
for (let i = 0; i < PATTERN.length; i += 4) PATTERN.writeUInt32LE((i * 2654435761) >>> 0, i);

interface Rig {
  pool: ThinPool;
  options: { name: string; metadataDevice: string; dataDevice: string; registryDir: string };
  /** Makes `which` device faulty: failing writes (flakey error_writes) or failing everything (error). */
  fault(which: 'data' | 'metadata', how: 'error_writes' | 'error'): Promise<void>;
  heal(which: 'data' | 'metadata'): Promise<void>;
}

async function withFaultyPool(body: (rig: Rig) => Promise<void>): Promise<void> {
  const metaLoop = scratchLoop(8 * MiB), dataLoop = scratchLoop(64 * MiB);
  const dir = scratchDir();
  const names = { metadata: uniqueName('fmeta'), data: uniqueName('fdata') };
  const loops = { metadata: metaLoop, data: dataLoop };
  const length = { metadata: sectors(8 * MiB / 512), data: sectors(64 * MiB / 512) };
  const healthy = (w: 'data' | 'metadata') => [line(linear, 0, length[w], { device: loops[w].path, offset: sectors(0) })];
  const swap = async (w: 'data' | 'metadata', table: ReturnType<typeof healthy>) => {
    await dm.load(names[w], table);
    await dm.suspend(names[w]);
    await dm.resume(names[w]);
  };
  let pool: ThinPool | undefined;
  try {
    for (const w of ['metadata', 'data'] as const) await dm.createDevice(names[w], healthy(w));
    const options = { name: uniqueName('fpool'), metadataDevice: mapperPath(names.metadata), dataDevice: mapperPath(names.data), registryDir: path.join(dir, 'reg') };
    pool = await ThinPool.create(options);
    await body({
      pool, options,
      fault: (w, how) => swap(w, how === 'error' ? [line(errorTarget, 0, length[w], {})]
        : [line(flakey, 0, length[w], { device: loops[w].path, offset: sectors(0), upInterval: 0, downInterval: 3600, errorWrites: true })]),
      heal: (w) => swap(w, healthy(w)),
    });
  } finally {
    try {
      for (const w of ['metadata', 'data'] as const) {
        const [t] = await dm.table(names[w]).catch(() => [undefined]);
        if (t && t.type !== 'linear') await swap(w, healthy(w));
      }
    } catch { /* the removal below still runs */ }
    // The pool device by name: a test may have left it with another table, or the pool object closed.
    const live = await dm.infoIfExists(pool?.name ?? '').catch(() => undefined);
    if (pool && live) {
      try { await pool.destroy(); } catch { removeQuietly(dm, ...(await pool.list().catch(() => [])).map((v) => v.name), pool.name); }
    }
    removeQuietly(dm, names.data, names.metadata);
    metaLoop.detach();
    dataLoop.detach();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// While the fault lasts: writes that need new data blocks, and a discard of blocks mapped before the fault
// (a change to the metadata whatever the data device does: the commit that follows flushes the data device
// first, and a failed flush makes the kernel mark the metadata needs_check). Each may fail (EIO): the fault.
async function provoke(device: string): Promise<void> {
  for (let i = 0; i < 4; i++) {
    try { writeAt(device, 8 * MiB + i * MiB, Buffer.alloc(MiB, 0xa5)); } catch { /* the fault */ }
  }
  await Block.discard(device, 4 * MiB, 2 * MiB).catch(() => undefined);
  await Block.flush(device).catch(() => undefined);
}

const modeOf = (s: ThinPoolStatus) => (s.state === 'ok' ? s.mode : 'fail');

// What a failed commit leaves: read-only with needs_check (the kernel marked the metadata), or failed (it
// could not get the pool back even read-only). Both happen after a data device fault, depending on timing.
/** Makes `which` device faulty, provokes the pool with I/O on the volume at `vPath`, and waits until it leaves rw. */
async function breakPool(pool: ThinPool, fault: Rig['fault'], which: 'data' | 'metadata', how: 'error_writes' | 'error', vPath: string): Promise<void> {
  await fault(which, how);
  await provoke(vPath);
  expect(await eventually(async () => modeOf(await pool.status({ noflush: true })) !== 'rw')).toBe(true);
}

function expectFaultMode(s: ThinPoolStatus): 'ro' | 'fail' {
  if (s.state === 'ok') {
    expect(s).toMatchObject({ mode: 'ro', needsCheck: true });
    return 'ro';
  }
  expect(s.state).toBe('Fail');
  return 'fail';
}

// needs_check as the metadata on disk holds it, read past the device's page cache.
function needsCheckOnDisk(device: string): boolean {
  Block.flushSync(device);
  return (readAt(device, 0, 4096).readUInt32LE(4) & 1) === 1;
}

// A call that either works or is refused with ERR_DM_POOL_STATE naming `mode`.
async function worksOrNamesMode<T>(p: Promise<T>, mode: string): Promise<'worked' | 'refused'> {
  try {
    await p;
    return 'worked';
  } catch (e) {
    expect(e).toBeInstanceOf(DevmapperError);
    expect(e).toMatchObject({ code: 'ERR_DM_POOL_STATE', mode });
    return 'refused';
  }
}

async function expectRefusedEverywhere(pool: ThinPool, mode: string): Promise<void> {
  await expect(pool.createVolume('new', '4M')).rejects.toMatchObject({ code: 'ERR_DM_POOL_STATE', mode });
  expect(() => pool.createVolumeSync('new', '4M')).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_STATE', mode }));
  await expect(pool.snapshot('v', 'snap')).rejects.toMatchObject({ code: 'ERR_DM_POOL_STATE', mode });
  await expect(pool.deleteVolume('spare')).rejects.toMatchObject({ code: 'ERR_DM_POOL_STATE', mode });
  expect(() => pool.deleteVolumeSync('spare')).toThrow(expect.objectContaining({ code: 'ERR_DM_POOL_STATE', mode }));
  // These work in a read-only pool (they change nothing in its metadata). In a failed one, the reads are
  // refused; a thin table works only if the kernel has the thin device in memory already (resizing the
  // active volume), else is refused.
  const expected = mode === 'ro' ? 'worked' : 'refused';
  const activated = await worksOrNamesMode(pool.volume('spare')!.activate(), mode);
  if (mode === 'ro') expect(activated).toBe('worked');
  if (activated === 'worked') await pool.volume('spare')!.deactivate();
  const resized = await worksOrNamesMode(pool.resizeVolume('v', '24M'), mode);
  if (mode === 'ro') expect(resized).toBe('worked');
  expect(await worksOrNamesMode(pool.check(), mode)).toBe(expected);
  expect(await worksOrNamesMode(pool.metadata(), mode)).toBe(expected);
  expect(await worksOrNamesMode(pool.usage(), mode)).toBe(expected);
  expect(await worksOrNamesMode(pool.transactionId(), mode)).toBe(expected);
  // A table reload of the pool (its settings): works or is refused, and never leaves the pool suspended.
  await worksOrNamesMode(pool.setLowWaterMark(7), mode);
  await worksOrNamesMode(pool.setFeatures({ errorIfNoSpace: true }), mode);
  expect(await dm.info(pool.name)).toMatchObject({ suspended: false, inactiveTable: false });
  // The registry still holds what it held.
  expect((await pool.list()).map((v) => v.name).sort()).toEqual(['spare', 'v']);
}

async function expectBack(pool: ThinPool): Promise<void> {
  const s = await pool.status();
  expect(s).toMatchObject({ state: 'ok', mode: 'rw', needsCheck: false });
  const check = await pool.check();
  expect(check.clean).toBe(true);
  const v = pool.volume('v')!;
  if (!(await v.isActive())) await v.activate();
  expect(readAt(v.path, 0, PATTERN.length).equals(PATTERN)).toBe(true);
  const fresh = await (await pool.createVolume('after', '4M')).activate();
  writeAt(fresh.path, 0, 'after the repair');
  expect(readAt(fresh.path, 0, 16).toString()).toBe('after the repair');
  await fresh.deactivate();
}

async function volumesWithPattern(pool: ThinPool): Promise<string> {
  const v = await (await pool.createVolume('v', '16M')).activate();
  writeAt(v.path, 0, PATTERN);
  writeAt(v.path, 4 * MiB, Buffer.alloc(2 * MiB, 0x5a));  // mapped now, discarded by provoke()
  await pool.createVolume('spare', '4M');
  return v.path;
}

test('data device failing writes: read-only with needs_check (or failed), every call answers, repair() brings the pool back', async () => {
  await withFaultyPool(async ({ pool, options, fault, heal }) => {
    const vPath = await volumesWithPattern(pool);
    // The pool's events see the fault, and the way back, while repair() swaps the pool's table under them.
    const events: PoolEvent[] = [];
    const onEvent = (e: PoolEvent) => { events.push(e); };
    for (const t of ['mode', 'needsCheck', 'error'] as const) pool.on(t, onEvent);
    await breakPool(pool, fault, 'data', 'error_writes', vPath);
    const mode = expectFaultMode(await pool.status());
    expect(await eventually(async () => events.some((e) => e.type === 'mode' && e.from === 'rw' && e.to === mode))).toBe(true);
    await expectRefusedEverywhere(pool, mode);

    await heal('data');
    // The kernel keeps the pool as the fault left it: the fault's removal alone does not bring it back.
    expect(modeOf(await pool.status())).toBe(mode);
    // An active volume keeps the kernel's pool: refused, nothing changed.
    await expect(pool.repair()).rejects.toMatchObject({ code: 'ERR_DM_BUSY' });
    expect(() => pool.repairSync()).toThrow(expect.objectContaining({ code: 'ERR_DM_BUSY' }));
    expect(await pool.volume('v')!.isActive()).toBe(true);

    const r = await pool.repair({ deactivate: true });
    // A read-only pool's needs_check reaches the disk at the latest when the kernel lets go of the pool.
    expect(r).toMatchObject({ modeBefore: mode, mode: 'rw', reloaded: true, reactivated: ['v'] });
    if (mode === 'ro') expect(r.clearedNeedsCheck).toBe(true);
    expect(needsCheckOnDisk(options.metadataDevice)).toBe(false);
    expect(await eventually(async () => events.some((e) => e.type === 'mode' && e.from === mode && e.to === 'rw'))).toBe(true);
    expect(events.filter((e) => e.type === 'error')).toEqual([]);
    if (mode === 'ro') expect(events.some((e) => e.type === 'needsCheck')).toBe(true);
    for (const t of ['mode', 'needsCheck', 'error'] as const) pool.off(t, onEvent);
    expect(await pool.volume('v')!.isActive()).toBe(true);
    await expectBack(pool);
    // Nothing left to do: repair() of a healthy pool changes nothing.
    expect(pool.repairSync()).toMatchObject({ mode: 'rw', reloaded: false, clearedNeedsCheck: false });
    // thin_check, the independent oracle, on the metadata once the pool is down.
    await pool.destroy();
    execFileSync('thin_check', [options.metadataDevice], { stdio: ['ignore', 'pipe', 'pipe'] });
  });
});

test('metadata device failing: the pool fails (or goes read-only), calls answer typed, repair() brings it back', async () => {
  await withFaultyPool(async ({ pool, fault, heal }) => {
    const vPath = await volumesWithPattern(pool);
    await breakPool(pool, fault, 'metadata', 'error', vPath);
    const s = await pool.status();
    const mode = modeOf(s);
    expect(['fail', 'ro']).toContain(mode);
    if (s.state !== 'ok') expect(s.state).toBe('Fail');
    await expectRefusedEverywhere(pool, mode);

    await heal('metadata');
    expect(modeOf(await pool.status())).toBe(mode);  // still as the fault left it
    await pool.volume('v')!.deactivate();
    const r = pool.repairSync();
    expect(r).toMatchObject({ modeBefore: mode, mode: 'rw', reloaded: true, reactivated: [] });
    await expectBack(pool);
  });
});

test('a repair cut short after the pool\'s table became error: open() says so, attach() sets the pool up again, repair() finishes', async () => {
  await withFaultyPool(async ({ pool, options, fault, heal }) => {
    const vPath = await volumesWithPattern(pool);
    await breakPool(pool, fault, 'data', 'error_writes', vPath);
    await heal('data');
    await pool.volume('v')!.deactivate();
    // What a repair killed right after its swap leaves: the pool device, with its uuid, and an `error` table.
    const [t] = await dm.table(pool.name);
    dmsetup('load', pool.name, '--table', `0 ${t.length} error`);
    dmsetup('suspend', pool.name);
    dmsetup('resume', pool.name);
    await pool.close();
    await expect(ThinPool.open(options.name, { registryDir: options.registryDir })).rejects.toMatchObject({ code: 'ERR_DM_POOL_STATE' });
    const back = await ThinPool.attach(options);
    try {
      // needs_check, if the kernel wrote it, was never cleared: the pool comes back read-only, and repair()
      // finishes the job.
      const flagged = needsCheckOnDisk(options.metadataDevice);
      expect(await back.status()).toMatchObject({ state: 'ok', mode: flagged ? 'ro' : 'rw', needsCheck: flagged });
      expect(await back.repair()).toMatchObject({ mode: 'rw', clearedNeedsCheck: flagged });
      await expectBack(back);
    } finally {
      await back.destroy();
    }
  });
});

test('createVolume while the data device fails writes: refused naming the mode, and after repair() the registry is as before', async () => {
  await withFaultyPool(async ({ pool, fault, heal }) => {
    await volumesWithPattern(pool);
    await fault('data', 'error_writes');
    // create_thin runs; the commit after it flushes the data device, which fails: the pool turns read-only,
    // and the change's commit (set_transaction_id) is refused.
    const e = await pool.createVolume('during', '4M').catch((x: unknown) => x);
    const mode = expectFaultMode(await pool.status());
    expect(e).toMatchObject({ code: 'ERR_DM_POOL_STATE', mode });
    await heal('data');
    expect(await pool.repair({ deactivate: true })).toMatchObject({ modeBefore: mode, mode: 'rw' });
    // The unfinished create is rolled back by the repair: the kernel never committed it.
    expect((await pool.list()).map((v) => v.name).sort()).toEqual(['spare', 'v']);
    await expectBack(pool);
  });
});

test('destroy() of a failed pool works; once the fault is gone attach() brings the pool back with its volumes', async () => {
  await withFaultyPool(async ({ pool, options, fault, heal }) => {
    const vPath = await volumesWithPattern(pool);
    await breakPool(pool, fault, 'metadata', 'error', vPath);
    await pool.destroy();
    expect(await dm.infoIfExists(options.name)).toBeUndefined();
    await heal('metadata');
    const back = await ThinPool.attach(options);
    try {
      expect(await back.status()).toMatchObject({ state: 'ok', mode: 'rw', needsCheck: false });
      await expectBack(back);
    } finally {
      await back.destroy();
    }
  });
});

// One byte of the metadata device, read and written past its page cache (the pool writes through its own
// buffers): BLKFLSBUF first, then a buffered write made durable.
function flipMetadataByte(device: string, block: number, offset: number): void {
  Block.flushSync(device);
  const fd = fs.openSync(device, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, block * 4096 + offset);
    b[0] ^= 0x01;
    fs.writeSync(fd, b, 0, 1, block * 4096 + offset);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  Block.flushSync(device);
}

// The first bitmap block of the data space map: the superblock's data sm root names its index btree.
function dataBitmapBlock(device: string): number {
  Block.flushSync(device);
  const sb = readAt(device, 0, 4096);
  const indexRoot = Number(sb.readBigUInt64LE(80));
  const node = readAt(device, indexRoot * 4096, 4096);
  expect(node.readUInt32LE(4)).toBe(2);  // a leaf: one bitmap's worth of data blocks
  const max = node.readUInt32LE(20);
  return Number(node.readBigUInt64LE(32 + 8 * max));
}

test('metadata that fails the full check: ERR_DM_METADATA, needs_check kept, the pool and its volumes put back', async () => {
  await withFaultyPool(async ({ pool, options, fault, heal }) => {
    const vPath = await volumesWithPattern(pool);
    await breakPool(pool, fault, 'data', 'error_writes', vPath);
    await heal('data');
    // A space-map bitmap only the full check reads (the pool in read-only mode allocates nothing).
    const mode = expectFaultMode(await pool.status());
    const bitmap = dataBitmapBlock(options.metadataDevice);
    flipMetadataByte(options.metadataDevice, bitmap, 100);
    const e = await pool.repair({ deactivate: true }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DevmapperError);
    expect(e).toMatchObject({ code: 'ERR_DM_METADATA', block: bitmap });
    expect((e as DevmapperError).check).toMatch(/space map bitmap checksum/);
    // Put back: the flag kept (a read-only pool's is on disk once the kernel let go of it), the pool's table,
    // the volume.
    if (mode === 'ro') {
      expect(needsCheckOnDisk(options.metadataDevice)).toBe(true);
      expect(await pool.status()).toMatchObject({ state: 'ok', mode: 'ro', needsCheck: true });
    }
    expect((await dm.table(pool.name))[0].type).toBe('thin-pool');
    expect(await pool.volume('v')!.isActive()).toBe(true);
    expect(readAt(vPath, 0, PATTERN.length).equals(PATTERN)).toBe(true);
    // Put right (as thin_repair would), the repair goes through.
    flipMetadataByte(options.metadataDevice, bitmap, 100);
    await pool.volume('v')!.deactivate();
    expect(await pool.repair()).toMatchObject({ mode: 'rw' });
    expect(needsCheckOnDisk(options.metadataDevice)).toBe(false);
    await expectBack(pool);
  });
});
