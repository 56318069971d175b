// The in-process metadata reader against thin-provisioning-tools, on pools the library built and pools dmsetup
// built: the device list (thin_dump), mapped/exclusive/shared per device (thin_ls) and diff ranges
// (thin_delta), exactly. Live reads go through the same held metadata snapshot the tools read with -m.
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Block, DevmapperError, DiffRange, Loop, ThinMetadata, ThinPool, ThinVolume } from '../../lib';
import { dmsetup, scratchDir, uniqueName } from './helpers';
import { withPool, writeAt } from './thin-helpers';
import { metadataNode, thinDelta, thinDump, thinLs, withHeldSnapshot } from './metadata-oracle';

const MiB = 2 ** 20;
const BLOCK = 64 * 1024;  // the pools' data block size

const plain = (ranges: DiffRange[]) => ranges.map(({ kind, begin, length }) => ({ kind, begin, length }));

// Compares everything the library reads with what the tools print, on one metadata view: `snap` when the
// pool has a held snapshot (the tools' -m; the library's { snapshot: 'held' }).
async function expectMatchesTools(pool: ThinPool, pairs: [number, number][]): Promise<void> {
  const dev = metadataNode(pool);
  await withHeldSnapshot(pool.name, async () => {
    const md = await pool.metadata({ snapshot: 'held' });
    const dump = thinDump(dev, true);
    expect(md.transactionId).toBe(dump.transactionId);
    expect(md.time).toBe(dump.time);
    expect(md.dataBlockSize).toBe(dump.dataBlockSize);
    expect(md.heldRoot).not.toBeNull();
    expect(md.devices.map(({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }) =>
      ({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }))).toEqual(dump.devices);

    const usage = pool.usageSync({ snapshot: 'held' });
    expect(usage.devices.some((d) => d.shared > 0 && d.exclusive > 0)).toBe(true);
    expect(usage.devices.map(({ id, mapped, exclusive, shared }) => ({ id, mapped, exclusive, shared }))).toEqual(thinLs(dev, true));
    for (const d of usage.devices) expect(d.mappedBytes).toBe(d.mapped * BLOCK);

    for (const [a, b] of pairs) {
      const want = thinDelta(dev, true, a, b);
      expect(want.length > 0).toBe(a !== b);  // the pairs chosen all differ, but a device from itself
      const got: DiffRange[] = [];
      for await (const r of pool.diff(a, b, { snapshot: 'held', chunkRanges: 3 })) got.push(r);  // small chunks: joins across chunks
      expect(plain(got)).toEqual(want);
      expect(plain(pool.diffSync(a, b, { snapshot: 'held' }))).toEqual(want);
      for (const r of got) expect(r.sectors).toBe(r.length * 128);
    }
  });
}

test('a library-built pool: snapshot chains 6 deep, writes, discards and deletes read exactly as thin_dump, thin_ls and thin_delta', async () => {
  await withPool({ dataSize: '256M' }, async (pool) => {
    const base = await (await pool.createVolume(uniqueName('base'), 32 * MiB)).activate();
    for (let i = 0; i < 32; i += 3) writeAt(base.path, i * MiB, `base ${i}`);
    writeAt(base.path, 20 * MiB, Buffer.alloc(2 * MiB, 1));
    const chain: ThinVolume[] = [base];
    for (let d = 1; d <= 6; d++) {
      const v = await (await pool.snapshot(chain[d - 1].name, uniqueName(`s${d}`))).activate();
      writeAt(v.path, (d * 4) * MiB, `layer ${d}`);
      writeAt(v.path, (d * 4 + 1) * MiB + 8192, Buffer.alloc(BLOCK * 3, d));
      chain.push(v);
    }
    await Block.discard(chain[3].path, 20 * MiB, MiB);  // unmaps 16 blocks of layer 3 only
    const other = await (await pool.createVolume(uniqueName('other'), 8 * MiB)).activate();
    writeAt(other.path, 0, Buffer.alloc(MiB, 7));
    await chain[2].delete();  // a deleted volume in the middle of the chain
    const ids = (await pool.metadata()).devices.map((d) => d.id);
    expect(ids).toEqual(pool.registry.list().map((v) => v.id).sort((a, b) => a - b));

    const pairs: [number, number][] = [[chain[0].id, chain[1].id], [chain[1].id, chain[3].id], [chain[3].id, chain[4].id],
      [chain[6].id, chain[0].id], [chain[5].id, chain[5].id], [other.id, chain[4].id]];
    await expectMatchesTools(pool, pairs);

    // Read through a snapshot of its own: the same, and released after.
    const own = await pool.usage();
    expect(own.devices.find((d) => d.id === chain[3].id)!.name).toBe(chain[3].name);
    const st = await pool.status();
    expect(st.state === 'ok' && st.heldMetadataRoot).toBeNull();
    expect(pool.registry.metadataSnapshot()).toBeUndefined();

    // A volume's own usage: exclusive is what deleting it gives back.
    const u = await chain[6].usage();
    const before = await pool.status();
    const ex = u.exclusiveSectors / 128;
    for (const v of [...chain.slice(1)].filter((x) => x !== chain[2])) await v.deactivate();
    await chain[6].delete();
    const after = await pool.status();
    if (before.state !== 'ok' || after.state !== 'ok') throw new Error('pool not ok');
    expect(before.data.used - after.data.used).toBe(ex);
    for (const v of [chain[5], chain[4], chain[3], chain[1]]) await v.delete();
    await base.deactivate();
    await other.deactivate();
  });
});

test('a pool made by dmsetup alone reads the same offline (its metadata device, and a copy of it) as thin_dump and thin_ls', async () => {
  const dir = scratchDir();
  const meta = path.join(dir, 'meta'), data = path.join(dir, 'data');
  fs.writeFileSync(meta, Buffer.alloc(0)); fs.truncateSync(meta, 4 * MiB);
  fs.writeFileSync(data, Buffer.alloc(0)); fs.truncateSync(data, 128 * MiB);
  const ml = Loop.attachSync(meta), dl = Loop.attachSync(data);
  const pool = uniqueName('dmspool');
  const thins: string[] = [];
  let poolMade = false;
  try {
    dmsetup('create', pool, '--table', `0 ${(128 * MiB) / 512} thin-pool ${ml.path} ${dl.path} 128 0`);
    poolMade = true;
    const msg = (m: string) => dmsetup('message', pool, '0', m);
    msg('create_thin 0');
    const thin = (id: number) => {
      const n = `${pool}-t${id}`;
      dmsetup('create', n, '--table', `0 ${(16 * MiB) / 512} thin /dev/mapper/${pool} ${id}`);
      thins.push(n);
      return `/dev/mapper/${n}`;
    };
    const t0 = thin(0);
    writeAt(t0, 0, Buffer.alloc(4 * MiB, 1));
    for (let id = 1; id <= 5; id++) {
      dmsetup('suspend', `${pool}-t${id - 1}`);
      msg(`create_snap ${id} ${id - 1}`);
      dmsetup('resume', `${pool}-t${id - 1}`);
      writeAt(thin(id), id * MiB, Buffer.alloc(MiB, id));
    }
    msg('create_thin 9');
    msg('set_transaction_id 0 7');
    for (const t of thins.splice(0).reverse()) dmsetup('remove', t);
    dmsetup('remove', pool);
    poolMade = false;

    const dump = thinDump(ml.path, false);
    const md = await ThinMetadata.read(ml.path, { usage: true });
    expect(md.view).toBe('superblock');
    expect(md.transactionId).toBe(7);
    expect(md.devices.map(({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }) =>
      ({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }))).toEqual(dump.devices);
    expect(md.usage!.devices.map(({ id, mapped, exclusive, shared }) => ({ id, mapped, exclusive, shared }))).toEqual(thinLs(ml.path, false));
    expect(md.usage!.devices.filter((d) => d.shared > 0)).toHaveLength(6);
    for (const [a, b] of [[0, 1], [1, 5], [5, 0], [9, 3], [2, 2]]) {
      const want = thinDelta(ml.path, false, a, b);
      expect(want.length > 0).toBe(a !== b);
      expect(plain(await ThinMetadata.diff(ml.path, a, b))).toEqual(want);
      expect(plain(ThinMetadata.diffSync(ml.path, a, b))).toEqual(want);
    }
    // A copy of the metadata (a backup) reads the same.
    const copy = path.join(dir, 'meta.copy');
    fs.copyFileSync(meta, copy);
    expect(ThinMetadata.readSync(copy, { usage: true })).toEqual(md);
  } finally {
    for (const t of thins.reverse()) try { dmsetup('remove', t); } catch { /* made no further */ }
    if (poolMade) dmsetup('remove', pool);
    Loop.detachSync(ml.path);
    Loop.detachSync(dl.path);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an active pool\'s metadata device is refused offline (EBUSY), as the tools refuse it', async () => {
  await withPool({}, async (pool) => {
    await expect(ThinMetadata.read(metadataNode(pool))).rejects.toMatchObject({ code: 'EBUSY' });
    // The pool's metadata file, which a loop serves to it: O_EXCL guards no file, the library does.
    expect(() => ThinMetadata.readSync(pool.files.metadata!)).toThrow(expect.objectContaining({ code: 'ERR_DM_BUSY' }));
  });
});

test('metadata snapshots: another tool\'s is reported and never released; a dead holder\'s is released by the next reader', async () => {
  await withPool({}, async (pool) => {
    const v0 = await (await pool.createVolume(uniqueName('v'), 8 * MiB)).activate();
    for (const at of [0, 2, 4]) writeAt(v0.path, at * MiB, 'mapped');
    await v0.deactivate();
    const v1 = await pool.createVolume(uniqueName('v'), 8 * MiB);
    await withHeldSnapshot(pool.name, async () => {
      const e = await pool.metadata().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DevmapperError);
      expect(e).toMatchObject({ code: 'ERR_DM_BUSY' });
      expect((await pool.metadata({ snapshot: 'held' })).devices).toHaveLength(2);
      const st = await pool.status();
      expect(st.state === 'ok' && st.heldMetadataRoot).not.toBeNull();  // still held: release_metadata_snap below succeeds
    });
    // A holder killed while it held the snapshot: recorded with a pid that no longer runs.
    const child = spawn(process.execPath, ['-e', `
      const { ThinPool } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'lib'))});
      const pool = ThinPool.openSync(${JSON.stringify(pool.name)});
      // Three ranges read one per chunk: after the first, the snapshot is held for the rest.
      const it = pool.diff(${v0.id}, ${v1.id}, { chunkRanges: 1 })[Symbol.asyncIterator]();
      it.next().then(() => process.kill(process.pid, 'SIGKILL'), (e) => { console.error(e); process.exit(3); });
    `], { stdio: 'inherit' }) as ChildProcess;
    expect(await new Promise((r) => child.once('exit', (code, signal) => r(signal)))).toBe('SIGKILL');
    const left = await pool.status();
    if (left.state !== 'ok') throw new Error('pool not ok');
    expect(left.heldMetadataRoot).not.toBeNull();
    expect(pool.registry.metadataSnapshot()?.root).toBe(left.heldMetadataRoot);
    const md = await pool.metadata();
    expect(md.devices).toHaveLength(2);
    expect(md.heldRoot).toBeNull();
    // A holder killed between its reserve and recording the root: its record names the transaction the held
    // copy carries, so the snapshot is known for ours and released; a copy of another transaction is not.
    const dead = spawn(process.execPath, ['-e', '0']);
    const deadPid = await new Promise<number>((r) => dead.once('exit', () => r(dead.pid!)));
    const tidNow = (await pool.metadata()).transactionId;
    dmsetup('message', pool.name, '0', 'reserve_metadata_snap');
    pool.registry.setMetadataSnapshot({ pid: deadPid, start: 'gone', tid: tidNow + 1 });
    await expect(pool.metadata()).rejects.toMatchObject({ code: 'ERR_DM_BUSY' });  // not ours: kept held
    pool.registry.setMetadataSnapshot({ pid: deadPid, start: 'gone', tid: tidNow });
    expect((await pool.metadata()).devices).toHaveLength(2);  // ours: released, then read
    const after = await pool.status();
    expect(after.state === 'ok' && after.heldMetadataRoot).toBeNull();
    const st = await pool.status();
    expect(st.state === 'ok' && st.heldMetadataRoot).toBeNull();
    expect(pool.registry.metadataSnapshot()).toBeUndefined();
  });
});

test('a read waits while another read of the library holds the snapshot; a sync read cannot wait for one of its own process', async () => {
  await withPool({}, async (pool) => {
    const v0 = await (await pool.createVolume(uniqueName('v'), 8 * MiB)).activate();
    for (const at of [0, 2, 4]) writeAt(v0.path, at * MiB, 'mapped');
    await v0.deactivate();
    const v1 = await pool.createVolume(uniqueName('v'), 8 * MiB);
    const it = pool.diff(v0, v1.name, { chunkRanges: 1 })[Symbol.asyncIterator]();
    const first = await it.next();  // three ranges, one per chunk: the snapshot stays held for the rest
    expect(first.value).toMatchObject({ kind: 'leftOnly', begin: 0 });
    expect(() => pool.metadataSync()).toThrow(expect.objectContaining({ code: 'ERR_DM_IN_PROGRESS' }));
    let settled = false;
    const waiting = pool.metadata().finally(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false);
    const rest: unknown[] = [];
    for (let r = await it.next(); !r.done; r = await it.next()) rest.push(r.value);
    expect(rest).toHaveLength(2);
    expect((await waiting).devices.map((d) => d.id)).toEqual([v0.id, v1.id]);
    const st = await pool.status();
    expect(st.state === 'ok' && st.heldMetadataRoot).toBeNull();
  });
});

test('live reads while a writer keeps writing: each read is self-consistent, and no snapshot is left held', async () => {
  await withPool({ dataSize: '128M' }, async (pool) => {
    const vols = await Promise.all([0, 1, 2].map(async (i) => (await pool.createVolume(uniqueName(`w${i}`), 16 * MiB)).activate()));
    const writer = spawn('sh', ['-c', vols.map((v) => `(i=0; while [ $i -lt 200 ]; do dd if=/dev/urandom of=${v.path} bs=64k count=1 seek=$((i % 256)) oflag=direct conv=notrunc 2>/dev/null; i=$((i+1)); done) &`).join(' ') + ' wait'], { stdio: 'ignore' });
    const done = new Promise((r) => writer.once('exit', r));
    let reads = 0, running = true;
    void done.then(() => { running = false; });
    while (running || reads < 3) {
      const u = reads % 2 ? pool.usageSync() : await pool.usage();
      expect(u.devices.map((d) => d.id)).toEqual(vols.map((v) => v.id));
      for (const d of u.devices) {
        expect(d.exclusive + d.shared).toBe(d.mapped);
        expect(d.exclusive).toBe(d.mapped);  // no snapshots: nothing is shared
        expect(d.highestMappedBlock === null ? 0 : d.highestMappedBlock + 1).toBeGreaterThanOrEqual(d.mapped);
      }
      reads++;
    }
    await done;
    const st = await pool.status();
    expect(st.state === 'ok' && st.heldMetadataRoot).toBeNull();
    for (const v of vols) await v.deactivate();
  });
});

test('bad arguments are refused before any read', async () => {
  await withPool({}, async (pool) => {
    const other = await pool.createVolume(uniqueName('v'), MiB);
    for (const bad of [-1, 1.5, NaN, 2 ** 24, '', 'no\0pe', null, undefined, {}, Symbol('x')]) {
      expect(() => pool.diffSync(bad as never, other)).toThrow(DevmapperError);
      await expect((async () => { for await (const r of pool.diff(other, bad as never)) void r; })()).rejects.toBeInstanceOf(DevmapperError);
    }
    await expect(pool.metadata({ snapshot: 'live' } as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    await expect(pool.usage({ waitMs: -1 })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    await expect(pool.usage({ typo: 1 } as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    expect(() => pool.diffSync('missing-volume', other)).toThrow(expect.objectContaining({ code: 'ERR_DM_NO_SUCH_VOLUME' }));
    await expect(ThinMetadata.read('')).rejects.toBeInstanceOf(DevmapperError);
    expect(() => ThinMetadata.diffSync('/nonexistent', 0, 1)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    const st = await pool.status();
    expect(st.state === 'ok' && st.heldMetadataRoot).toBeNull();
  });
});


test('a pool with 10,000 thin ids (snapshots sharing the base\'s blocks) reads exactly as thin_dump and thin_ls', async () => {
  await withPool({ dataSize: '64M', metadataSize: '64M' }, async (pool) => {
    const base = await (await pool.createVolume(uniqueName('base'), 4 * MiB)).activate();
    writeAt(base.path, 0, Buffer.alloc(2 * MiB, 3));
    await base.deactivate();
    // The snapshots go in by raw messages, in batches (the registry names none of them: ids with no record).
    for (let first = 1; first < 10_000; first += 1000) {
      const batch = pool.dm.batch();
      for (let id = first; id < Math.min(first + 1000, 10_000); id++) batch.message(pool.name, 0, `create_snap ${id} ${id % 7 === 0 ? id - 1 : 0}`);
      await batch.run();
    }
    await base.activate();
    writeAt(base.path, 256 * 1024, Buffer.alloc(512 * 1024, 9));  // the base moves away from its 9,999 snapshots
    writeAt(base.path, 3 * MiB, 'only the base');
    await base.deactivate();
    const dev = metadataNode(pool);
    await withHeldSnapshot(pool.name, async () => {
      const md = await pool.metadata({ snapshot: 'held' });
      expect(md.devices).toHaveLength(10_000);
      expect(md.devices.map(({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }) =>
        ({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }))).toEqual(thinDump(dev, true).devices);
      const usage = await pool.usage({ snapshot: 'held' });
      expect(usage.devices.map(({ id, mapped, exclusive, shared }) => ({ id, mapped, exclusive, shared }))).toEqual(thinLs(dev, true));
      expect(usage.devices.filter((d) => d.name !== null)).toHaveLength(1);
      const want = thinDelta(dev, true, 0, 9999);
      expect(want.map((r) => r.kind).sort()).toEqual(['different', 'leftOnly']);
      expect(plain(pool.diffSync(0, 9999, { snapshot: 'held' }))).toEqual(want);
    });
  });
}, 600_000);  // 10,000 create_snap commits take minutes under TCG
