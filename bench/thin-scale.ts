// ThinPool benchmark (issue 3): the volume lifecycle (create + activate + deactivate + delete) through
// ThinPool against the same work through the low-level API, interleaved in one run; then scale: the same
// lifecycle at 100 volumes in the pool and at BENCH_SCALE (10,000), and the process's memory there.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ThinPool } from '../lib';
import { native } from '../lib/core/binding';
import { lowLevel, viaPool as viaPoolOf } from './thin-paths';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 25), PER = Number(process.env.BENCH_PER ?? 4), SAMPLE = Number(process.env.BENCH_SAMPLE ?? 30);
const SCALE = Number(process.env.BENCH_SCALE ?? 10_000);

const now = () => Number(process.hrtime.bigint()) / 1e6;
const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thin-bench-'));
  const pool = await ThinPool.create({ name: 'tb-pool', dataFile: path.join(dir, 'data'), dataSize: '8G', metadataSize: '256M', skipBlockZeroing: true });
  try {
    const viaPool = viaPoolOf(pool), lowNoTid = lowLevel(pool, false), lowTid = lowLevel(pool, true);
    const timeN = async (n: number, fn: () => Promise<void>) => { const t0 = now(); for (let i = 0; i < n; i++) await fn(); return now() - t0; };

    for (let i = 0; i < 10; i++) { await viaPool(); await lowNoTid(); await lowTid(); }
    const t = { pool: 0, low: 0, lowTid: 0 };
    // Many short rounds, the order rotating, so drift and the emulator's moods land on every path alike.
    const paths: [keyof typeof t, () => Promise<void>][] = [['low', lowNoTid], ['lowTid', lowTid], ['pool', viaPool]];
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < paths.length; k++) {
        const [key, fn] = paths[(r + k) % paths.length];
        t[key] += await timeN(PER, fn);
      }
    }
    const n = ROUNDS * PER;
    const ms = { pool: t.pool / n, low: t.low / n, lowTid: t.lowTid / n };
    console.log('| path | ms per lifecycle | ThinPool cost over it |');
    console.log('|---|---|---|');
    console.log(`| low-level: create_thin, CREATE+LOAD+RESUME, REMOVE, delete | ${ms.low.toFixed(1)} | +${((ms.pool / ms.low - 1) * 100).toFixed(0)}% |`);
    console.log(`| low-level + the same set_transaction_id commits | ${ms.lowTid.toFixed(1)} | +${((ms.pool / ms.lowTid - 1) * 100).toFixed(0)}% |`);
    console.log(`| ThinPool: createVolume, activate, delete (registry, recovery checks) | ${ms.pool.toFixed(1)} | |`);

    // Scale: the lifecycle at 100 volumes in the pool, then at SCALE.
    const fill = async (target: number) => {
      const t0 = now();
      let made = 0;
      while (pool.registry.count() < target) { await pool.createVolume(`fill-${pool.registry.count()}`, '16M'); made++; }
      return made ? (now() - t0) / made : 0;
    };
    // Each sample also splits off the time spent inside ioctls: the kernel's share may grow with the pool's
    // metadata; what is left is the library's own cost.
    // The low-level lifecycle (same kernel work, no registry) is sampled alongside, interleaved: if both grow
    // alike, the growth is the kernel's or the emulator's, not the registry's.
    const sample = async () => {
      let wall = 0, kernel = 0, low = 0;
      for (let i = 0; i < SAMPLE; i++) {
        const k0 = native.dmIoctlStats().nanos;
        wall += await timeN(1, viaPool);
        kernel += (native.dmIoctlStats().nanos - k0) / 1e6;
        low += await timeN(1, lowTid);
      }
      return { wall: wall / SAMPLE, own: (wall - kernel) / SAMPLE, low: low / SAMPLE };
    };
    await fill(100);
    const s100 = await sample();
    const fillMs = await fill(SCALE);
    const sScale = await sample();
    const at100 = s100.wall, atScale = sScale.wall;
    const mem = process.memoryUsage();
    const listed = (await pool.list()).length;
    const memList = process.memoryUsage();
    const s = await pool.status();
    // check() at this scale, alone and as open() runs it (open with and without it, interleaved rounds). The
    // low-level samples moved the transaction id behind this pool object's back: one change of its own first,
    // so the change it keeps recorded is the pool's last (open() would otherwise refuse the moved id).
    await pool.deleteVolume((await pool.createVolume('bench-check', '16M')).name);
    const checkMs: number[] = [], openMs: number[] = [], openNoCheckMs: number[] = [];
    let drift = '';
    for (let i = 0; i < 5; i++) {
      let t0 = now();
      const c = await pool.check();
      checkMs.push(now() - t0);
      drift = `clean ${c.clean}, ${c.orphans.length} orphans, ${c.lost.length} lost`;
      t0 = now();
      (await ThinPool.open(pool.name)).closeSync();
      openMs.push(now() - t0);
      t0 = now();
      (await ThinPool.open(pool.name, { check: false })).closeSync();
      openNoCheckMs.push(now() - t0);
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
    console.log(`\ncheck() at ${SCALE} volumes: ${median(checkMs).toFixed(0)} ms (median of 5; ${drift}); open(): ${median(openMs).toFixed(0)} ms with the check, ${median(openNoCheckMs).toFixed(0)} ms without`);
    console.log(`\nlifecycle at 100 volumes: ${at100.toFixed(1)} ms; at ${SCALE}: ${atScale.toFixed(1)} ms (${(atScale / at100).toFixed(2)}×)`);
    console.log(`  outside the kernel (library, registry): ${s100.own.toFixed(1)} ms at 100; ${sScale.own.toFixed(1)} ms at ${SCALE} (${(sScale.own / s100.own).toFixed(2)}×)`);
    console.log(`  low-level lifecycle with the same commits, sampled alongside: ${s100.low.toFixed(1)} ms at 100; ${sScale.low.toFixed(1)} ms at ${SCALE} (${(sScale.low / s100.low).toFixed(2)}×)`);
    console.log(`  ThinPool over it: +${((s100.wall / s100.low - 1) * 100).toFixed(0)}% at 100; +${((sScale.wall / sScale.low - 1) * 100).toFixed(0)}% at ${SCALE}`);
    console.log(`filling to ${SCALE}: ${fillMs.toFixed(1)} ms per createVolume`);
    console.log(`memory at ${SCALE} volumes: rss ${mib(mem.rss)}, heap used ${mib(mem.heapUsed)}; after list() of ${listed}: rss ${mib(memList.rss)}, heap used ${mib(memList.heapUsed)}`);
    if (s.state === 'ok') console.log(`pool: transaction ${s.transactionId}, metadata ${s.metadata.used}/${s.metadata.total} blocks`);
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
