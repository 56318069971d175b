// The event loop's lag while the library works through its promise API, against the lag while Node's own
// fs.promises does calls of the same shape, in one run: the fair yardstick under emulation, where a timer's
// wake-up alone costs about a millisecond. Each workload is 1,000 calls; the paths alternate in rounds, and
// each reports the p99 and max over all its rounds of how late a 1 ms timer fires while it runs (what
// `monitorEventLoopDelay` measures, sampled only while the path runs, so paths can share no sample).
//   - one call, 8 in flight: DeviceMapper.info() and ThinPool.status() against fs.promises.stat();
//   - a lifecycle of four calls, one at a time: createVolume, activate, deactivate, deleteVolume against
//     open, write, close, unlink of a file;
//   - the control: the same lifecycle run by the sync twins in another process while this loop only runs the
//     timer. What the kernel's work for the lifecycle (and, under emulation, its cost to the machine's CPUs)
//     does to the timer by itself: the floor for any design that runs the lifecycle in this process;
//   - the lifecycle on a second handle of the pool opened with `offload: false`, so that its calls stay on
//     this thread: what the offload worker changes.
// Each path repeats its 1,000 calls until it has run for MIN_MS in the round, so that every p99 rests on
// thousands of samples (the fs.promises paths finish 1,000 calls in a fraction of a second).
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RecordableHistogram, createHistogram } from 'node:perf_hooks';
import { DeviceMapper, ThinPool } from '../lib';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CALLS = 1000;
const MIN_MS = Number(process.env.BENCH_MIN_MS ?? 5000);

interface Row { name: string; run: () => Promise<void>; h: RecordableHistogram; ms: number; calls: number }

async function inFlight(n: number, call: () => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 8 }, async () => { while (next++ < n) await call(); }));
}

/** Samples how late a 1 ms timer fires into `h` (microseconds) until the returned stop is called. */
function sampleLag(h: RecordableHistogram): () => void {
  let last = performance.now();
  let timer: NodeJS.Timeout;
  const tick = () => {
    const now = performance.now();
    h.record(Math.max(1, Math.round((now - last - 1) * 1000)));
    last = now;
    timer = setTimeout(tick, 1);
  };
  timer = setTimeout(tick, 1);
  return () => clearTimeout(timer);
}

// A process that runs `CALLS / 4` sync lifecycles on the pool each time it reads a line, and says when done.
function lifecycleProcess(pool: string): { child: ChildProcess; run: () => Promise<void> } {
  const script = `
    const { ThinPool } = require(${JSON.stringify(path.resolve(__dirname, '../lib'))});
    const pool = ThinPool.openSync(${JSON.stringify(pool)}, { check: false });
    let seq = 0;
    process.stdin.on('data', () => {
      for (let i = 0; i < ${CALLS / 4}; i++) {
        const v = pool.createVolumeSync('c' + seq++, '64M');
        v.activateSync();
        v.deactivateSync();
        pool.deleteVolumeSync(v.name);
      }
      process.stdout.write('done\\n');
    });
    process.stdin.on('end', () => pool.closeSync());
    process.stdout.write('ready\\n');`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  let waiting: (() => void) | undefined;
  const ready = new Promise<void>((r) => { waiting = r; });
  child.stdout!.on('data', () => { const w = waiting; waiting = undefined; w?.(); });
  return {
    child,
    run: async () => {
      await ready;
      const done = new Promise<void>((r) => { waiting = r; });
      child.stdin!.write('go\n');
      await done;
    },
  };
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lag-bench-'));
  const pool = await ThinPool.create({ name: 'lag-pool', dataFile: path.join(dir, 'data'), dataSize: '1G', skipBlockZeroing: true });
  const dm = new DeviceMapper();
  const file = path.join(dir, 'probe');
  fs.writeFileSync(file, 'x');
  const page = Buffer.alloc(4096, 1);
  let seq = 0;
  const other = lifecycleProcess('lag-pool');
  const inThread = await ThinPool.open('lag-pool', { check: false, offload: false });
  const lifecycles = async (p: ThinPool) => {
    for (let i = 0; i < CALLS / 4; i++) {
      const v = await p.createVolume(`v${seq++}`, '64M');
      await v.activate();
      await v.deactivate();
      await p.deleteVolume(v.name);
    }
  };
  try {
    const rows: Row[] = [
      { name: 'fs.promises.stat, 8 in flight', ms: 0, calls: 0, h: createHistogram(), run: () => inFlight(CALLS, () => fs.promises.stat(file)) },
      { name: 'DeviceMapper.info, 8 in flight', ms: 0, calls: 0, h: createHistogram(), run: () => inFlight(CALLS, () => dm.info('lag-pool')) },
      { name: 'ThinPool.status, 8 in flight', ms: 0, calls: 0, h: createHistogram(), run: () => inFlight(CALLS, () => pool.status({ noflush: true })) },
      {
        name: 'fs.promises open, write, close, unlink (250 ×)', ms: 0, calls: 0, h: createHistogram(), run: async () => {
          for (let i = 0; i < CALLS / 4; i++) {
            const p = path.join(dir, `f${seq++}`);
            const fh = await fs.promises.open(p, 'w');
            await fh.write(page, 0, page.length, 0);
            await fh.close();
            await fs.promises.unlink(p);
          }
        },
      },
      {
        name: 'the same lifecycle in another process (sync twins), only the timer here', ms: 0, calls: 0, h: createHistogram(), run: other.run,
      },
      {
        name: 'ThinPool createVolume, activate, deactivate, deleteVolume (250 ×)', ms: 0, calls: 0, h: createHistogram(), run: () => lifecycles(pool),
      },
      {
        name: 'the same on the calling thread (a pool opened with offload: false)', ms: 0, calls: 0, h: createHistogram(),
        run: () => lifecycles(inThread),
      },
    ];
    for (const r of rows) await r.run();  // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < rows.length; k++) {
        const r = rows[(round + k) % rows.length];
        const t0 = performance.now();
        const stop = sampleLag(r.h);
        do {
          await r.run();
          r.calls += CALLS;
        } while (performance.now() - t0 < MIN_MS);
        stop();
        r.ms += performance.now() - t0;
      }
    }
    const p99 = (r: Row) => r.h.percentile(99) / 1e3;
    const base = (r: Row) => rows[r.name.includes('8 in flight') ? 0 : 3];
    const control = rows[4];
    console.log(`\nEvent-loop lag, ${ROUNDS} rounds, each path at least ${MIN_MS} ms a round (a 1 ms timer's lateness)`);
    console.log('| path | ms per 1,000 calls | samples | lag p99 (ms) | lag max (ms) | p99 vs fs.promises of the same shape | p99 vs the control |');
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rows) {
      const vs = base(r) === r || r === control ? '' : `${(p99(r) / p99(base(r))).toFixed(2)}×`;
      const vsControl = rows.indexOf(r) > 4 ? `${(p99(r) / p99(control)).toFixed(2)}×` : '';
      console.log(`| ${r.name} | ${(r.ms / r.calls * CALLS).toFixed(0)} | ${r.h.count} | ${p99(r).toFixed(2)} | ${(r.h.max / 1e3).toFixed(2)} | ${vs} | ${vsControl} |`);
    }
  } finally {
    await inThread.close();
    other.child.stdin!.end();
    await new Promise((r) => other.child.once('exit', r));
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
