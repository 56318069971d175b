// Thin lifecycle benchmark (issue 2): create_thin, CREATE, LOAD, RESUME, REMOVE, delete, per volume, through
// the library's sync API, its promise API, raw C ioctls (the limit) and dmsetup subprocesses, in one run.
// Also the event loop's p99 lag while 1,000 ops run through the promise API. Run by bench/run.sh.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DeviceMapper, Loop, Target, sectors } from '../lib';

const N = Number(process.env.BENCH_N ?? 300);
const N_DMSETUP = Number(process.env.BENCH_N_DMSETUP ?? 40);
const SIZE = sectors(2048);
const rawBin = path.join(__dirname, '..', '..', 'bench', 'out', 'raw-lifecycle');

interface Row { name: string; perSec: number; usPerOp: number }

function thinTable(poolDev: string, id: number): Target[] {
  return [{ start: sectors(0), length: SIZE, type: 'thin', params: `${poolDev} ${id}` }];
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}
async function timeAsync(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-'));
  const metaFile = path.join(dir, 'meta'), dataFile = path.join(dir, 'data');
  fs.writeFileSync(metaFile, ''); fs.truncateSync(metaFile, 64 << 20);
  fs.writeFileSync(dataFile, ''); fs.truncateSync(dataFile, 1 << 30);
  const meta = Loop.attachSync(metaFile), data = Loop.attachSync(dataFile);
  const dm = new DeviceMapper();
  // The C baseline makes no /dev/mapper nodes; a second mapper without node management is the like-for-like row.
  const bare = new DeviceMapper({ nodes: 'none' });
  const pool = 'bench-pool';
  const rows: Row[] = [];
  const row = (name: string, ops: number, secs: number) => {
    rows.push({ name, perSec: ops / secs, usPerOp: (secs / ops) * 1e6 });
    console.log(`${name}: ${ops} lifecycles in ${secs.toFixed(3)} s`);
  };
  try {
    const p = dm.createDeviceSync(pool, [{ start: sectors(0), length: sectors((1 << 30) / 512), type: 'thin-pool', params: `7:${meta.number} 7:${data.number} 128 0 1 skip_block_zeroing` }]);
    const poolDev = `${p.dev.major}:${p.dev.minor}`;
    let id = 1;

    const syncOnce = (i: number, m = dm) => {
      const name = `bench-${i}`;
      m.messageSync(pool, 0, `create_thin ${i}`);
      m.createSync(name);
      m.loadSync(name, thinTable(poolDev, i));
      m.resumeSync(name);
      m.removeSync(name);
      m.messageSync(pool, 0, `delete ${i}`);
    };
    const asyncOnce = async (i: number, m = dm) => {
      const name = `bench-${i}`;
      await m.message(pool, 0, `create_thin ${i}`);
      await m.create(name);
      await m.load(name, thinTable(poolDev, i));
      await m.resume(name);
      await m.remove(name);
      await m.message(pool, 0, `delete ${i}`);
    };

    // Warm up each path, then measure in interleaved rounds so drift (a fuller pool, a warmer cache) is
    // shared by every path instead of landing on whichever ran last.
    for (let i = 0; i < 20; i++) { syncOnce(id++); syncOnce(id++, bare); await asyncOnce(id++); await asyncOnce(id++, bare); }
    const haveRaw = fs.existsSync(rawBin);
    const env = { ...process.env, DM_DISABLE_UDEV: '1' };
    const total = { raw: 0, sync: 0, promise: 0, syncBare: 0, promiseBare: 0, dmsetup: 0 };
    const rounds = 5, per = Math.ceil(N / rounds), perDmsetup = Math.ceil(N_DMSETUP / rounds);
    for (let r = 0; r < rounds; r++) {
      if (haveRaw) {
        total.raw += Number(execFileSync(rawBin, [pool, poolDev, String(per), String(id), String(SIZE)], { encoding: 'utf8' })) / 1e9;
        id += per;
      }
      const s1 = id; total.sync += time(() => { for (let i = 0; i < per; i++) syncOnce(s1 + i); }); id += per;
      const s2 = id; total.promise += await timeAsync(async () => { for (let i = 0; i < per; i++) await asyncOnce(s2 + i); }); id += per;
      const s4 = id; total.syncBare += time(() => { for (let i = 0; i < per; i++) syncOnce(s4 + i, bare); }); id += per;
      const s5 = id; total.promiseBare += await timeAsync(async () => { for (let i = 0; i < per; i++) await asyncOnce(s5 + i, bare); }); id += per;
      const s3 = id;
      total.dmsetup += time(() => {
        for (let i = 0; i < perDmsetup; i++) {
          const n = s3 + i, name = `bench-${n}`;
          execFileSync('dmsetup', ['message', pool, '0', `create_thin ${n}`], { env });
          execFileSync('dmsetup', ['create', name, '--table', `0 ${SIZE} thin ${poolDev} ${n}`], { env });
          execFileSync('dmsetup', ['remove', name], { env });
          execFileSync('dmsetup', ['message', pool, '0', `delete ${n}`], { env });
        }
      });
      id += perDmsetup;
    }
    if (haveRaw) row('raw C ioctls', per * rounds, total.raw);
    row('devmapper sync', per * rounds, total.sync);
    row('devmapper promise', per * rounds, total.promise);
    row('devmapper sync, no nodes', per * rounds, total.syncBare);
    row('devmapper promise, no nodes', per * rounds, total.promiseBare);
    row('dmsetup subprocesses', perDmsetup * rounds, total.dmsetup);

    // Event-loop lag while 1,000 ops (info calls, the cheapest) run through the promise API, 8 in flight.
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => { while (next++ < 1000) await dm.info(pool); }));
    h.disable();
    const lagP99 = h.percentile(99) / 1e6, lagMax = h.max / 1e6;

    const by = (n: string) => rows.find((r) => r.name === n);
    const rawRate = by('raw C ioctls')?.perSec;
    console.log('\n| path | lifecycles/s | µs per lifecycle | vs raw C | vs dmsetup |');
    console.log('|---|---|---|---|---|');
    for (const r of rows) {
      const vsRaw = rawRate ? (r.perSec / rawRate).toFixed(2) + '×' : 'n/a';
      const vsDmsetup = (r.perSec / by('dmsetup subprocesses')!.perSec).toFixed(1) + '×';
      console.log(`| ${r.name} | ${r.perSec.toFixed(1)} | ${r.usPerOp.toFixed(0)} | ${vsRaw} | ${vsDmsetup} |`);
    }
    console.log(`\nevent-loop lag during 1,000 promise ops (8 in flight): p99 ${lagP99.toFixed(2)} ms, max ${lagMax.toFixed(2)} ms`);
    console.log(`kernel: ${os.release()}, dm ${Object.values(dm.kernelVersionSync()).join('.')}`);
  } finally {
    try { dm.removeSync(pool); } catch (e) { console.error(e); }
    dm.close();
    bare.close();
    Loop.detachSync(meta.path); Loop.detachSync(data.path);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
