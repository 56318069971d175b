// The offload worker's plumbing on the host: errors as plain data and back, and a worker's shadow pool on the
// same registry as this thread (one LMDB environment per file per process, shared natively). What it runs
// against the kernel is tested in test/integration/offload.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DevmapperError, LmdbRegistry, ThinPool, ThinVolume, sectors } from '../../lib';
import { changesOf, deleteWaitsLong, waitsLong } from '../../lib/thin/changes';
import { scriptedPoolDevice } from './fake-kernel';
import { ClonedError, cloneError, dmError, errorFromClone, kernelError } from '../../lib/core/errors';
import { RemotePool, offloadWorkerState, stopOffloadWorker } from '../../lib/thin/offload';
import { native } from '../../lib/core/binding';
import { poolLockFile } from '../../lib/thin/provisioning';

test('an error made plain and made again keeps its class, fields and stack', () => {
  const busy = dmError('ERR_DM_BUSY', 'open', 'vol', { holders: { openCount: 1, devices: [], mounts: [{ pid: 7, mountPoint: '/mnt' }] } });
  const back = errorFromClone(structuredClone(cloneError(busy))) as DevmapperError;
  expect(back).toBeInstanceOf(DevmapperError);
  expect(back).toEqual(busy);
  expect({ ...back }).toEqual({ ...busy });
  expect(back.stack).toBe(busy.stack);
  const k = kernelError({ errno: os.constants.errno.EBUSY, syscall: 'ioctl', command: 'DM_DEV_REMOVE', target: 'v', strerror: 'Device or resource busy', detail: '' } as never);
  k.completed = 2;
  expect({ ...(errorFromClone(structuredClone(cloneError(k))) as object) }).toEqual({ ...k });
  const sys = Object.assign(new Error('nope'), { code: 'ENOENT' });
  const s = errorFromClone(structuredClone(cloneError(sys))) as NodeJS.ErrnoException;
  expect(s).toBeInstanceOf(Error);
  expect([s.message, s.code, s.name]).toEqual(['nope', 'ENOENT', 'Error']);
  // Node's system-error fields, and causes: set by the constructor (hidden) or assigned (as pool-mode.ts does).
  const io = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES', errno: -13, syscall: 'open', path: '/x' });
  const wrapped = new Error('open failed', { cause: io });
  const back2 = errorFromClone(structuredClone(cloneError(wrapped))) as Error;
  expect(back2.cause).toMatchObject({ code: 'EACCES', errno: -13, syscall: 'open', path: '/x', message: io.message });
  expect(Object.getOwnPropertyDescriptor(back2, 'cause')!.enumerable).toBe(false);
  const state = dmError('ERR_DM_POOL_STATE', 'the pool is read-only', 'pool0', { mode: 'read_only' } as never);
  state.cause = k;
  const back3 = errorFromClone(structuredClone(cloneError(state))) as DevmapperError;
  expect(back3).toBeInstanceOf(DevmapperError);
  expect({ ...back3 }).toEqual({ ...state });
  expect(back3.cause).toBeInstanceOf(DevmapperError);
  expect({ ...(back3.cause as object) }).toEqual({ ...k });
  expect(errorFromClone(structuredClone(cloneError('text')))).toBe('text');
  expect(errorFromClone(structuredClone(cloneError({ toString: () => 'obj' })))).toBe('obj');
});

test('the worker\'s shadow pool reads and writes the registry this thread has open; its errors come back typed', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offload-'));
  const registry = LmdbRegistry.open(dir);
  try {
    const rec = { name: 'v', id: 3, size: sectors(2048), parent: null, state: 'ready' as const, created: 1 };
    registry.commit({ put: [rec], takeIds: [3] });
    const remote = new RemotePool({ name: 'no-such-pool', dev: { major: 253, minor: 99 }, params: {
      metadataDev: '7:0', dataDev: '7:1', blockSize: sectors(128), lowWaterMark: 0 }, registryDir: dir });
    // Same size: the record is read and given back, no ioctl.
    const same = await remote.call({ method: 'resizeVolume', args: ['v', 2048 * 512] }, undefined, 'try');
    expect(same).toMatchObject({ ok: true, value: rec });
    const missing = await remote.call({ method: 'resizeVolume', args: ['w', 512] }, undefined, 'try');
    expect(missing).toMatchObject({ ok: false });
    const e = errorFromClone((missing as { error: ClonedError }).error);
    expect(e).toBeInstanceOf(DevmapperError);
    expect(e).toMatchObject({ code: 'ERR_DM_NO_SUCH_VOLUME', device: 'w' });
    const shrink = await remote.call({ method: 'resizeVolume', args: ['v', 512] }, undefined, 'held');
    expect(errorFromClone((shrink as { error: ClonedError }).error)).toMatchObject({ code: 'ERR_DM_INVALID_SIZE' });
    // The lock file held elsewhere (here, as by another process): handed back before anything runs.
    const fd = native.lockFile(poolLockFile('no-such-pool', dir));
    try {
      expect(await remote.call({ method: 'resizeVolume', args: ['v', 4096 * 512] }, undefined, 'try')).toEqual({ id: expect.any(Number), busy: true });
      expect(registry.get('v')).toEqual(rec);
    } finally {
      fs.closeSync(fd);
    }
    remote.drop();
    expect(registry.get('v')).toEqual(rec);
  } finally {
    registry.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A pool on the scripted kernel with a link to the worker (which has no scripted kernel: it may run only
 * what needs no ioctl), closed and removed after `fn`. */
async function withScriptedRemote(name: string, fn: (pool: ThinPool, registryDir: string) => Promise<void>): Promise<void> {
  const registryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'offload-pool-'));
  const { dm } = scriptedPoolDevice(name);
  const pool = ThinPool.openSync(name, { dm, registryDir, check: false });
  try {
    pool.createVolumeSync('v', '1M');
    changesOf(pool).remote = new RemotePool({ name: pool.name, dev: pool.dev, params: pool.params, registryDir });
    await fn(pool, registryDir);
  } finally {
    await pool.close();
    fs.rmSync(registryDir, { recursive: true, force: true });
  }
}

test('a pool\'s promise change through the worker: checked here first, queued with the process\'s calls, answered as here', async () => {
  await withScriptedRemote('offload-pool', async (pool) => {
    const v = pool.volume('v')!;
    // A resize to the same size reads the record under the lock and gives it back: no ioctl.
    const same = pool.resizeVolume('v', '1M');
    expect(() => pool.createVolumeSync('w', '1M')).toThrow(expect.objectContaining({ code: 'ERR_DM_IN_PROGRESS' }));
    expect(await same).toEqual(ThinVolume.recordOf(v));
    await expect(pool.resizeVolume('nope', '1M')).rejects.toMatchObject({ code: 'ERR_DM_NO_SUCH_VOLUME', device: 'nope' });
    await expect(pool.resizeVolume('v', '512K')).rejects.toBeInstanceOf(DevmapperError);
    // Refused here, before anything is sent: bad names, sizes and options, and another pool's volume.
    await expect(pool.resizeVolume('a/b', '1M')).rejects.toMatchObject({ code: 'ERR_DM_INVALID_NAME' });
    await expect(pool.resizeVolume('v', Number.NaN)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_SIZE' });
    await expect(pool.createVolume('x', '1M', { lease: { ttlMs: -1 } })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    await expect(v.activate({ readOnly: 1 } as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    const hostile = new Proxy({}, { ownKeys: () => { throw new Error('trap'); } });
    await expect(v.activate(hostile as never)).rejects.toBeDefined();  // never a throw from the promise method
    // A deactivate that may wait longer than the default retries stays here (the worker, which has no scripted
    // kernel, would fail it): so do a delete's and deleteVolume's.
    await v.deactivate({ retries: 100, retryDelayMs: 100 });
    expect([waitsLong({}), waitsLong({ retries: 20, retryDelayMs: 50 }), waitsLong({ retryDelayMs: 51 }), waitsLong({ deferred: true })]).toEqual([false, false, true, false]);
    expect(deleteWaitsLong({ deactivate: { retries: 21 } })).toBe(true);
    expect(deleteWaitsLong(new Proxy({}, { getOwnPropertyDescriptor: () => { throw new Error('trap'); } }))).toBe(true);
    // A plain record the worker sent back is this pool's volume, with the pool as its pool.
    await v.resize('1M');
    expect(v.pool).toBe(pool);
    expect(pool.registry.pending()).toMatchObject({ op: 'create', name: 'v' });  // a resize to the same size writes nothing
  });
});

test('the worker lives while a pool uses it, and ends 10 s after the last one is closed unless another comes', async () => {
  const answered = async () => { while (offloadWorkerState().calls > 0) await new Promise((r) => setImmediate(r)); };
  await answered();  // the drops of the tests before
  jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'offload-'));
  const registry = LmdbRegistry.open(dir);
  try {
    const spec = { name: 'no-such-pool', dev: { major: 253, minor: 99 }, params: {
      metadataDev: '7:0', dataDev: '7:1', blockSize: sectors(128), lowWaterMark: 0 }, registryDir: dir };
    const a = new RemotePool(spec), b = new RemotePool(spec);
    a.warm();
    const first = offloadWorkerState();
    expect(first.threadId).toBeGreaterThan(0);
    expect(first).toMatchObject({ calls: 0, idle: false });
    b.warm();
    expect(offloadWorkerState()).toEqual({ ...first, pools: first.pools + 1 });
    // A call and its shadow's drop, answered: one pool still uses the worker.
    registry.commit({ put: [{ name: 'v', id: 0, size: sectors(8), parent: null, state: 'ready', created: 1 }], takeIds: [0] });
    expect(await a.call({ method: 'resizeVolume', args: ['v', 4096] }, undefined, 'try')).toMatchObject({ ok: true });
    const dropped = a.call({ method: 'resizeVolume', args: ['v', 4096] }, undefined, 'try');
    a.drop();
    await dropped;
    await answered();
    jest.advanceTimersByTime(60_000);
    expect(offloadWorkerState()).toEqual({ ...first, pools: first.pools });
    // The last pool closed (it had sent nothing): idle, and kept for a new pool within 10 s.
    b.drop();
    expect(offloadWorkerState()).toEqual({ threadId: first.threadId, pools: 0, calls: 0, idle: true, holdsLock: false });
    jest.advanceTimersByTime(9_000);
    const c = new RemotePool(spec);
    c.warm();
    expect(offloadWorkerState()).toEqual({ threadId: first.threadId, pools: 1, calls: 0, idle: false, holdsLock: false });
    c.drop();
    jest.advanceTimersByTime(9_999);
    expect(offloadWorkerState()).toMatchObject({ threadId: first.threadId, idle: true });
    jest.advanceTimersByTime(1);
    expect(offloadWorkerState()).toEqual({ pools: 0, calls: 0, idle: false });  // ended
    // The next pool starts another.
    const d = new RemotePool(spec);
    d.warm();
    expect(offloadWorkerState().threadId).toBeGreaterThan(first.threadId!);
    d.drop();
    jest.runOnlyPendingTimers();
    expect(offloadWorkerState()).toEqual({ pools: 0, calls: 0, idle: false });
  } finally {
    jest.useRealTimers();
    registry.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the offload option is a boolean, checked before anything is touched', async () => {
  for (const v of [1, 'no', null, Number.NaN, {}]) {
    expect(() => ThinPool.openSync('p', { offload: v as never })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
    await expect(ThinPool.open('p', { offload: v as never })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    await expect(ThinPool.attach({ name: 'p', dataFile: '/nonexistent/data', offload: v as never })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    await expect(ThinPool.create({ name: 'p', dataFile: '/nonexistent/data', dataSize: '1G', offload: v as never })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
  }
});

// Last in this file: once a worker has died, this process's calls all run on the calling thread.
test('a worker that died: the changes queued for it run here, each in its place in the queue, and later calls run here', async () => {
  await withScriptedRemote('offload-dead', async (pool, registryDir) => {
    const v = pool.volume('v')!;
    // The lock file held (as by another process): the worker hands the first change back, and it waits here.
    const lockFd = native.lockFile(poolLockFile(pool.name, registryDir));
    const first = pool.resizeVolume('v', '1M');
    const queued = pool.createVolume('w', '1M');  // for the worker, which the scripted kernel is not on
    const tick = () => new Promise((r) => setTimeout(r, 2));
    for (let i = 0; i < 5000 && offloadWorkerState().calls === 0; i++) await tick();
    for (let i = 0; i < 5000 && offloadWorkerState().calls > 0; i++) await tick();
    expect(offloadWorkerState()).toMatchObject({ calls: 0, holdsLock: false });
    await stopOffloadWorker();
    fs.closeSync(lockFd);
    const later = pool.deleteVolume('w');  // made after: here, behind the create
    expect(await first).toEqual(ThinVolume.recordOf(v));
    expect(await queued).toMatchObject({ name: 'w', id: 1 });
    await later;
    expect(pool.volume('w')).toBeUndefined();
    expect(pool.registry.pending()).toMatchObject({ op: 'delete', name: 'w' });
    expect(offloadWorkerState()).toEqual({ pools: 0, calls: 0, idle: false });
  });
});
