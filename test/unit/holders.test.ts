// Who holds a device, read on the host: the mountinfo scan finds the filesystem this test runs on, mounted in
// this process's namespace; a device nobody has gives nothing; the message names what was found.
import fs from 'node:fs';
import { describeHolders, readHolders } from '../../lib/dm/holders';

// st_dev as the kernel encodes it (new_encode_dev): a 12-bit major and a 20-bit minor, split.
const devOf = (dev: number) => ({ major: Math.floor(dev / 256) & 0xfff, minor: (dev & 0xff) | ((Math.floor(dev / 4096) & ~0xff) >>> 0) });

test('the filesystem of / is found mounted at / by this process, first', () => {
  const dev = devOf(fs.statSync('/').dev);
  const h = readHolders(dev, 3);
  expect(h.openCount).toBe(3);
  expect(h.mounts.length).toBeGreaterThanOrEqual(1);
  expect(h.mounts[0]).toEqual({ pid: process.pid, mountPoint: '/' });
  // One entry per mount namespace: no two from the same one.
  const namespaces = h.mounts.map((m) => { try { return fs.readlinkSync(`/proc/${m.pid}/ns/mnt`); } catch { return `gone ${m.pid}`; } });
  expect(new Set(namespaces).size).toBe(namespaces.length);
});

test('a device number nothing uses: no mounts, no stacked devices, and no throw', () => {
  expect(readHolders({ major: 4095, minor: 1048575 }, 0)).toEqual({ openCount: 0, devices: [], mounts: [] });
});

test('describeHolders says who holds it', () => {
  expect(describeHolders({ openCount: 1, devices: [], mounts: [] })).toBe('open 1 time');
  expect(describeHolders({ openCount: 2, devices: ['y'], mounts: [{ pid: 1, mountPoint: '/mnt/x' }, { pid: 9, mountPoint: '/x' }] }))
    .toBe('open 2 times; mounted at /mnt/x (pid 1, and in 1 other namespace); held by dm device y');
  expect(describeHolders({ openCount: 3, devices: ['a', 'b'], mounts: [{ pid: 5, mountPoint: '/m' }, { pid: 6, mountPoint: '/m' }, { pid: 7, mountPoint: '/n' }] }))
    .toBe('open 3 times; mounted at /m (pid 5, and in 2 other namespaces); held by dm devices a, b');
});
