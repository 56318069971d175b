// What the pool's lock costs an activation: activate + deactivate through ThinVolume (under the lock) against
// the same CREATE+LOAD+RESUME and REMOVE through the low-level API, and the lock alone around an empty body.
// One pool, three interleaved rounds.   BENCHES=lock-cost npm run bench
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ThinPool, line, thin } from '../lib';
import type { PoolLock } from '../lib/thin/lock';

const N = Number(process.env.BENCH_PER ?? 100);
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function perCall(fn: () => Promise<unknown>): Promise<number> {
  const t = now();
  for (let i = 0; i < N; i++) await fn();
  return (now() - t) / N;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-lock-'));
  const pool = await ThinPool.create({ name: `bench-lock-${process.pid}`, dataFile: path.join(dir, 'data'), dataSize: '128M' });
  try {
    const v = await pool.createVolume(`bench-lock-vol-${process.pid}`, '16M');
    const table = [line(thin, 0, v.size, { pool: pool.devSpec, deviceId: v.id })];
    // The lock as every locked operation takes it (queue, flock, release), around an empty body.
    const lock = (pool as unknown as { lock: PoolLock }).lock;
    const lockOnly = () => lock.op(function* () { /* nothing */ }, pool.name).async();
    console.log('| round | ThinVolume activate + deactivate (ms) | dm.createDevice + remove (ms) | the lock alone (ms) |');
    console.log('|---|---|---|---|');
    for (let round = 1; round <= 3; round++) {
      const viaVolume = await perCall(async () => { await v.activate(); await v.deactivate(); });
      const lowLevel = await perCall(async () => { await pool.dm.createDevice(v.name, table, { uuid: `DEVMAPPER-THIN-${pool.name}-${v.id}` }); await pool.dm.remove(v.name); });
      const probe = await perCall(lockOnly);
      console.log(`| ${round} | ${viaVolume.toFixed(2)} | ${lowLevel.toFixed(2)} | ${probe.toFixed(3)} |`);
    }
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
