// Kernel errors arrive as one JS error with code, errno, syscall, the DM command and the device.
import fs from 'node:fs';
import os from 'node:os';
import { DeviceMapper, DevmapperError, mapperPath, sectors } from '../../lib';
import { removeQuietly, scratchLoop, uniqueName, zeroMetadata } from './helpers';

const dm = new DeviceMapper();
afterAll(() => dm.close());

// A table naming a path that does not exist: up to Linux 6.4 dm_get_device() answers ENODEV; from 6.5, where it
// looks the path up with lookup_bdev() and returns its error, ENOENT.
const [major, minor] = os.release().split('.').map(Number);
const MISSING_PATH = major > 6 || (major === 6 && minor >= 5) ? 'ENOENT' : 'ENODEV';

test('CREATE of an existing name is EBUSY; any op on a missing device is ENXIO', async () => {
  const name = uniqueName('dup');
  await dm.create(name);
  try {
    const err = await dm.create(name).catch((e) => e);
    expect(err).toBeInstanceOf(DevmapperError);
    expect(err).toMatchObject({ code: 'EBUSY', errno: -16, syscall: 'ioctl', command: 'DM_DEV_CREATE', device: name });
    expect(err.message).toBe(`DM_DEV_CREATE ${name}: Device or resource busy (EBUSY)`);
  } finally {
    removeQuietly(dm, name);
  }
  for (const op of [() => dm.infoSync(name), () => dm.removeSync(name), () => dm.tableSync(name), () => dm.resumeSync(name)])
    expect(op).toThrow(expect.objectContaining({ code: 'ENXIO', device: name }));
  await expect(dm.status(name)).rejects.toMatchObject({ code: 'ENXIO', command: 'DM_TABLE_STATUS' });
});

test(`a bad table is EINVAL (a missing device in it ${MISSING_PATH})`, async () => {
  const name = uniqueName('bad');
  await dm.create(name);
  try {
    await expect(dm.load(name, [{ start: sectors(0), length: sectors(128), type: 'linear', params: '7:0' }]))
      .rejects.toMatchObject({ code: 'EINVAL', command: 'DM_TABLE_LOAD', device: name });
    await expect(dm.load(name, [{ start: sectors(0), length: sectors(128), type: 'linear', params: 'not-a-device 0' }]))
      .rejects.toMatchObject({ code: MISSING_PATH, command: 'DM_TABLE_LOAD', device: name });
    await expect(dm.load(name, [{ start: sectors(0), length: sectors(128), type: 'no-such-target', params: '' }]))
      .rejects.toMatchObject({ code: 'EINVAL' });
  } finally {
    removeQuietly(dm, name);
  }
});

test('createDevice (one native call) undoes CREATE when LOAD fails, and never removes a device it did not create', async () => {
  const name = uniqueName('cd');
  const bad = [{ start: sectors(0), length: sectors(128), type: 'linear', params: '7:0' }];
  await expect(dm.createDevice(name, bad)).rejects.toMatchObject({ code: 'EINVAL', command: 'DM_TABLE_LOAD', device: name });
  expect(dm.existsSync(name)).toBe(false);
  expect(() => dm.createDeviceSync(name, bad)).toThrow(expect.objectContaining({ code: 'EINVAL', command: 'DM_TABLE_LOAD' }));
  expect(dm.existsSync(name)).toBe(false);
  const zero = [{ start: sectors(0), length: sectors(128), type: 'zero', params: '' }];
  await dm.createDevice(name, zero);
  try {
    await expect(dm.createDevice(name, zero)).rejects.toMatchObject({ code: 'EBUSY', command: 'DM_DEV_CREATE' });
    expect(() => dm.createDeviceSync(name, zero)).toThrow(expect.objectContaining({ code: 'EBUSY', command: 'DM_DEV_CREATE' }));
    expect((await dm.info(name)).liveTable).toBe(true);  // the first one is untouched
    expect(fs.existsSync(mapperPath(name))).toBe(true);
  } finally {
    removeQuietly(dm, name);
  }
  expect(fs.existsSync(mapperPath(name))).toBe(false);
});

test('thin messages: create_thin of a taken id EEXIST, delete of a missing id ENODATA, pool with an active thin EBUSY', async () => {
  const meta = scratchLoop(16 << 20);
  const data = scratchLoop(64 << 20);
  const pool = uniqueName('pool');
  const thin = uniqueName('thin');
  zeroMetadata(meta.path);
  try {
    const p = await dm.createDevice(pool, [{
      start: sectors(0), length: sectors((64 << 20) / 512), type: 'thin-pool', params: `7:${meta.number} 7:${data.number} 128 0`,
    }]);
    await dm.message(pool, 0, 'create_thin 1');
    await expect(dm.message(pool, 0, 'create_thin 1')).rejects.toMatchObject({ code: 'EEXIST', command: 'DM_TARGET_MSG', device: pool });
    await expect(dm.message(pool, 0, 'delete 7')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(dm.message(pool, 0, 'create_snap 2 9')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(dm.message(pool, 0, 'set_transaction_id 5 6')).rejects.toMatchObject({ code: 'EINVAL' });
    await dm.createDevice(thin, [{ start: sectors(0), length: sectors(2048), type: 'thin', params: `${p.dev.major}:${p.dev.minor} 1` }]);
    await expect(dm.message(pool, 0, 'delete 1')).rejects.toMatchObject({ code: 'EBUSY' });
    await expect(dm.remove(pool)).rejects.toMatchObject({ code: 'EBUSY', command: 'DM_DEV_REMOVE', device: pool });
    await dm.remove(thin);
    await dm.message(pool, 0, 'delete 1');
  } finally {
    removeQuietly(dm, thin, pool);
    meta.detach();
    data.detach();
  }
});

test('bad names, uuids and ids are refused with typed errors before any ioctl', () => {
  expect(() => dm.createSync('a/b')).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_NAME' }));
  expect(() => dm.createSync('x'.repeat(128))).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_NAME' }));
  expect(() => dm.createSync('ok', { uuid: 'u'.repeat(129) })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_UUID' }));
  expect(dm.existsSync('ok')).toBe(false);
});
