// Over-provisioning: a volume larger than the pool works until space runs out; with error_if_no_space the
// write fails fast and the pool says out_of_data_space.
import fs from 'node:fs';
import { uniqueName } from './helpers';
import { withPool } from './thin-helpers';

test('a 1 GiB volume on a 16 MiB pool: writes fail fast when the pool is full', async () => {
  await withPool({ dataSize: '16M', errorIfNoSpace: true, skipBlockZeroing: true }, async (pool) => {
    const v = await pool.createVolume(uniqueName('big'), '1G');
    await v.activate();
    const fd = fs.openSync(v.path, 'r+');
    const chunk = Buffer.alloc(1 << 20, 1);
    let written = 0, failure: NodeJS.ErrnoException | undefined;
    try {
      for (let off = 0; off < 64 << 20; off += chunk.length) {
        fs.writeSync(fd, chunk, 0, chunk.length, off);
        fs.fsyncSync(fd);
        written += chunk.length;
      }
    } catch (e) {
      failure = e as NodeJS.ErrnoException;
    } finally {
      try { fs.closeSync(fd); } catch { /* the close may report the same error */ }
    }
    expect(failure?.code).toMatch(/EIO|ENOSPC/);
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThanOrEqual(16 << 20);
    const s = await pool.status();
    expect(s).toMatchObject({ state: 'ok', mode: 'out_of_data_space', noSpacePolicy: 'error_if_no_space' });
    if (s.state === 'ok') expect(s.data.used).toBe(s.data.total);
    await v.deactivate();
  });
});
