// A/B of two builds of the library in one boot and one process: the thin lifecycle (create_thin, CREATE, LOAD,
// RESUME, REMOVE, delete) through each build's DeviceMapper on one pool, in interleaved rounds (the order
// alternating), so both meet the same kernel, cache and host. BENCH_AB_OLD is the root of the other build (its
// dist/ and build/ made); prints new/old time per path. Run by bench/run.sh with BENCHES=ab.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as current from '../lib';

type Lib = typeof current;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 16), PER = Number(process.env.BENCH_PER ?? 12);
const SIZE = 2048;

function paths(lib: Lib, dm: InstanceType<Lib['DeviceMapper']>, pool: string, poolDev: string) {
  const table = (id: number) => [{ start: lib.sectors(0), length: lib.sectors(SIZE), type: 'thin', params: `${poolDev} ${id}` }];
  return {
    'sync, a call per ioctl': (id: number) => {
      const name = `ab-${id}`;
      dm.messageSync(pool, 0, `create_thin ${id}`);
      dm.createSync(name); dm.loadSync(name, table(id)); dm.resumeSync(name); dm.removeSync(name);
      dm.messageSync(pool, 0, `delete ${id}`);
    },
    'promise, a call per ioctl': async (id: number) => {
      const name = `ab-${id}`;
      await dm.message(pool, 0, `create_thin ${id}`);
      await dm.create(name); await dm.load(name, table(id)); await dm.resume(name); await dm.remove(name);
      await dm.message(pool, 0, `delete ${id}`);
    },
    'sync createDevice': (id: number) => {
      const name = `ab-${id}`;
      dm.messageSync(pool, 0, `create_thin ${id}`);
      dm.createDeviceSync(name, table(id)); dm.removeSync(name);
      dm.messageSync(pool, 0, `delete ${id}`);
    },
    'promise createDevice': async (id: number) => {
      const name = `ab-${id}`;
      await dm.message(pool, 0, `create_thin ${id}`);
      await dm.createDevice(name, table(id)); await dm.remove(name);
      await dm.message(pool, 0, `delete ${id}`);
    },
    'promise, two batches': async (id: number) => {
      const name = `ab-${id}`;
      await dm.batch().message(pool, 0, `create_thin ${id}`).create(name).load(name, table(id)).resume(name).run();
      await dm.batch().remove(name).message(pool, 0, `delete ${id}`).run();
    },
  } as Record<string, (id: number) => void | Promise<void>>;
}

async function main() {
  const oldRoot = process.env.BENCH_AB_OLD;
  if (!oldRoot) throw new Error('BENCH_AB_OLD: the root of the other build');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const old: Lib = require(path.join(oldRoot, 'dist', 'lib'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ab-'));
  const metaFile = path.join(dir, 'meta'), dataFile = path.join(dir, 'data');
  fs.writeFileSync(metaFile, ''); fs.truncateSync(metaFile, 64 << 20);
  fs.writeFileSync(dataFile, ''); fs.truncateSync(dataFile, 1 << 30);
  const meta = current.Loop.attachSync(metaFile), data = current.Loop.attachSync(dataFile);
  const dmNew = new current.DeviceMapper(), dmOld = new old.DeviceMapper();
  const pool = 'bench-ab-pool';
  try {
    const p = dmNew.createDeviceSync(pool, [{ start: current.sectors(0), length: current.sectors((1 << 30) / 512), type: 'thin-pool',
      params: `7:${meta.number} 7:${data.number} 128 0 1 skip_block_zeroing` }]);
    const poolDev = `${p.dev.major}:${p.dev.minor}`;
    const builds = { old: paths(old, dmOld as never, pool, poolDev), new: paths(current, dmNew, pool, poolDev) };
    const totals: Record<string, { old: number; new: number }> = {};
    let id = 1;
    for (let round = -2; round < ROUNDS; round++) {  // two warm-up rounds
      for (const name of Object.keys(builds.new)) {
        const order = round % 2 === 0 ? (['old', 'new'] as const) : (['new', 'old'] as const);
        for (const b of order) {
          const t0 = process.hrtime.bigint();
          for (let i = 0; i < PER; i++) await builds[b][name](id++);
          const s = Number(process.hrtime.bigint() - t0) / 1e9;
          if (round >= 0) (totals[name] ??= { old: 0, new: 0 })[b] += s;
        }
      }
    }
    const n = ROUNDS * PER;
    console.log(`\nA/B: ${n} lifecycles per path and build, interleaved; new/old time (below 1: the new build is faster)`);
    console.log('| path | old, ms per lifecycle | new, ms per lifecycle | new / old |\n|---|---|---|---|');
    for (const [name, t] of Object.entries(totals))
      console.log(`| ${name} | ${(t.old / n * 1e3).toFixed(2)} | ${(t.new / n * 1e3).toFixed(2)} | ${(t.new / t.old).toFixed(3)} |`);
  } finally {
    try { dmNew.removeSync(pool); } catch { /* reported by the leak of the next run */ }
    dmNew.close(); dmOld.close();
    for (const l of [meta, data]) { try { current.Loop.detachSync(l.path); } catch { /* gone */ } }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
