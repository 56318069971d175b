// Leases on the host: createVolume's and snapshot's `{ lease }`, renewLease and collect refuse bad input before
// any ioctl; and over the scripted kernel (fake-kernel.ts), collect() deletes exactly the volumes whose owner
// is gone or whose TTL ran out, skipping a busy one with its holders. The real kernel is tested in the VM
// (test/integration/leases.test.ts).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DevmapperError, MAX_LEASE_TTL_MS, MAX_PID, ThinPool } from '../../lib';
import { leaseEnded } from '../../lib/thin/leases';
import { FakeKernel, scriptedPoolDevice } from './fake-kernel';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-leases-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let pools = 0;
/** A thin-pool device in the scripted kernel, as create() leaves one, opened with a registry of its own. */
function scriptedPool(): { pool: ThinPool; k: FakeKernel } {
  const name = `lease-pool-${++pools}`;
  const { k, dm } = scriptedPoolDevice(name);
  const registryDir = path.join(tmp, name);
  fs.mkdirSync(registryDir);
  return { pool: ThinPool.openSync(name, { dm, registryDir }), k };
}

/** A child process that runs until killed; `kill()` resolves once it has exited and been reaped. */
function child(): { pid: number; kill(): Promise<void> } {
  const c = spawn('sleep', ['1000'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  return { pid: c.pid!, kill: () => { c.kill('SIGKILL'); return exited; } };
}

const show = (v: unknown): string => { try { return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v); } catch { return String(v); } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function refusedBoth(label: string, sync: () => unknown, promise: () => Promise<unknown>): Promise<void> {
  let thrown: unknown;
  try { sync(); } catch (e) { thrown = e; }
  expect(thrown).toBeInstanceOf(DevmapperError);
  expect({ label, code: (thrown as DevmapperError).code }).toEqual({ label, code: 'ERR_DM_INVALID_ARGUMENT' });
  let p: Promise<unknown> | undefined;
  expect(() => { p = promise(); }).not.toThrow();
  const rejected = await p!.then(() => undefined, (e: unknown) => e);
  expect(rejected).toBeInstanceOf(DevmapperError);
  expect({ label, code: (rejected as DevmapperError).code }).toEqual({ label, code: 'ERR_DM_INVALID_ARGUMENT' });
}

describe('lease options are checked before any ioctl', () => {
  const BAD_LEASES: unknown[] = [
    null, 5, 'pid', [], new Map(), {}, { pid: undefined, ttlMs: undefined }, { owner: 1 }, { pid: 1, ttl: 5 },
    { pid: 0 }, { pid: -1 }, { pid: 1.5 }, { pid: NaN }, { pid: Infinity }, { pid: MAX_PID + 1 }, { pid: '1' }, { pid: 2n },
    { ttlMs: 0 }, { ttlMs: -5 }, { ttlMs: 0.5 }, { ttlMs: NaN }, { ttlMs: Infinity }, { ttlMs: MAX_LEASE_TTL_MS + 1 }, { ttlMs: '1000' },
    { pid: process.pid, ttlMs: -1 }, { [Symbol('s')]: 1, pid: process.pid },
  ];
  const BAD_OPTIONS: unknown[] = [null, 5, 'lease', [], { leese: { pid: process.pid } }, { lease: { pid: process.pid }, extra: 1 },
    ...BAD_LEASES.map((lease) => ({ lease }))];

  test('createVolume, snapshot: bad option objects and lease shapes', async () => {
    const { pool, k } = scriptedPool();
    try {
      pool.createVolumeSync('origin', '1M');
      const before = k.calls.length;
      for (const o of BAD_OPTIONS) {
        await refusedBoth(`createVolume ${show(o)}`, () => pool.createVolumeSync('v', '1M', o as never), () => pool.createVolume('v', '1M', o as never));
        await refusedBoth(`snapshot ${show(o)}`, () => pool.snapshotSync('origin', 's', o as never), () => pool.snapshot('origin', 's', o as never));
      }
      expect(k.calls.length).toBe(before);
      expect(pool.listSync().map((v) => v.name)).toEqual(['origin']);
    } finally {
      pool.closeSync();
    }
  });

  test('a lease for a process that does not run is refused', async () => {
    const { pool, k } = scriptedPool();
    try {
      const c = child();
      await c.kill();
      const before = k.calls.length;
      await refusedBoth('dead pid', () => pool.createVolumeSync('v', '1M', { lease: { pid: c.pid } }), () => pool.createVolume('v', '1M', { lease: { pid: c.pid } }));
      expect(k.calls.length).toBe(before);
    } finally {
      pool.closeSync();
    }
  });

  test('renewLease and collect: bad ttl, bad options; a volume with no lease, or no TTL, is not renewed', async () => {
    const { pool, k } = scriptedPool();
    try {
      const plain = pool.createVolumeSync('plain', '1M');
      const owned = pool.createVolumeSync('owned', '1M', { lease: { pid: process.pid } });
      const before = k.calls.length;
      for (const ttl of [0, -1, 1.5, NaN, Infinity, MAX_LEASE_TTL_MS + 1, '10', null, {}]) {
        await refusedBoth(`pool.renewLease ${String(ttl)}`, () => pool.renewLeaseSync('owned', ttl as never), () => pool.renewLease('owned', ttl as never));
        await refusedBoth(`volume.renewLease ${String(ttl)}`, () => owned.renewLeaseSync(ttl as never), () => owned.renewLease(ttl as never));
      }
      for (const o of [null, 5, [], { dryrun: true }, { dryRun: 1 }, { dryRun: 'yes' }])
        await refusedBoth(`collect ${show(o)}`, () => pool.collectSync(o as never), () => pool.collect(o as never));
      await refusedBoth('no lease', () => plain.renewLeaseSync(1000), () => plain.renewLease(1000));
      await refusedBoth('no TTL', () => owned.renewLeaseSync(), () => owned.renewLease());
      expect(k.calls.length).toBe(before);
    } finally {
      pool.closeSync();
    }
  });
});

describe('leases over the scripted kernel', () => {
  test('the lease is in the record: volume.lease, list(), volume(); renewLease moves the expiry', async () => {
    const { pool } = scriptedPool();
    try {
      const v = await pool.createVolume('v', '1M', { lease: { pid: process.pid, ttlMs: 60_000 } });
      expect(v.lease).toMatchObject({ pid: process.pid, ttlMs: 60_000 });
      expect(typeof v.lease!.pidStart).toBe('string');
      expect(pool.listSync()[0].lease).toEqual(v.lease);
      expect(pool.volume('v')!.lease).toEqual(v.lease);
      const s = pool.snapshotSync(v, 's', { lease: { ttlMs: 1000 } });
      expect(s.lease).toEqual({ ttlMs: 1000, expiresAt: expect.any(Number) });
      expect(pool.snapshotSync('v', 'plain').lease).toBeUndefined();
      const before = v.lease!.expiresAt!;
      await sleep(5);
      const renewed = await v.renewLease(120_000);
      expect(renewed.ttlMs).toBe(120_000);
      expect(renewed.expiresAt!).toBeGreaterThan(before);
      expect(v.lease).toEqual(renewed);
      expect(pool.volume('v')!.lease).toEqual(renewed);
      expect(pool.renewLeaseSync('s').ttlMs).toBe(1000);  // its own ttl by default
    } finally {
      pool.closeSync();
    }
  });

  test('collect deletes exactly the volumes whose owner exited or whose TTL ran out; dryRun only reports', async () => {
    const { pool, k } = scriptedPool();
    const dead = child(), live = child();
    try {
      pool.createVolumeSync('dead-idle', '1M', { lease: { pid: dead.pid } });
      (await pool.createVolume('dead-active', '1M', { lease: { pid: dead.pid } })).activateSync();
      pool.createVolumeSync('live', '1M', { lease: { pid: live.pid } });
      pool.createVolumeSync('plain', '1M');
      pool.createVolumeSync('ttl-short', '1M', { lease: { ttlMs: 1 } });
      pool.createVolumeSync('ttl-renewed', '1M', { lease: { ttlMs: 1 } });
      pool.snapshotSync('dead-idle', 'child-of-dead');
      await dead.kill();
      await sleep(20);
      pool.renewLeaseSync('ttl-renewed', 60_000);

      const dry = await pool.collect({ dryRun: true });
      expect(dry.dryRun).toBe(true);
      const expected = [
        { name: 'dead-active', reason: 'owner-exited', wasActive: true },
        { name: 'dead-idle', reason: 'owner-exited', wasActive: false },
        { name: 'ttl-short', reason: 'expired', wasActive: false },
      ];
      expect(dry.collected.map(({ name, reason, wasActive }) => ({ name, reason, wasActive })).sort((a, b) => a.name.localeCompare(b.name))).toEqual(expected);
      expect(pool.listSync()).toHaveLength(7);

      const report = pool.collectSync();
      expect(report.skipped).toEqual([]);
      expect(report.collected.map(({ name, reason, wasActive }) => ({ name, reason, wasActive })).sort((a, b) => a.name.localeCompare(b.name))).toEqual(expected);
      expect(pool.listSync().map((v) => v.name).sort()).toEqual(['child-of-dead', 'live', 'plain', 'ttl-renewed']);
      expect(pool.volume('child-of-dead')!.parent).toBeNull();  // its origin went; it keeps its data
      expect(k.devices.has('dead-active')).toBe(false);
      expect((await pool.collect()).collected).toEqual([]);
    } finally {
      await live.kill();
      pool.closeSync();
    }
  });

  test('a busy volume is skipped and reported with its holders; the others are collected', async () => {
    const { pool, k } = scriptedPool();
    const owner = child();
    try {
      pool.createVolumeSync('open', '1M', { lease: { pid: owner.pid } }).activateSync();
      pool.createVolumeSync('idle', '1M', { lease: { pid: owner.pid } });
      await owner.kill();
      k.devices.get('open')!.openCount = 2;
      const report = await pool.collect();
      expect(report.collected.map((c) => c.name)).toEqual(['idle']);
      expect(report.skipped).toHaveLength(1);
      const [s] = report.skipped;
      expect(s).toMatchObject({ name: 'open', reason: 'owner-exited', why: 'busy', holders: { openCount: 2, devices: [], mounts: [] } });
      expect(s.error).toMatchObject({ code: 'EBUSY', command: 'DM_DEV_REMOVE', holders: { openCount: 2 } });
      expect(s.error.message).toMatch(/open is held: open 2 times/);
      expect(pool.volume('open')).toBeDefined();  // nothing lost: the delete was undone
      k.devices.get('open')!.openCount = 0;
      expect(pool.collectSync().collected.map((c) => c.name)).toEqual(['open']);
    } finally {
      pool.closeSync();
    }
  });
});

test('collect skips a volume the kernel refuses (why: error) and goes on; an error of the pool itself is thrown', async () => {
  const { pool, k } = scriptedPool();
  const owner = child();
  try {
    pool.createVolumeSync('a-refused', '1M', { lease: { pid: owner.pid } }).activateSync();
    pool.createVolumeSync('b-other', '1M', { lease: { pid: owner.pid } });
    await owner.kill();
    k.failNext.set('DM_DEV_REMOVE', os.constants.errno.EIO);
    const report = pool.collectSync();
    expect(report.collected.map((c) => c.name)).toEqual(['b-other']);
    expect(report.skipped).toMatchObject([{ name: 'a-refused', reason: 'owner-exited', why: 'error', error: { code: 'EIO', command: 'DM_DEV_REMOVE' } }]);
    expect(pool.volume('a-refused')).toBeDefined();
    // A sync call while a promise call of this process holds the pool: the collect itself fails.
    const running = pool.createVolume('meanwhile', '1M');
    expect(() => pool.collectSync()).toThrow(expect.objectContaining({ code: 'ERR_DM_IN_PROGRESS' }));
    await running;
    expect((await pool.collect()).collected.map((c) => c.name)).toEqual(['a-refused']);
  } finally {
    pool.closeSync();
  }
});

test('leaseEnded: a reused pid, another boot, another pid namespace, a malformed lease', () => {
  const now = Date.now();
  expect(leaseEnded(undefined, now)).toBeUndefined();
  expect(leaseEnded({ pid: process.pid, pidStart: 'not-its-start' }, now)).toBe('owner-pid-reused');
  const bootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  const start = fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19];
  expect(leaseEnded({ pid: process.pid, pidStart: start, bootId }, now)).toBeUndefined();
  expect(leaseEnded({ pid: process.pid, pidStart: start, bootId: 'another-boot' }, now)).toBe('owner-exited');
  // Taken in another pid namespace: the pid says nothing here; its TTL still counts.
  expect(leaseEnded({ pid: process.pid, pidStart: 'x', pidNamespace: 'pid:[1]' }, now)).toBeUndefined();
  expect(leaseEnded({ pid: process.pid, pidStart: 'x', pidNamespace: 'pid:[1]', expiresAt: now - 1 }, now)).toBe('expired');
  expect(leaseEnded({ pid: '1' as never, expiresAt: 'soon' as never }, now)).toBeUndefined();
  expect(leaseEnded({ ttlMs: 10, expiresAt: now + 10 }, now)).toBeUndefined();
  expect(leaseEnded({ ttlMs: 10, expiresAt: now }, now)).toBe('expired');
});
