// A filesystem on thin volumes, with mkfs.ext4, mount and e2fsck as independent users of the block devices:
// a snapshot of a mounted origin is clean (the snapshot's suspend freezes the filesystem) and mounts beside it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { uniqueName } from './helpers';
import { withPool } from './thin-helpers';

const MiB = 1 << 20;

test('ext4 on a thin volume: a snapshot taken while it is mounted is clean, mounts beside it, and keeps its files apart', async () => {
  await withPool({}, async (pool, dir) => {
    const base = await (await pool.createVolume(uniqueName('fsbase'), 128 * MiB)).activate();
    execFileSync('mkfs.ext4', ['-q', '-F', base.path]);
    const [onBase, onSnap] = [path.join(dir, 'base'), path.join(dir, 'snap')];
    fs.mkdirSync(onBase);
    fs.mkdirSync(onSnap);
    const mounted: string[] = [];
    const mount = (dev: string, at: string) => { execFileSync('mount', ['-t', 'ext4', dev, at]); mounted.push(at); };
    try {
      mount(base.path, onBase);
      fs.writeFileSync(path.join(onBase, 'layer.txt'), 'base layer');  // not synced: the freeze writes it out
      const snap = await (await pool.snapshot(base, uniqueName('fssnap'))).activate();
      // Frozen for create_snap, the origin's journal was flushed: the copy needs no recovery (taken with
      // skipLockfs, the same copy says needs_recovery).
      const header = execFileSync('dumpe2fs', ['-h', snap.path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(header).toMatch(/^Filesystem features:/m);
      expect(header).not.toMatch(/needs_recovery/);
      execFileSync('e2fsck', ['-f', '-n', snap.path], { stdio: 'pipe' });
      mount(snap.path, onSnap);
      expect(fs.readFileSync(path.join(onSnap, 'layer.txt'), 'utf8')).toBe('base layer');
      fs.writeFileSync(path.join(onSnap, 'layer.txt'), 'snapshot layer');
      fs.writeFileSync(path.join(onBase, 'only-base.txt'), 'x');
      expect(fs.readFileSync(path.join(onBase, 'layer.txt'), 'utf8')).toBe('base layer');
      expect(fs.readFileSync(path.join(onSnap, 'layer.txt'), 'utf8')).toBe('snapshot layer');
      expect(fs.existsSync(path.join(onSnap, 'only-base.txt'))).toBe(false);
    } finally {
      for (const at of mounted.reverse()) execFileSync('umount', [at]);
    }
    for (const v of pool.registry.list()) execFileSync('e2fsck', ['-f', '-n', `/dev/mapper/${v.name}`], { stdio: 'pipe' });
  });
});
