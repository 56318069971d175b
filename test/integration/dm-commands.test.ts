// Every DM command against the real kernel, through both the promise API and the sync twins.
import fs from 'node:fs';
import { DeviceMapper, Target, mapperPath, sectors } from '../../lib';
import { native } from '../../lib/core/binding';
import { eventually, removeQuietly, scratchLoop, swapTable, uniqueName } from './helpers';

const dm = new DeviceMapper();
afterAll(() => dm.close());

const zero = (len: number): Target[] => [{ start: sectors(0), length: sectors(len), type: 'zero', params: '' }];

test('VERSION and LIST_VERSIONS / GET_TARGET_VERSION', async () => {
  const v = await dm.kernelVersion();
  expect(v.major).toBe(4);
  expect(dm.kernelVersionSync()).toEqual(v);
  const types = (await dm.targetVersions()).map((t) => t.name);
  expect(types).toEqual(expect.arrayContaining(['linear', 'striped', 'error', 'zero', 'thin-pool', 'thin']));
  const thin = await dm.targetVersion('thin-pool');
  expect(thin.name).toBe('thin-pool');
  expect(thin.version.major).toBe(1);
  expect(dm.targetVersionSync('linear').name).toBe('linear');
});

test('CREATE, TABLE_LOAD, DEV_SUSPEND (resume), DEV_STATUS, TABLE_STATUS, REMOVE; node made and removed', async () => {
  const name = uniqueName('cmd');
  const created = await dm.create(name, { uuid: `DEVMAPPER-${name}` });
  expect(created).toMatchObject({ name, uuid: `DEVMAPPER-${name}`, liveTable: false, inactiveTable: false });
  const loaded = await dm.load(name, zero(4096));
  expect(loaded.inactiveTable).toBe(true);
  expect((await dm.table(name, { inactive: true }))[0]).toMatchObject({ type: 'zero', length: 4096 });
  const resumed = await dm.resume(name);
  expect(resumed).toMatchObject({ liveTable: true, inactiveTable: false, suspended: false, targetCount: 1 });
  expect(fs.statSync(mapperPath(name)).isBlockDevice()).toBe(true);
  const info = await dm.info(name);
  expect(info.dev).toEqual(created.dev);
  expect(await dm.table(name)).toEqual(zero(4096));
  expect(await dm.status(name)).toEqual([{ start: 0, length: 4096, type: 'zero', params: '' }]);
  expect(dm.existsSync(name)).toBe(true);
  await dm.remove(name);
  expect(fs.existsSync(mapperPath(name))).toBe(false);
  expect(await dm.exists(name)).toBe(false);
});

test('without udev: resume makes the node (0600, right dev) over a stale one; remove unlinks it; sync and promise', async () => {
  const a = uniqueName('node'), b = uniqueName('node');
  try {
    // A stale node (a leftover naming another device, mode 0644) where a's node goes: resume replaces it.
    native.ensureBlockNode(mapperPath(a), { major: 7, minor: 255, mode: 0o644 });
    const info = await dm.createDevice(a, zero(128));
    const st = fs.statSync(mapperPath(a));
    expect(st.isBlockDevice() && st.mode & 0o777).toBe(0o600);
    expect(native.deviceNumber(mapperPath(a))).toEqual(info.dev);
    dm.createSync(b);
    dm.loadSync(b, zero(128));
    const infoB = dm.resumeSync(b);
    expect(native.deviceNumber(mapperPath(b))).toEqual(infoB.dev);
    dm.resumeSync(b);  // a right node already there: kept
    expect(native.deviceNumber(mapperPath(b))).toEqual(infoB.dev);
    await dm.remove(a);
    dm.removeSync(b);
    for (const n of [a, b]) expect(fs.existsSync(mapperPath(n))).toBe(false);
  } finally {
    for (const n of [a, b]) { removeQuietly(dm, n); fs.rmSync(mapperPath(n), { force: true }); }
  }
});

test("nodes: 'udev' takes udev's node when it comes, and makes one itself when none comes in time", async () => {
  const udev = new DeviceMapper({ nodes: 'udev', udevTimeoutMs: 10_000 });
  const late = new DeviceMapper({ nodes: 'udev', udevTimeoutMs: 50 });
  const a = uniqueName('udev'), b = uniqueName('udev');
  try {
    // There is no udev in the test VM: the test plays it, making a's node (mode 0660, ours would be 0600)
    // while resume waits for it.
    const { dev } = await udev.create(a);
    await udev.load(a, zero(128));
    let waited = true;
    const resumed = udev.resume(a).finally(() => { waited = false; });
    expect(await eventually(async () => (await dm.info(a)).liveTable)).toBe(true);  // the RESUME ran
    expect(fs.existsSync(mapperPath(a))).toBe(false);
    expect(waited).toBe(true);  // and resume() is waiting for udev's node
    native.ensureBlockNode(mapperPath(a), { major: dev.major, minor: dev.minor, mode: 0o660 });
    fs.chmodSync(mapperPath(a), 0o660);  // whatever the umask
    await resumed;
    expect(fs.statSync(mapperPath(a)).mode & 0o777).toBe(0o660);
    // Nobody makes b's node: after the wait, the library does (sync path).
    late.createSync(b);
    late.loadSync(b, zero(128));
    const info = late.resumeSync(b);
    const st = fs.statSync(mapperPath(b));
    expect(st.isBlockDevice() && st.mode & 0o777).toBe(0o600);
    expect(native.deviceNumber(mapperPath(b))).toEqual(info.dev);
  } finally {
    // Under udev, udev removes nodes on remove; here the test does.
    for (const n of [a, b]) { await udev.remove(n).catch(() => undefined); fs.rmSync(mapperPath(n), { force: true }); }
    udev.close(); late.close();
  }
});

test('devices addressed by uuid and by dev number', async () => {
  const name = uniqueName('ref');
  const uuid = `DEVMAPPER-${name}`;
  const info = dm.createDeviceSync(name, zero(128), { uuid });
  try {
    expect((await dm.info({ uuid })).name).toBe(name);
    expect(dm.infoSync({ dev: info.dev }).name).toBe(name);
    expect(dm.tableSync({ uuid })).toEqual(zero(128));
  } finally {
    dm.removeSync({ uuid });
  }
  expect(fs.existsSync(mapperPath(name))).toBe(false);
});

test('suspend flags, read-only, persistent minor', async () => {
  const name = uniqueName('flags');
  const info = await dm.createDevice(name, zero(128), { readOnly: true, minor: 4000 });
  try {
    expect(info.readOnly).toBe(true);
    expect(info.dev.minor).toBe(4000);
    expect((await dm.suspend(name, { noflush: true, skipLockfs: true })).suspended).toBe(true);
    expect(dm.infoSync(name).suspended).toBe(true);
    expect((await dm.resume(name)).suspended).toBe(false);
    expect(dm.suspendSync(name).suspended).toBe(true);
    expect(dm.resumeSync(name).suspended).toBe(false);
  } finally {
    removeQuietly(dm, name);
  }
});

test('TABLE_CLEAR drops the inactive table; a reload then resume swaps tables', async () => {
  const name = uniqueName('clear');
  await dm.createDevice(name, zero(128));
  try {
    await dm.load(name, [{ start: sectors(0), length: sectors(256), type: 'error', params: '' }]);
    expect(dm.infoSync(name).inactiveTable).toBe(true);
    expect((await dm.clear(name)).inactiveTable).toBe(false);
    dm.loadSync(name, [{ start: sectors(0), length: sectors(256), type: 'error', params: '' }], { secure: true });
    await dm.suspend(name);
    await dm.resume(name);
    expect(await dm.table(name)).toEqual([{ start: 0, length: 256, type: 'error', params: '' }]);
  } finally {
    removeQuietly(dm, name);
  }
});

test('RENAME: name and node move; uuid set once', async () => {
  const a = uniqueName('ren-a');
  const b = uniqueName('ren-b');
  await dm.createDevice(a, zero(128));
  try {
    const renamed = await dm.rename(a, b);
    expect(renamed.name).toBe(a);  // the kernel echoes the request
    expect(await dm.exists(a)).toBe(false);
    expect(fs.existsSync(mapperPath(a))).toBe(false);
    expect(fs.statSync(mapperPath(b)).isBlockDevice()).toBe(true);
    await dm.setUuid(b, `DEVMAPPER-${b}`);
    expect(dm.infoSync(b).uuid).toBe(`DEVMAPPER-${b}`);
    await expect(dm.setUuid(b, 'OTHER')).rejects.toMatchObject({ code: 'EINVAL', command: 'DM_DEV_RENAME' });
    dm.renameSync(b, a);
    expect(dm.existsSync(a)).toBe(true);
  } finally {
    removeQuietly(dm, a, b);
  }
});

test('TABLE_DEPS, every simple target type loads and reads back the same line', async () => {
  const l1 = scratchLoop(8 << 20);
  const l2 = scratchLoop(8 << 20);
  const name = uniqueName('types');
  const d1 = `7:${l1.number}`;
  const d2 = `7:${l2.number}`;
  const tables: Target[][] = [
    [{ start: sectors(0), length: sectors(2048), type: 'linear', params: `${d1} 0` }],
    [{ start: sectors(0), length: sectors(4096), type: 'striped', params: `2 128 ${d1} 0 ${d2} 0` }],
    [{ start: sectors(0), length: sectors(2048), type: 'flakey', params: `${d1} 0 30 5 1 drop_writes` }],
    [{ start: sectors(0), length: sectors(2048), type: 'delay', params: `${d1} 0 10` }],
    [{ start: sectors(0), length: sectors(1024), type: 'linear', params: `${d1} 0` },
     { start: sectors(1024), length: sectors(1024), type: 'error', params: '' },
     { start: sectors(2048), length: sectors(1024), type: 'zero', params: '' }],
  ];
  try {
    await dm.create(name);
    for (const t of tables) {
      const back = await swapTable(dm, name, t);
      expect(back.map((x) => x.type)).toEqual(t.map((x) => x.type));
      expect(back.map((x) => [x.start, x.length])).toEqual(t.map((x) => [x.start, x.length]));
      // The kernel may add default words (delay adds nothing, flakey echoes): compare the leading params.
      back.forEach((x, i) => expect(x.params.startsWith(t[i].params.split(' ').slice(0, 2).join(' '))).toBe(true));
    }
    await dm.load(name, tables[1]);
    await dm.suspend(name);
    await dm.resume(name);
    const deps = (await dm.deps(name)).map((d) => `${d.major}:${d.minor}`).sort();
    expect(deps).toEqual([d1, d2].sort());
    expect(dm.depsSync(name, { inactive: true })).toEqual([]);
  } finally {
    removeQuietly(dm, name);
    l1.detach();
    l2.detach();
  }
});

test('TARGET_MSG returns output when the kernel sends some (@stats_list), and DEV_SET_GEOMETRY', async () => {
  const name = uniqueName('msg');
  await dm.createDevice(name, zero(2048));
  try {
    expect(await dm.message(name, 0, '@stats_create - /1')).toBe('0');
    const out = dm.messageSync(name, 0, '@stats_list');
    expect(out).toMatch(/^0: 0\+2048 2048 /);
    await dm.message(name, 0, '@stats_delete 0');
    await expect(dm.message(name, 0, 'nonsense')).rejects.toMatchObject({ code: 'EINVAL', command: 'DM_TARGET_MSG', device: name });
    await dm.setGeometry(name, { cylinders: 1, heads: 64, sectors: 32, start: 0 });
    dm.setGeometrySync(name, { cylinders: 2, heads: 16, sectors: 64, start: 0 });
  } finally {
    removeQuietly(dm, name);
  }
});

test('deferred remove: scheduled while open, done at last close', async () => {
  const name = uniqueName('defer');
  await dm.createDevice(name, zero(128));
  const fd = fs.openSync(mapperPath(name), 'r');
  try {
    await expect(dm.remove(name)).rejects.toMatchObject({ code: 'EBUSY' });
    const r = await dm.remove(name, { deferred: true });
    expect(r.deferredRemove).toBe(true);
    expect((await dm.info(name)).deferredRemove).toBe(true);
    await dm.message(name, 0, '@cancel_deferred_remove');
    expect((await dm.info(name)).deferredRemove).toBe(false);
    await dm.remove(name, { deferred: true });
  } finally {
    fs.closeSync(fd);
  }
  // The kernel runs a deferred remove from a workqueue after the last close: it follows shortly.
  expect(await eventually(async () => !(await dm.exists(name)))).toBe(true);
});

test('REMOVE_ALL removes every closed device', async () => {
  const names = [uniqueName('all'), uniqueName('all')];
  for (const n of names) await dm.createDevice(n, zero(128));
  await dm.removeAll();
  expect(await dm.list()).toEqual([]);
  for (const n of names) expect(fs.existsSync(mapperPath(n))).toBe(false);
});

test('a table with a bad layout is refused before any ioctl', () => {
  expect(() => dm.loadSync('x', [])).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
  expect(() => dm.loadSync('x', [{ start: sectors(8), length: sectors(8), type: 'zero', params: '' }]))
    .toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
});

test('a batch sends its commands in order in one call, each result typed; it stops at the first failure and says how many ran', async () => {
  const name = uniqueName('batch');
  const [created, , resumed, table, status] = await dm.batch()
    .create(name, { uuid: `DEVMAPPER-${name}` }).load(name, zero(2048)).resume(name).table(name).status(name).run();
  expect(created).toMatchObject({ name, liveTable: false });
  expect(resumed).toMatchObject({ name, liveTable: true, dev: created.dev });
  expect(table).toEqual(zero(2048));
  expect(status[0]).toMatchObject({ type: 'zero', length: 2048 });
  expect(fs.statSync(mapperPath(name)).rdev).toBeGreaterThan(0);  // the node is made after the resume
  // Sync twin; the third command fails (no such device): the first two ran and stay done.
  const other = uniqueName('batch');
  try {
    expect(() => dm.batch().suspend(name).resume(name).info(other).remove(name).runSync())
      .toThrow(expect.objectContaining({ code: 'ENXIO', command: 'DM_DEV_STATUS', device: other, completed: 2 }));
    expect(dm.infoSync(name)).toMatchObject({ suspended: false, liveTable: true });
    // Bad input throws as it is queued, before anything is sent.
    expect(() => dm.batch().info(name).message(name, 0, '')).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
    expect(() => dm.batch().remove({ uuid: 'x' } as never)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
    // A promise batch that fails on its first command ran nothing.
    await expect(dm.batch().create(name).remove(name).run()).rejects.toMatchObject({ code: 'EBUSY', command: 'DM_DEV_CREATE', completed: 0 });
    expect(dm.batch().length).toBe(0);
    // Sent once: a second run would repeat its commands.
    const once = dm.batch().info(name);
    expect(once.runSync()[0].name).toBe(name);
    expect(() => once.runSync()).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
    await expect(once.run()).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    expect(() => once.info(name)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
  } finally {
    const [gone] = await dm.batch().remove(name).run();
    expect(gone.name).toBe(name);
  }
  expect(fs.existsSync(mapperPath(name))).toBe(false);
});
