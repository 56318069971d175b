// The offload worker's plumbing on the host: errors as plain data and back, and a worker's shadow pool on the
// same registry as this thread (one LMDB environment per file per process, shared natively). What it runs
// against the kernel is tested in test/integration/offload.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DevmapperError, LmdbRegistry, sectors } from '../../lib';
import { ClonedError, cloneError, dmError, errorFromClone, kernelError } from '../../lib/core/errors';
import { RemotePool } from '../../lib/thin/offload';
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
