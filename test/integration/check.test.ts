// check() against drift made on purpose with dmsetup behind the library's back, and a pool LVM owns (dm uuid
// LVM-...) refused for any change while it stays readable.
import fs from 'node:fs';
import path from 'node:path';
import { DevmapperError, Step, ThinPool } from '../../lib';
import { dmsetup, scratchDir, scratchPoolFiles, uniqueName } from './helpers';
import { writeAt } from './thin-helpers';

const MiB = 2 ** 20;

async function withOwnPool<T>(fn: (name: string, dir: string) => Promise<T>): Promise<T> {
  const dir = scratchDir();
  const name = uniqueName('pool');
  (await ThinPool.create({ name, dataFile: path.join(dir, 'data'), dataSize: '128M' })).closeSync();
  try {
    return await fn(name, dir);
  } finally {
    const p = await ThinPool.open(name, { check: false });
    await p.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('check() reports each drift made with dmsetup exactly, changes nothing, and open() reports it as drift', async () => {
  await withOwnPool(async (name) => {
    let pool = await ThinPool.open(name);
    expect(pool.drift).toMatchObject({ clean: true, lost: [], orphans: [], unrecordedDevices: [], mismatchedDevices: [], unfinished: null });
    const kept = await pool.createVolume(uniqueName('kept'), 4 * MiB);
    const gone = await pool.createVolume(uniqueName('gone'), 4 * MiB);
    const grown = await (await pool.createVolume(uniqueName('grown'), 4 * MiB)).activate();
    writeAt(grown.path, 0, 'data');
    const devSpec = pool.devSpec;
    await pool.close();

    // Behind the library's back: an id made, an id deleted, a device made on a recorded id, a volume's table
    // grown, the transaction id moved.
    const tid = Number(dmsetup('status', name).split(' ')[3]);
    dmsetup('message', name, '0', 'create_thin 77');
    dmsetup('message', name, '0', `delete ${gone.id}`);
    const foreign = uniqueName('foreign');
    dmsetup('create', foreign, '--table', `0 2048 thin ${devSpec} ${kept.id}`);
    dmsetup('reload', grown.name, '--table', `0 ${(8 * MiB) / 512} thin ${devSpec} ${grown.id}`);
    dmsetup('resume', grown.name);
    dmsetup('message', name, '0', `set_transaction_id ${tid} ${tid + 5}`);
    try {
      pool = await ThinPool.open(name, { check: false });
      expect(pool.drift).toBeNull();
      // open() grows a record to a bigger live table of its own device (a resize killed after the reload):
      // the grown volume is therefore not drift once opened.
      const report = await pool.check();
      expect(report.transactionId).toBe(tid + 5);
      expect(report.unfinished).toBeNull();
      expect(report.lost.map((r) => r.name)).toEqual([gone.name]);
      expect(report.orphans.map((o) => ({ id: o.id, devices: o.devices }))).toEqual([{ id: 77, devices: [] }]);
      expect(report.unrecordedDevices).toEqual([{ name: foreign, id: kept.id, size: 2048 }]);
      expect(report.mismatchedDevices).toEqual([]);  // open() took the bigger live table as the record's size
      expect(pool.volume(grown.name)!.size).toBe((8 * MiB) / 512);
      expect(report.clean).toBe(false);
      expect(report.mode).toBe('rw');
      expect(report.needsCheck).toBe(false);
      // check() changed nothing: the same again, and the pool still holds id 77.
      expect(pool.checkSync()).toEqual(report);
      expect((await pool.metadata()).devices.map((d) => d.id)).toContain(77);
      await pool.close();

      // A table that maps another id than its record: reported as mismatched.
      dmsetup('reload', grown.name, '--table', `0 ${(8 * MiB) / 512} thin ${devSpec} 77`);
      dmsetup('resume', grown.name);
      pool = await ThinPool.open(name);
      expect(pool.drift?.mismatchedDevices).toEqual([{ name: grown.name, record: { id: grown.id, size: (8 * MiB) / 512 }, table: { id: 77, size: (8 * MiB) / 512 } }]);
      expect(pool.drift?.orphans).toEqual([{ id: 77, mappedBlocks: 0, devices: [grown.name] }]);
      await pool.close();
    } finally {
      try { dmsetup('remove', foreign); } catch { /* not made */ }
      try { dmsetup('remove', grown.name); } catch { /* not active */ }
    }
  });
});

test('open() finishes a change left unfinished after another tool moved the transaction id, from what the pool\'s metadata holds', async () => {
  await withOwnPool(async (name) => {
    class Crash extends Error {}
    // Each change is cut at `step` (as a kill there would) and the transaction id then moved with dmsetup:
    // neither its "before" nor its "after" tells whether it reached the pool; the metadata does.
    const cut = async (step: Step, act: (p: ThinPool) => Promise<unknown>): Promise<void> => {
      let armed = true;
      const p = await ThinPool.open(name, { check: false, hooks: { step: (s: Step) => { if (armed && s === step) { armed = false; throw new Crash(); } } } });
      await expect(act(p)).rejects.toBeInstanceOf(Crash);
      await p.close();
      const tid = Number(dmsetup('status', name).split(' ')[3]);
      dmsetup('message', name, '0', `set_transaction_id ${tid} ${tid + 7}`);
    };
    const ids = async (p: ThinPool) => (await p.metadata()).devices.map((d) => d.id);

    // A create committed and left recorded as pending (its process never closed), then the id moved.
    const holder = await ThinPool.open(name, { check: false });
    const made = await holder.createVolume(uniqueName('made'), 4 * MiB);
    let tid = Number(dmsetup('status', name).split(' ')[3]);
    dmsetup('message', name, '0', `set_transaction_id ${tid} ${tid + 7}`);
    let pool = await ThinPool.open(name);
    expect(pool.drift).toMatchObject({ clean: true, unfinished: null });
    expect(pool.volume(made.name)?.id).toBe(made.id);
    expect(pool.registry.pending()).toBeUndefined();
    await pool.close();
    await holder.close();

    // A create whose message never ran: rolled back, its name free again.
    const never = uniqueName('never');
    await cut('intent', (p) => p.createVolume(never, 4 * MiB));
    pool = await ThinPool.open(name);
    expect(pool.drift).toMatchObject({ clean: true, unfinished: null });
    expect(pool.volume(never)).toBeUndefined();
    expect(await ids(pool)).toEqual([made.id]);
    await pool.close();

    // A snapshot whose message ran but whose commit did not: kept.
    const half = uniqueName('half');
    await cut('message', (p) => p.snapshot(made.name, half));
    pool = await ThinPool.open(name);
    expect(pool.drift).toMatchObject({ clean: true, unfinished: null });
    const halfId = pool.volume(half)!.id;
    expect(await ids(pool)).toEqual([made.id, halfId].sort((a, b) => a - b));
    const active = await pool.volume(half)!.activate();
    await pool.close();

    // A delete of an active volume cut after its intent: the user asked for it, so it is finished.
    await cut('intent', (p) => p.deleteVolume(half, { deactivate: {} }));
    pool = await ThinPool.open(name);
    expect(pool.drift).toMatchObject({ clean: true, unfinished: null });
    expect(pool.volume(half)).toBeUndefined();
    expect(await ids(pool)).toEqual([made.id]);
    expect(() => dmsetup('info', active.name)).toThrow();
    tid = Number(dmsetup('status', name).split(' ')[3]);
    // And the protocol goes on from the moved transaction id.
    await pool.createVolume(uniqueName('after'), 4 * MiB);
    expect(Number(dmsetup('status', name).split(' ')[3])).toBe(tid + 1);
    await pool.close();
  });
});

test('a pool LVM owns (dm uuid LVM-...) is refused for every change, and stays readable', async () => {
  const files = scratchPoolFiles(4 * MiB, 64 * MiB);
  const { dir, meta: ml, data: dl } = files;
  const name = uniqueName('vg-lvmpool-tpool');
  let made = false;
  try {
    dmsetup('create', name, '-u', `LVM-${'x'.repeat(64)}-tpool`, '--table', `0 ${(64 * MiB) / 512} thin-pool ${ml.path} ${dl.path} 128 0`);
    made = true;
    dmsetup('message', name, '0', 'create_thin 0');
    dmsetup('message', name, '0', 'set_transaction_id 0 1');
    const pool = await ThinPool.open(name, { registryDir: path.join(dir, 'registry') });
    try {
      expect(pool.lvmOwned).toBe(true);
      const refused = (e: unknown) => { expect(e).toBeInstanceOf(DevmapperError); expect(e).toMatchObject({ code: 'ERR_DM_LVM_POOL' }); };
      refused(await pool.createVolume('lv1', MiB).catch((e: unknown) => e));
      expect(() => pool.createVolumeSync('lv1', MiB)).toThrow(expect.objectContaining({ code: 'ERR_DM_LVM_POOL' }));
      refused(await pool.deleteVolume('lv1').catch((e: unknown) => e));
      refused(await pool.growData('128M').catch((e: unknown) => e));
      refused(await pool.setFeatures({ errorIfNoSpace: true }).catch((e: unknown) => e));
      refused(await pool.setLowWaterMark(10).catch((e: unknown) => e));
      refused(await pool.destroy().catch((e: unknown) => e));
      expect(Number(dmsetup('status', name).split(' ')[3])).toBe(1);  // LVM's transaction id untouched
      expect((await pool.metadata()).devices.map((d) => d.id)).toEqual([0]);
      expect((await pool.usage()).devices).toHaveLength(1);
      const c = await pool.check();
      expect(c.orphans.map((o) => o.id)).toEqual([0]);
      expect(pool.drift?.orphans.map((o) => o.id)).toEqual([0]);
      expect(Number(dmsetup('status', name).split(' ')[3])).toBe(1);
      await expect(ThinPool.adopt(name, { registryDir: path.join(dir, 'registry2') })).rejects.toMatchObject({ code: 'ERR_DM_LVM_POOL' });
    } finally {
      await pool.close();
    }
  } finally {
    if (made) dmsetup('remove', name);
    files.remove();
  }
});

test('reconcile() repairs the drift: lost records dropped, orphans adopted (named and sized from a live device, or from their mappings), deleted only when asked', async () => {
  await withOwnPool(async (name) => {
    let pool = await ThinPool.open(name);
    const gone = await pool.createVolume(uniqueName('gone'), 4 * MiB);
    const devSpec = pool.devSpec;
    await pool.close();
    const dmdev = uniqueName('dmdev');
    dmsetup('message', name, '0', `delete ${gone.id}`);
    dmsetup('message', name, '0', 'create_thin 77');
    dmsetup('message', name, '0', 'create_thin 78');
    dmsetup('create', dmdev, '--table', `0 ${(6 * MiB) / 512} thin ${devSpec} 78`);
    try {
      writeAt(`/dev/mapper/${dmdev}`, 3 * MiB, 'kept data');
      dmsetup('message', name, '0', 'create_thin 79');
      writeAt(`/dev/mapper/${dmdev}`, 0, 'more');
      pool = await ThinPool.open(name);
      expect(pool.drift?.lost.map((r) => r.name)).toEqual([gone.name]);
      expect(pool.drift?.orphans.map((o) => o.id)).toEqual([77, 78, 79]);

      const dry = await pool.reconcile({ dryRun: true });
      expect(dry.dropped.map((r) => r.name)).toEqual([gone.name]);
      expect(dry.adopted.map(({ name: n, id, size }) => ({ n, id, size }))).toEqual([
        { n: 'thin-77', id: 77, size: 128 }, { n: dmdev, id: 78, size: (6 * MiB) / 512 }, { n: 'thin-79', id: 79, size: 128 }]);
      expect(await pool.check()).toEqual(pool.drift);  // a dry run changes nothing

      const keep = await pool.reconcile({ orphans: 'keep' });
      expect(keep.dropped.map((r) => r.name)).toEqual([gone.name]);
      expect(keep.kept).toEqual([77, 78, 79]);
      expect((await pool.check()).lost).toEqual([]);

      // Deleting is asked for one orphan only here: adopt the others first, then delete what is left.
      const adopted = await pool.reconcile();
      expect(adopted.adopted.map((r) => r.name)).toEqual(['thin-77', dmdev, 'thin-79']);
      const after = await pool.check();
      expect(after.clean).toBe(true);
      expect(pool.volume(dmdev)!.size).toBe((6 * MiB) / 512);
      expect(await pool.volume(dmdev)!.isActive()).toBe(true);
      expect(fs.readFileSync(`/dev/mapper/${dmdev}`).subarray(3 * MiB, 3 * MiB + 9).toString()).toBe('kept data');

      dmsetup('message', name, '0', 'create_thin 80');
      const del = pool.reconcileSync({ orphans: 'delete' });
      expect(del.deleted).toEqual([80]);
      expect((await pool.metadata()).devices.map((d) => d.id)).toEqual([77, 78, 79]);
      expect((await pool.check()).clean).toBe(true);
      await pool.volume(dmdev)!.deactivate();
      await pool.close();

      // open({ reconcile }) does it at open.
      dmsetup('message', name, '0', 'create_thin 81');
      pool = await ThinPool.open(name, { reconcile: { orphans: 'adopt' } });
      expect(pool.drift?.orphans.map((o) => o.id)).toEqual([81]);
      expect(pool.reconciled?.adopted.map((r) => r.name)).toEqual(['thin-81']);
      expect((await pool.check()).clean).toBe(true);
      await expect(ThinPool.open(name, { reconcile: { orphans: 'drop' } as never })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
      await pool.close();
    } finally {
      try { dmsetup('remove', dmdev); } catch { /* deactivated */ }
    }
  });
});

test('adopt(): the seeds\' walkthrough made by dmsetup, with a Docker-style metadata folder, becomes volumes named and sized by Docker; a library snapshot of thin 0 reads the base\'s data', async () => {
  const files = scratchPoolFiles(4 * MiB, 128 * MiB);
  const { dir, meta: ml, data: dl } = files;
  const name = uniqueName('docker-pool');
  const thins: string[] = [];
  let pool: ThinPool | undefined;
  let made = false;
  try {
    // Docker's devicemapper driver, by hand: a base thin device (create_thin 0), layers as snapshots.
    dmsetup('create', name, '--table', `0 ${(128 * MiB) / 512} thin-pool ${ml.path} ${dl.path} 128 32768`);
    made = true;
    const msg = (m: string) => dmsetup('message', name, '0', m);
    const dev = `${fs.statSync(`/dev/mapper/${name}`).rdev >> 8}:${fs.statSync(`/dev/mapper/${name}`).rdev & 0xff}`;
    msg('create_thin 0');
    msg('set_transaction_id 0 1');
    const base = `${name}-base`;
    dmsetup('create', base, '--table', `0 ${(10 * MiB) / 512} thin ${dev} 0`);
    thins.push(base);
    writeAt(`/dev/mapper/${base}`, 0, 'the base image');
    dmsetup('suspend', base);
    msg('create_snap 1 0');
    dmsetup('resume', base);
    msg('set_transaction_id 1 2');
    msg('create_snap 2 1');
    msg('set_transaction_id 2 3');
    const hash1 = 'a'.repeat(64), hash2 = 'b'.repeat(64), stale = 'c'.repeat(64);
    const docker = path.join(dir, 'devicemapper');
    fs.mkdirSync(path.join(docker, 'metadata'), { recursive: true });
    const rec = (id: number, size: number, extra = {}) => JSON.stringify({ device_id: id, size, transaction_id: id + 1, initialized: true, deleted: false, ...extra });
    fs.writeFileSync(path.join(docker, 'metadata', 'base'), rec(0, 10 * MiB));
    fs.writeFileSync(path.join(docker, 'metadata', hash1), rec(1, 10 * MiB));
    fs.writeFileSync(path.join(docker, 'metadata', stale), rec(7, 10 * MiB));  // its device is gone from the pool
    fs.writeFileSync(path.join(docker, 'metadata', 'deviceset-metadata'), JSON.stringify({ next_device_id: 3, BaseDeviceUUID: '', BaseDeviceFilesystem: 'ext4' }));
    void hash2;

    pool = await ThinPool.adopt(name, { registryDir: path.join(dir, 'registry'), docker });
    expect(pool.adoption?.records.map((r) => [r.name, r.id, r.size])).toEqual([[hash1, 1, (10 * MiB) / 512], ['base', 0, (10 * MiB) / 512]]);
    expect(pool.adoption?.skipped).toEqual([{ name: stale, reason: 'thin id 7 is not in the pool' }]);
    expect(pool.registry.list().map((r) => [r.name, r.id]).sort()).toEqual([[hash1, 1], ['base', 0], ['thin-2', 2]]);
    expect(pool.drift?.unrecordedDevices.map((d) => d.name)).toEqual([base]);  // dmsetup's device of 'base', under its own name
    expect(pool.drift?.lost).toEqual([]);
    expect(pool.drift?.orphans).toEqual([]);

    const snap = await (await pool.snapshot('base', uniqueName('layer'))).activate();
    expect(snap.id).toBe(3);
    expect(fs.readFileSync(snap.path).subarray(0, 14).toString()).toBe('the base image');
    expect(Number(dmsetup('status', name).split(' ')[3])).toBe(4);  // the library's commit, from Docker's 3
    await snap.deactivate();
    // Adopting again finds nothing new.
    await pool.close();
    pool = await ThinPool.adopt(name, { registryDir: path.join(dir, 'registry') });
    expect(pool.reconciled?.adopted).toEqual([]);
    await expect(ThinPool.adopt(name, {} as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
  } finally {
    await pool?.close();
    for (const t of thins.reverse()) dmsetup('remove', t);
    if (made) dmsetup('remove', name);
    files.remove();
  }
});
