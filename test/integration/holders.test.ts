// A busy deactivate, delete or destroy says who holds the volume: its open count, the dm devices stacked on it,
// its mounts in every mount namespace (error.holders, and named in the message). mkfs.ext4, mount, unshare and
// dmsetup are the independent users.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DevmapperError, bytesToSectors } from '../../lib';
import { dmsetup, eventually, uniqueName } from './helpers';
import { withPool } from './thin-helpers';

const MiB = 1 << 20;
const quick = { retries: 2, retryDelayMs: 20 };

async function rejection(p: Promise<unknown>): Promise<DevmapperError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(DevmapperError);
  return e as DevmapperError;
}
function thrown(fn: () => unknown): DevmapperError {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(DevmapperError); return e as DevmapperError; }
  throw new Error('expected a DevmapperError, nothing was thrown');
}

test('a mounted volume: deactivate and delete fail with EBUSY naming the mount, in this namespace and another', async () => {
  await withPool({}, async (pool, dir) => {
    const vol = await (await pool.createVolume(uniqueName('mnt'), 64 * MiB)).activate();
    execFileSync('mkfs.ext4', ['-q', '-F', vol.path]);
    const at = path.join(dir, 'mounted here');  // a space: mountinfo escapes it as \040
    fs.mkdirSync(at);
    execFileSync('mount', ['-t', 'ext4', vol.path, at]);
    let other: ChildProcess | undefined;
    try {
      const e = await rejection(vol.deactivate(quick));
      expect(e).toMatchObject({ code: 'EBUSY', command: 'DM_DEV_REMOVE', device: vol.name });
      expect(e.holders!.openCount).toBeGreaterThanOrEqual(1);
      expect(e.holders!.devices).toEqual([]);
      expect(e.holders!.mounts).toEqual([{ pid: process.pid, mountPoint: at }]);
      expect(e.message).toContain(`mounted at ${at} (pid ${process.pid})`);

      // A second mount namespace holding a copy of the mount (unshare -m copies the mounts): one more entry.
      other = spawn('unshare', ['-m', '--propagation', 'private', 'sleep', '1000'], { stdio: 'ignore' });
      const otherPid = other.pid!;
      expect(await eventually(() => {
        try { return fs.readlinkSync(`/proc/${otherPid}/ns/mnt`) !== fs.readlinkSync('/proc/self/ns/mnt'); } catch { return false; }
      })).toBe(true);
      const d = thrown(() => vol.deleteSync(quick));
      expect(d.code).toBe('EBUSY');
      expect(d.holders!.mounts).toHaveLength(2);
      expect(d.holders!.mounts[0]).toEqual({ pid: process.pid, mountPoint: at });
      expect(d.holders!.mounts[1].mountPoint).toBe(at);
      expect(d.message).toContain(`mounted at ${at} (pid ${process.pid}, and in 1 other namespace)`);
      expect(pool.volume(vol.name)).toBeDefined();  // the delete was undone: nothing lost
    } finally {
      if (other) {
        const exited = new Promise((r) => other!.once('exit', r));
        other.kill('SIGKILL');
        await exited;
      }
      execFileSync('umount', [at]);
    }
    await vol.delete();
    expect((await pool.check()).clean).toBe(true);
  });
});

test('a dm device stacked on a volume: deactivate fails with EBUSY naming it', async () => {
  await withPool({}, async (pool) => {
    const vol = await (await pool.createVolume(uniqueName('under'), 8 * MiB)).activate();
    const upper = uniqueName('upper');
    const info = await pool.dm.info(vol.name);
    dmsetup('create', upper, '--table', `0 ${bytesToSectors(8 * MiB)} linear ${info.dev.major}:${info.dev.minor} 0`);
    try {
      const e = await rejection(vol.deactivate(quick));
      expect(e.code).toBe('EBUSY');
      expect(e.holders).toMatchObject({ devices: [upper], mounts: [] });
      expect(e.holders!.openCount).toBeGreaterThanOrEqual(1);
      expect(e.message).toContain(`held by dm device ${upper}`);
    } finally {
      dmsetup('remove', upper);
    }
  });
});

test('a volume open in this process: deactivate, deleteVolume and destroy say it is open', async () => {
  await withPool({}, async (pool) => {
    const vol = await (await pool.createVolume(uniqueName('open'), 8 * MiB)).activate();
    const fd = fs.openSync(vol.path, 'r');
    try {
      const e = thrown(() => vol.deactivateSync(quick));
      expect(e.code).toBe('EBUSY');
      expect(e.holders!.openCount).toBeGreaterThanOrEqual(1);
      expect(e.message).toMatch(/is held: open [1-9]\d* times?/);
      // Without deactivate, the pool refuses to delete a thin that is active: the same explanation.
      const d = await rejection(pool.deleteVolume(vol.name));
      expect(d.code).toBe('EBUSY');
      expect(d.holders!.openCount).toBeGreaterThanOrEqual(1);
      expect(pool.volume(vol.name)).toBeDefined();
      const x = await rejection(pool.destroy());
      expect(x.code).toBe('ERR_DM_BUSY');
      expect(x.holders!.openCount).toBeGreaterThanOrEqual(1);
      expect(x.message).toMatch(new RegExp(`volumes in use: ${vol.name} \\(open [1-9]`));
    } finally {
      fs.closeSync(fd);
    }
  });
});
