// Pure checks: run on the host, no kernel needed.
import { bytesToSectors, parseSize, sectors, DevmapperError, checkTable } from '../../lib';
import { checkName, checkThinId, checkUuid } from '../../lib/core/validate';
import { kernelError } from '../../lib/core/errors';

test('names: 1..127 bytes, no slash', () => {
  expect(checkName('pool0-vol3')).toBe('pool0-vol3');
  expect(checkName('x'.repeat(127))).toHaveLength(127);
  for (const bad of ['', 'x'.repeat(128), 'é'.repeat(64), 'a/b', '.', '..', 5 as unknown as string])
    expect(() => checkName(bad)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_NAME' }));
});

test('uuids up to 128 bytes; thin ids below 2^24', () => {
  expect(checkUuid('u'.repeat(128))).toHaveLength(128);
  expect(() => checkUuid('u'.repeat(129))).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_UUID' }));
  expect(checkThinId(0)).toBe(0);
  expect(checkThinId(2 ** 24 - 1)).toBe(2 ** 24 - 1);
  for (const bad of [-1, 2 ** 24, 1.5, NaN, '1' as unknown as number])
    expect(() => checkThinId(bad)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_THIN_ID' }));
});

test('sizes: sectors are safe non-negative integers; bytes convert only in multiples of 512', () => {
  expect(bytesToSectors(1 << 30)).toBe(2097152);
  expect(() => bytesToSectors(1000)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_SIZE' }));
  expect(() => sectors(-1)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_SIZE' }));
  expect(() => sectors(2 ** 53)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_SIZE' }));
  expect(parseSize('10G')).toBe(10 * 2 ** 30);
  expect(parseSize('64k')).toBe(65536);
  expect(parseSize('512MiB')).toBe(512 * 2 ** 20);
  expect(() => parseSize('ten')).toThrow(DevmapperError);
});

test('tables must be contiguous from sector 0', () => {
  expect(checkTable([{ start: 0, length: 8, type: 'zero', params: '' }, { start: 8, length: 8, type: 'error', params: '' }])).toHaveLength(2);
  expect(() => checkTable([{ start: 0, length: 8, type: 'zero', params: '' }, { start: 9, length: 8, type: 'zero', params: '' }]))
    .toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
  expect(() => checkTable([{ start: 0, length: 8, type: 'bad type', params: '' }])).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
  expect(() => checkTable([{ start: 0, length: 8, type: 'zero', params: 'a\nb' }])).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
});

test('kernel errors read like Node system errors and name the command and device', () => {
  const e = kernelError({ errno: 16, syscall: 'ioctl', command: 'DM_DEV_REMOVE', target: 'pool0-vol3', detail: '', strerror: 'Device or resource busy' });
  expect(e).toMatchObject({ code: 'EBUSY', errno: -16, syscall: 'ioctl', command: 'DM_DEV_REMOVE', device: 'pool0-vol3' });
  expect(e.message).toBe('DM_DEV_REMOVE pool0-vol3: Device or resource busy (EBUSY)');
  const acc = kernelError({ errno: 13, syscall: 'open', command: '', target: '/dev/mapper/control', detail: '', strerror: 'Permission denied' });
  expect(acc.message).toMatch(/CAP_SYS_ADMIN/);
  expect(acc.code).toBe('EACCES');
});

test('loop options are checked before any ioctl', () => {
  const { Loop } = require('../../lib');
  for (const bad of [{ blockSize: 1000 }, { method: 'losetup' }, { offset: -1 }])
    expect(() => Loop.attachSync('/nonexistent.img', bad)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
});

test('a command the kernel is too old for is refused before any ioctl (ERR_DM_UNSUPPORTED)', async () => {
  const { DeviceMapper } = require('../../lib');
  const dm = new DeviceMapper({ nodes: 'none' });
  dm.kernel = { major: 4, minor: 35, patch: 0 };  // as if read from a 4.35 kernel (the version is read once)
  expect(() => dm.targetVersionSync('thin')).toThrow(expect.objectContaining({ code: 'ERR_DM_UNSUPPORTED', message: expect.stringContaining('4.41') }));
  await expect(dm.armPoll()).rejects.toMatchObject({ code: 'ERR_DM_UNSUPPORTED' });
  dm.close();
});

test('the promise API rejects bad input (and use after close) instead of throwing at the caller', async () => {
  const { DeviceMapper } = require('../../lib');
  const dm = new DeviceMapper({ nodes: 'none' });
  // No ioctl runs: each call returns a promise that rejects with the typed error.
  const calls: [() => Promise<unknown>, string][] = [
    [() => dm.create('a/b'), 'ERR_DM_INVALID_NAME'],
    [() => dm.load('x', []), 'ERR_DM_INVALID_TABLE'],
    [() => dm.message('x', -1, 'delete 1'), 'ERR_DM_INVALID_SIZE'],
    [() => dm.info({ uuid: '' }), 'ERR_DM_INVALID_UUID'],
    [() => dm.infoIfExists('x'.repeat(128)), 'ERR_DM_INVALID_NAME'],
    [() => dm.wait('x', -1), 'ERR_DM_INVALID_ARGUMENT'],
    [() => dm.pollEvent({ timeoutMs: -5 }), 'ERR_DM_INVALID_ARGUMENT'],
    [() => dm.createDevice('a/b', [{ start: 0, length: 8, type: 'zero', params: '' }]), 'ERR_DM_INVALID_NAME'],
  ];
  for (const [call, code] of calls) {
    let p: Promise<unknown> | undefined;
    expect(() => { p = call(); }).not.toThrow();
    await expect(p).rejects.toMatchObject({ code });
  }
  // The sync twins throw the same typed errors, before opening the control device.
  expect(() => dm.createDeviceSync('x', [])).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
  expect(() => dm.infoIfExistsSync('a/b')).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_NAME' }));
  dm.close();
  let closed: Promise<unknown> | undefined;
  expect(() => { closed = dm.info('x'); }).not.toThrow();
  await expect(closed).rejects.toMatchObject({ code: 'ERR_DM_CLOSED' });
});
