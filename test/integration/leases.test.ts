// Leases against the real kernel: volumes tied to child processes killed with SIGKILL, and to TTLs; collect()
// reclaims exactly those whose owner is gone or whose TTL ran out (deactivating active ones first), keeps the
// rest, skips a busy one with its holders, and leaves a pool whose check() is clean.
import { ChildProcess, fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ThinPool } from '../../lib';
import { uniqueName } from './helpers';
import { withPool } from './thin-helpers';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A worker (lease-worker.ts) that made its leased volumes and now runs until killed. */
async function owner(pool: ThinPool, plan: { create?: string[]; activate?: string[]; snapshots?: [string, string][] }) {
  const child = fork(path.join(__dirname, 'lease-worker.js'), [pool.name, JSON.stringify(plan)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`lease worker exited with ${code} before it was ready`)));
  });
  return { child, kill: async () => { child.kill('SIGKILL'); await exited; } };
}

const byName = <T extends { name: string }>(xs: T[]) => [...xs].sort((a, b) => a.name.localeCompare(b.name));

test('collect reclaims the volumes of a killed owner, and only those; then those of the second once it dies', async () => {
  await withPool({}, async (pool) => {
    const n = (s: string) => `${s}-${process.pid}`;
    const plain = await pool.createVolume(n('plain'), '4M');
    const base = await (await pool.createVolume(n('base'), '4M')).activate();
    const workers: { child: ChildProcess; kill(): Promise<void> }[] = [];
    let fd: number | undefined;
    try {
      const a = await owner(pool, { create: [n('a-idle'), n('a-active'), n('a-open')], activate: [n('a-active'), n('a-open')], snapshots: [[base.name, n('a-snap')]] });
      workers.push(a);
      const b = await owner(pool, { create: [n('b-vol')], activate: [n('b-vol')] });
      workers.push(b);
      // Made here for the first child: a lease names any process.
      const byParent = await pool.createVolume(n('for-a'), '4M', { lease: { pid: a.child.pid! } });
      expect(byParent.lease).toMatchObject({ pid: a.child.pid });
      const listed = await pool.list();
      expect(listed.find((v) => v.name === n('a-idle'))!.lease).toMatchObject({ pid: a.child.pid });
      expect(listed.find((v) => v.name === n('plain'))!.lease).toBeUndefined();

      // While both owners live, nothing is collected.
      expect(await pool.collect()).toEqual({ dryRun: false, collected: [], skipped: [] });

      await a.kill();
      fd = fs.openSync(`/dev/mapper/${n('a-open')}`, 'r');  // held open: skipped, not deleted
      const report = await pool.collect();
      expect(byName(report.collected).map(({ name, reason, wasActive }) => ({ name, reason, wasActive }))).toEqual([
        { name: n('a-active'), reason: 'owner-exited', wasActive: true },
        { name: n('a-idle'), reason: 'owner-exited', wasActive: false },
        { name: n('a-snap'), reason: 'owner-exited', wasActive: false },
        { name: n('for-a'), reason: 'owner-exited', wasActive: false },
      ]);
      expect(report.skipped).toHaveLength(1);
      expect(report.skipped[0]).toMatchObject({ name: n('a-open'), reason: 'owner-exited', why: 'busy', error: { code: 'EBUSY' } });
      expect(report.skipped[0].holders!.openCount).toBeGreaterThanOrEqual(1);
      expect(await pool.dm.exists(n('a-active'))).toBe(false);
      expect(byName(await pool.list()).map((v) => ({ name: v.name, active: v.active }))).toEqual(byName([
        { name: n('a-open'), active: true }, { name: n('b-vol'), active: true }, { name: n('base'), active: true }, { name: plain.name, active: false },
      ]));
      expect((await pool.check()).clean).toBe(true);

      fs.closeSync(fd);
      fd = undefined;
      expect(pool.collectSync().collected.map((c) => c.name)).toEqual([n('a-open')]);
      await b.kill();
      const dry = await pool.collect({ dryRun: true });
      expect(dry.collected.map(({ name, wasActive }) => ({ name, wasActive }))).toEqual([{ name: n('b-vol'), wasActive: true }]);
      expect(await pool.dm.exists(n('b-vol'))).toBe(true);
      expect((await pool.collect()).collected.map((c) => c.name)).toEqual([n('b-vol')]);
      expect(byName(await pool.list()).map((v) => v.name)).toEqual([n('base'), n('plain')]);
      expect((await pool.check()).clean).toBe(true);
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
      for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) await w.kill();
    }
  });
});

test('a TTL lease that runs out is collected (its owner alive or not); a renewed one and a long one are not', async () => {
  await withPool({}, async (pool) => {
    const short = await pool.createVolume(uniqueName('ttl-short'), '4M', { lease: { ttlMs: 2000 } });
    const renewed = await (await pool.createVolume(uniqueName('ttl-renewed'), '4M', { lease: { ttlMs: 2000 } })).activate();
    const long = pool.createVolumeSync(uniqueName('ttl-long'), '4M', { lease: { ttlMs: 600_000 } });
    // Both a live owner and a TTL: the TTL running out ends it.
    const both = await pool.createVolume(uniqueName('ttl-and-pid'), '4M', { lease: { pid: process.pid, ttlMs: 2000 } });
    await sleep(3000);
    const lease = await renewed.renewLease(600_000);
    expect(lease.ttlMs).toBe(600_000);
    expect(pool.volume(renewed.name)!.lease!.expiresAt).toBe(lease.expiresAt);
    const report = pool.collectSync();
    expect(byName(report.collected).map(({ name, reason, wasActive }) => ({ name, reason, wasActive }))).toEqual(byName([
      { name: short.name, reason: 'expired', wasActive: false }, { name: both.name, reason: 'expired', wasActive: false },
    ]));
    expect(report.skipped).toEqual([]);
    expect(byName(await pool.list()).map((v) => v.name)).toEqual(byName([renewed, long]).map((v) => v.name));
    expect(await renewed.isActive()).toBe(true);
    expect((await pool.check()).clean).toBe(true);
  });
});
