// DeviceMapper and ThinPool over a scripted binding (fake-kernel.ts): the requests the library builds and the
// decisions its recovery makes, on the host. The same behaviour is tested against the real kernel in the VM.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeviceMapper, DevmapperError, ThinPool, sectors } from '../../lib';
import { FakeKernel } from './fake-kernel';

const zero = [{ start: sectors(0), length: sectors(8), type: 'zero', params: '' }];

function kernelAndDm() {
  const k = new FakeKernel();
  return { k, dm: new DeviceMapper({ binding: k.binding, nodes: 'none' }) };
}

test('createDevice sends CREATE, LOAD and RESUME in one batch; the promise form and the sync twin send the same', async () => {
  const a = kernelAndDm(), b = kernelAndDm();
  const info = await a.dm.createDevice('dev0', zero, { uuid: 'U-0', readOnly: true });
  const infoSync = b.dm.createDeviceSync('dev0', zero, { uuid: 'U-0', readOnly: true });
  expect(a.k.calls).toEqual(b.k.calls);
  expect(a.k.calls.map((c) => c.cmd)).toEqual(['DM_DEV_CREATE', 'DM_TABLE_LOAD', 'DM_DEV_SUSPEND']);
  expect(a.k.calls[0]).toMatchObject({ name: 'dev0', uuid: 'U-0' });
  expect(a.k.calls[1].targets).toEqual([{ start: 0, length: 8, type: 'zero', params: '' }]);
  expect(info).toEqual(infoSync);
  expect(info).toMatchObject({ name: 'dev0', uuid: 'U-0', liveTable: true, suspended: false, readOnly: true });
});

test('createDevice removes the device again when LOAD fails, and the error says how many commands ran', async () => {
  for (const sync of [false, true]) {
    const { k, dm } = kernelAndDm();
    k.failNext.set('DM_TABLE_LOAD', os.constants.errno.EINVAL);
    const run = () => (sync ? Promise.resolve().then(() => dm.createDeviceSync('dev1', zero)) : dm.createDevice('dev1', zero));
    await expect(run()).rejects.toMatchObject({ code: 'EINVAL', command: 'DM_TABLE_LOAD', device: 'dev1', completed: 1 });
    expect(k.calls.map((c) => c.cmd)).toEqual(['DM_DEV_CREATE', 'DM_TABLE_LOAD', 'DM_DEV_REMOVE']);
    expect(k.devices.size).toBe(0);
  }
});

test('a wait ends with one error built for its reason: timeout, abort, close; close() gives the control fd back once', async () => {
  const { k, dm } = kernelAndDm();
  await dm.createDevice('w', zero);
  await expect(dm.wait('w', 0, { timeoutMs: 5 })).rejects.toMatchObject({ code: 'ERR_DM_TIMEOUT', command: 'DM_DEV_WAIT', device: 'w' });
  const ac = new AbortController();
  const aborted = dm.wait('w', 0, { signal: ac.signal });
  ac.abort();
  await expect(aborted).rejects.toMatchObject({ code: 'ERR_DM_ABORTED' });
  const pending = dm.wait('w', 0);
  dm.close();
  await expect(pending).rejects.toMatchObject({ code: 'ERR_DM_CLOSED' });
  dm.close();
  expect(k.closed).toHaveLength(1);
  expect(() => dm.infoSync('w')).toThrow(expect.objectContaining({ code: 'ERR_DM_CLOSED' }));
});

// A thin-pool device in the fake kernel, as create() would leave it, and a registry beside it.
function fakePool() {
  const { k, dm } = kernelAndDm();
  dm.createDeviceSync('fpool', [{ start: sectors(0), length: sectors(128 * 100), type: 'thin-pool', params: '250:1 250:0 128 10 0' }],
    { uuid: 'DEVMAPPER-POOL-fpool' });
  k.calls.length = 0;
  const registryDir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-fake-'));
  return { k, dm, registryDir };
}
const messages = (k: FakeKernel) => k.calls.filter((c) => c.cmd === 'DM_TARGET_MSG').map((c) => c.data);

test('createVolume follows the protocol: create_thin, then set_transaction_id; the sync twin sends the same', async () => {
  const runs = [];
  for (const sync of [false, true]) {
    const { k, dm, registryDir } = fakePool();
    const pool = sync ? ThinPool.openSync('fpool', { dm, registryDir }) : await ThinPool.open('fpool', { dm, registryDir });
    const v = sync ? pool.createVolumeSync('base', 1 << 20) : await pool.createVolume('base', 1 << 20);
    expect(v).toMatchObject({ name: 'base', id: 0, size: 2048 });
    expect(k.tid).toBe(1);
    runs.push(messages(k));
    pool.closeSync();
    fs.rmSync(registryDir, { recursive: true });
  }
  expect(runs[0]).toEqual(['create_thin 0', 'set_transaction_id 0 1']);
  expect(runs[1]).toEqual(runs[0]);
});

test('open() finishes what a crashed change left: a create killed after its message is rolled back, one killed after its commit is kept', async () => {
  for (const killAfter of ['intent', 'message'] as const) {
    const { k, dm, registryDir } = fakePool();
    const crash = new Error(`killed after ${killAfter}`);
    const pool = await ThinPool.open('fpool', { dm, registryDir, hooks: { step: (s) => { if (s === killAfter) throw crash; } } });
    await expect(pool.createVolume('v', 1 << 20)).rejects.toBe(crash);
    expect(k.thins.has(0)).toBe(killAfter === 'message');
    pool.registry.close();  // the process is gone: nothing else runs
    k.calls.length = 0;
    const again = await ThinPool.open('fpool', { dm, registryDir });
    expect(again.volume('v')).toBeUndefined();
    expect(again.registry.pending()).toBeUndefined();
    expect(k.thins.size).toBe(0);
    expect(k.tid).toBe(0);
    expect(messages(k)).toEqual(['delete 0']);  // ENODATA for a thin never made counts as done
    await again.close();
    fs.rmSync(registryDir, { recursive: true });
  }
  const { k, dm, registryDir } = fakePool();
  const crash = new Error('killed after commit');
  const pool = await ThinPool.open('fpool', { dm, registryDir, hooks: { step: (s) => { if (s === 'commit') throw crash; } } });
  await expect(pool.createVolume('v', 1 << 20)).rejects.toBe(crash);
  pool.registry.close();
  k.calls.length = 0;
  const again = await ThinPool.open('fpool', { dm, registryDir });
  expect(again.volume('v')).toMatchObject({ id: 0 });
  expect(again.registry.pending()).toBeUndefined();
  expect(messages(k)).toEqual([]);
  await again.close();
  fs.rmSync(registryDir, { recursive: true });
});

test('a delete killed after its intent is finished by open(), never rolled back', async () => {
  const { k, dm, registryDir } = fakePool();
  let kill = false;
  const crash = new Error('killed');
  const pool = await ThinPool.open('fpool', { dm, registryDir, hooks: { step: (s, c) => { if (kill && s === 'intent' && c.op === 'delete') throw crash; } } });
  await pool.createVolume('v', 1 << 20);
  kill = true;
  await expect(pool.deleteVolume('v')).rejects.toBe(crash);
  expect(k.thins.has(0)).toBe(true);
  pool.registry.close();
  k.calls.length = 0;
  const again = await ThinPool.open('fpool', { dm, registryDir });
  expect(again.volume('v')).toBeUndefined();
  expect(k.thins.size).toBe(0);
  expect(messages(k)).toEqual(['delete 0', 'set_transaction_id 1 2']);
  await again.close();
  fs.rmSync(registryDir, { recursive: true });
});

test('a snapshot origin from another pool is refused, not resolved by name', async () => {
  const a = fakePool();
  const pool = await ThinPool.open('fpool', { dm: a.dm, registryDir: a.registryDir });
  const base = await pool.createVolume('base', 1 << 20);
  const other = { name: 'other', dm: a.dm, devSpec: '250:9' };
  const foreign = Object.assign(Object.create(Object.getPrototypeOf(base)), base, { pool: other });
  await expect(pool.snapshot(foreign, 'snap')).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
  expect(() => pool.snapshotSync(foreign, 'snap')).toThrow(DevmapperError);
  expect(pool.volume('snap')).toBeUndefined();
  await pool.close();
  fs.rmSync(a.registryDir, { recursive: true });
});
