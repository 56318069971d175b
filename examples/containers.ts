// A container runtime's pattern: one image volume, then N containers each getting a copy-on-write snapshot,
// activated, written, and torn down. Prints the time per container.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ThinPool } from '../lib';

const N = Number(process.argv[2] ?? 100);

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-containers-'));
  const pool = await ThinPool.create({ name: 'ctr-pool', dataFile: path.join(dir, 'data'), dataSize: '4G', skipBlockZeroing: true });
  try {
    const image = await (await pool.createVolume('ctr-image', '256M')).activate();
    const fd = fs.openSync(image.path, 'r+');
    fs.writeSync(fd, Buffer.alloc(1 << 20, 7), 0, 1 << 20, 0);
    fs.closeSync(fd);
    await image.deactivate();

    const t0 = process.hrtime.bigint();
    const containers = [];
    for (let i = 0; i < N; i++) {
      const c = await (await pool.snapshot(image, `ctr-${i}`)).activate();
      const cfd = fs.openSync(c.path, 'r+');
      fs.writeSync(cfd, Buffer.from(`container ${i} was here`), 0, undefined, 4096 * i);
      fs.closeSync(cfd);
      containers.push(c);
    }
    const t1 = process.hrtime.bigint();
    for (const c of containers) await c.delete();
    const t2 = process.hrtime.bigint();
    console.log(`${N} containers: up (snapshot + activate + write) ${(Number(t1 - t0) / 1e6 / N).toFixed(1)} ms each, ` +
      `down (deactivate + delete) ${(Number(t2 - t1) / 1e6 / N).toFixed(1)} ms each`);
    console.log(`pool after teardown: ${(await pool.list()).map((v) => v.name).join(', ')}`);
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
