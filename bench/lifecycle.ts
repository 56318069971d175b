// Thin lifecycle benchmark (issue 2): create_thin, CREATE, LOAD, RESUME, REMOVE, delete, per volume, through
// the library's sync API, its promise API, raw C ioctls (the limit) and dmsetup subprocesses, in one run.
// Also the event loop's p99 lag while 1,000 ops run through the promise API, and memory: the peak RSS of a
// process doing the lifecycle each way (bench/peak-rss.c), and the heap left after GC by the timed rounds.
// Run by bench/run.sh.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DeviceMapper, Loop, Target, sectors } from '../lib';
import { native } from '../lib/core/binding';

const N = Number(process.env.BENCH_N ?? 300);
const N_DMSETUP = Number(process.env.BENCH_N_DMSETUP ?? 40);
const PER_ROUND = Number(process.env.BENCH_PER_ROUND ?? 10);
const SIZE = sectors(2048);
const rawBin = path.join(__dirname, '..', '..', 'bench', 'out', 'raw-lifecycle');
const peakRssBin = path.join(__dirname, '..', '..', 'bench', 'out', 'peak-rss');
/** Lifecycles (sync, then as many promise) in the child whose peak memory is measured. */
const MEM_N = Number(process.env.BENCH_MEM_N ?? 100);
const floorAddon = path.join(__dirname, '..', '..', 'bench', 'floor', 'build', 'Release', 'floor.node');

/** bench/floor: the raw steps of raw-steps.h, one native call per ioctl, sync or on the libuv pool. */
interface Floor {
  setup(fd: number, pool: string, poolDev: string, sectors: number): void;
  step(k: number, id: number): number;
  stepAsync(k: number, id: number): Promise<number>;
}
const STEPS = 6;

/** One measured path, and the paths it is read against. */
interface Path {
  name: string;
  run: () => number | Promise<number>;
  /** Lifecycles per round. */
  per: number;
  /** Seconds over all rounds, and (library paths) seconds inside their DM ioctls. */
  total: number;
  kernel?: number;
  library?: boolean;
  raw?: Path;
  floor?: Path;
}

function thinTable(poolDev: string, id: number): Target[] {
  return [{ start: sectors(0), length: SIZE, type: 'thin', params: `${poolDev} ${id}` }];
}

/** The thin lifecycle, five ways: each step its own call, or CREATE+LOAD+RESUME as createDevice; sync or promise;
 * and as two promise batches (create_thin+CREATE+LOAD+RESUME, then REMOVE+delete): two trips off the main thread. */
function lifecycles(dm: DeviceMapper, pool: string, poolDev: string) {
  return {
    syncOnce: (i: number, m = dm) => {
      const name = `bench-${i}`;
      m.messageSync(pool, 0, `create_thin ${i}`);
      m.createSync(name);
      m.loadSync(name, thinTable(poolDev, i));
      m.resumeSync(name);
      m.removeSync(name);
      m.messageSync(pool, 0, `delete ${i}`);
    },
    syncOnceCd: (i: number, m = dm) => {
      const name = `bench-${i}`;
      m.messageSync(pool, 0, `create_thin ${i}`);
      m.createDeviceSync(name, thinTable(poolDev, i));
      m.removeSync(name);
      m.messageSync(pool, 0, `delete ${i}`);
    },
    asyncOnce: async (i: number, m = dm) => {
      const name = `bench-${i}`;
      await m.message(pool, 0, `create_thin ${i}`);
      await m.create(name);
      await m.load(name, thinTable(poolDev, i));
      await m.resume(name);
      await m.remove(name);
      await m.message(pool, 0, `delete ${i}`);
    },
    asyncOnceCd: async (i: number, m = dm) => {
      const name = `bench-${i}`;
      await m.message(pool, 0, `create_thin ${i}`);
      await m.createDevice(name, thinTable(poolDev, i));
      await m.remove(name);
      await m.message(pool, 0, `delete ${i}`);
    },
    asyncBatch: async (i: number, m = dm) => {
      const name = `bench-${i}`;
      await m.batch().message(pool, 0, `create_thin ${i}`).create(name).load(name, thinTable(poolDev, i)).resume(name).run();
      await m.batch().remove(name).message(pool, 0, `delete ${i}`).run();
    },
  };
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
  try {
    const p = dm.createDeviceSync(pool, [{ start: sectors(0), length: sectors((1 << 30) / 512), type: 'thin-pool', params: `7:${meta.number} 7:${data.number} 128 0 1 skip_block_zeroing` }]);
    const poolDev = `${p.dev.major}:${p.dev.minor}`;
    let id = 1;

    const { syncOnce, syncOnceCd, asyncOnce, asyncOnceCd, asyncBatch } = lifecycles(dm, pool, poolDev);

    // Warm up each path, then measure in many short interleaved rounds, the order rotating each round, so
    // drift (a fuller pool, a warmer cache, a busy host) lands on every path alike. The raw C program runs
    // twice a round: bare, and making /dev/mapper nodes like the library does without udev.
    for (let i = 0; i < 20; i++) { syncOnce(id++); syncOnce(id++, bare); await asyncOnce(id++); await asyncOnce(id++, bare); syncOnceCd(id++); await asyncOnceCd(id++); await asyncBatch(id++); }
    const haveRaw = fs.existsSync(rawBin);
    // The floor: the raw steps, one native call per ioctl: what any API with one JS call per ioctl pays here.
    const floor = fs.existsSync(floorAddon) ? (require(floorAddon) as Floor) : undefined;
    floor?.setup(bare.fd, pool, poolDev, SIZE);
    const check = (rc: number) => { if (rc < 0) throw new Error(`floor step failed: errno ${-rc}`); };
    const floorOnce = (i: number) => { for (let k = 0; k < STEPS; k++) check(floor!.step(k, i)); };
    const floorOnceAsync = async (i: number) => { for (let k = 0; k < STEPS; k++) check(await floor!.stepAsync(k, i)); };
    const env = { ...process.env, DM_DISABLE_UDEV: '1' };
    const rounds = Math.max(1, Math.ceil(N / PER_ROUND)), perDmsetup = Math.max(1, Math.ceil(N_DMSETUP / rounds));
    const raw = (nodes: boolean) => () => {
      const secs = Number(execFileSync(rawBin, [pool, poolDev, String(PER_ROUND), String(id), String(SIZE), nodes ? '1' : '0'], { encoding: 'utf8' })) / 1e9;
      id += PER_ROUND;
      return secs;
    };
    const syncPath = (m: DeviceMapper, once: (i: number, m: DeviceMapper) => void = syncOnce) => () => { const s = id; id += PER_ROUND; return time(() => { for (let i = 0; i < PER_ROUND; i++) once(s + i, m); }); };
    const promisePath = (m: DeviceMapper, once: (i: number, m: DeviceMapper) => Promise<void> = asyncOnce) => () => { const s = id; id += PER_ROUND; return timeAsync(async () => { for (let i = 0; i < PER_ROUND; i++) await once(s + i, m); }); };
    const dmsetupPath = () => {
      const s = id; id += perDmsetup;
      return time(() => {
        for (let i = 0; i < perDmsetup; i++) {
          const n = s + i, name = `bench-${n}`;
          execFileSync('dmsetup', ['message', pool, '0', `create_thin ${n}`], { env });
          execFileSync('dmsetup', ['create', name, '--table', `0 ${SIZE} thin ${poolDev} ${n}`], { env });
          execFileSync('dmsetup', ['remove', name], { env });
          execFileSync('dmsetup', ['message', pool, '0', `delete ${n}`], { env });
        }
      });
    };
    // Each path names what it is read against: the raw C run doing the same work (nodes or none) and, for the
    // library, the floor of its mode (the floor makes no nodes: rows with nodes read a little low there).
    // Library paths also record the time spent inside their ioctls: wall time minus that is the library's own
    // cost, measured on the same lifecycles (the raw C comparison needs two runs and inherits their noise).
    const path_ = (name: string, run: Path['run'], more: Partial<Path> = {}): Path => ({ name, run, per: PER_ROUND, total: 0, ...more });
    const rawNodes = haveRaw ? path_('raw C ioctls + nodes', raw(true)) : undefined;
    const rawBare = haveRaw ? path_('raw C ioctls', raw(false)) : undefined;
    for (const r of [rawNodes, rawBare]) if (r) r.raw = r;  // the baseline reads 1.00× against itself
    const floorSync = floor ? path_('floor: a native call per ioctl, sync', syncPath(bare, floorOnce), { raw: rawBare }) : undefined;
    const floorPromise = floor ? path_('floor: a native call per ioctl, promise', promisePath(bare, floorOnceAsync), { raw: rawBare }) : undefined;
    const lib = (name: string, run: Path['run'], nodes: boolean, floorPath?: Path) => path_(name, run, { library: true, raw: nodes ? rawNodes : rawBare, floor: floorPath });
    const dmsetupRow = path_('dmsetup subprocesses', dmsetupPath, { per: perDmsetup });
    const paths = [rawNodes, rawBare, floorSync, floorPromise,
      lib('devmapper sync', syncPath(dm), true, floorSync),
      lib('devmapper promise', promisePath(dm), true, floorPromise),
      lib('devmapper sync, createDevice', syncPath(dm, syncOnceCd), true, floorSync),
      lib('devmapper promise, createDevice', promisePath(dm, asyncOnceCd), true, floorPromise),
      lib('devmapper promise, two batches (two trips)', promisePath(dm, asyncBatch), true),
      lib('devmapper sync, no nodes', syncPath(bare), false, floorSync),
      lib('devmapper promise, no nodes', promisePath(bare), false, floorPromise),
      dmsetupRow,
    ].filter((p): p is Path => p !== undefined);
    const gc = (globalThis as { gc?: () => void }).gc;  // bench/run.sh runs node --expose-gc
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < paths.length; k++) {
        const p = paths[(r + k) % paths.length];
        const before = native.dmIoctlStats().nanos;
        p.total += await p.run();
        if (p.library) p.kernel = (p.kernel ?? 0) + (native.dmIoctlStats().nanos - before) / 1e9;
      }
    }
    gc?.();
    const heapAfter = process.memoryUsage().heapUsed;
    const libraryLifecycles = paths.filter((p) => p.library).reduce((n, p) => n + p.per * rounds, 0);
    const rate = (p: Path) => (p.per * rounds) / p.total;
    for (const p of paths) console.log(`${p.name}: ${p.per * rounds} lifecycles in ${p.total.toFixed(3)} s`);

    // Event-loop lag while 1,000 ops (info calls, the cheapest) run through the promise API, 8 in flight.
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => { while (next++ < 1000) await dm.info(pool); }));
    h.disable();
    const lagP99 = h.percentile(99) / 1e6, lagMax = h.max / 1e6;

    console.log('\n| path | lifecycles/s | µs per lifecycle | vs raw C (same work) | vs floor | vs dmsetup | µs inside ioctls | kernel share |');
    console.log('|---|---|---|---|---|---|---|---|');
    const ratio = (p: Path, to?: Path, digits = 2) => (to ? (rate(p) / rate(to)).toFixed(digits) + '×' : '');
    for (const p of paths) {
      const us = (p.total / (p.per * rounds)) * 1e6, kernelUs = p.kernel === undefined ? undefined : (p.kernel / (p.per * rounds)) * 1e6;
      const kernel = kernelUs === undefined ? ' | ' : `${kernelUs.toFixed(0)} | ${(kernelUs / us).toFixed(2)}`;
      console.log(`| ${p.name} | ${rate(p).toFixed(1)} | ${us.toFixed(0)} | ${ratio(p, p.raw)} | ${ratio(p, p.floor)} | ${ratio(p, dmsetupRow, 1)} | ${kernel} |`);
    }
    console.log(`\nevent-loop lag during 1,000 promise ops (8 in flight): p99 ${lagP99.toFixed(2)} ms, max ${lagMax.toFixed(2)} ms`);

    // Peak RSS, one process per path, all measured by the kernel (ru_maxrss) through bench/peak-rss.
    if (fs.existsSync(peakRssBin) && haveRaw) {
      const peak = (cmd: string, args: string[]): number => {
        const r = spawnSync(peakRssBin, [cmd, ...args], { env, encoding: 'utf8' });
        const kib = /peak-rss-kib (\d+)/.exec(r.stderr ?? '');
        if (r.status !== 0 || !kib) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
        return Number(kib[1]);
      };
      const rawKib = peak(rawBin, [pool, poolDev, String(MEM_N), String(id), String(SIZE), '1']);
      id += MEM_N;
      const n = id++, name = `bench-${n}`;
      const dmsetupKib = Math.max(...[
        ['message', pool, '0', `create_thin ${n}`], ['create', name, '--table', `0 ${SIZE} thin ${poolDev} ${n}`],
        ['remove', name], ['message', pool, '0', `delete ${n}`]].map((args) => peak('dmsetup', args)));
      const nodeKib = peak(process.execPath, ['-e', '0']);
      const loadedKib = peak(process.execPath, [__filename, '--memory-child']);
      const workedKib = peak(process.execPath, [__filename, '--memory-child', pool, poolDev, String(MEM_N), String(id)]);
      id += 2 * MEM_N;
      const mib = (kib: number) => (kib / 1024).toFixed(1);
      const row = (what: string, kib: number) => console.log(`| ${what} | ${mib(kib)} | ${(kib / rawKib).toFixed(1)}× | ${(kib / dmsetupKib).toFixed(1)}× |`);
      console.log('\n| process (peak RSS, ru_maxrss) | MiB | vs raw C | vs one dmsetup |');
      console.log('|---|---|---|---|');
      row(`raw C, ${MEM_N} lifecycles with nodes`, rawKib);
      row('one dmsetup (largest of message, create, remove)', dmsetupKib);
      row('node -e 0', nodeKib);
      row('node + devmapper loaded', loadedKib);
      row(`node + devmapper, ${MEM_N} sync + ${MEM_N} promise lifecycles`, workedKib);
      console.log(`devmapper's own memory: ${mib(loadedKib - nodeKib)} MiB loaded, ${mib(workedKib - nodeKib)} MiB after the lifecycles (over bare Node)`);
    }
    console.log(`JS heap after GC: ${(heapBefore / 2 ** 20).toFixed(2)} MiB before the timed rounds, ${(heapAfter / 2 ** 20).toFixed(2)} MiB after ${libraryLifecycles} library lifecycles${gc ? '' : ' (no --expose-gc: not collected)'}`);
    console.log(`kernel: ${os.release()}, dm ${Object.values(dm.kernelVersionSync()).join('.')}`);
  } finally {
    try { dm.removeSync(pool); } catch (e) { console.error(e); }
    dm.close();
    bare.close();
    Loop.detachSync(meta.path); Loop.detachSync(data.path);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
// The process bench/peak-rss measures for the library rows: with no arguments it only loads devmapper; with a
// pool it runs MEM_N lifecycles sync, then MEM_N through promises, as the main rows do (with /dev/mapper nodes).
async function memoryChild(pool?: string, poolDev?: string, count?: string, first?: string): Promise<void> {
  if (!pool || !poolDev) return;
  const dm = new DeviceMapper();
  try {
    const { syncOnce, asyncOnce } = lifecycles(dm, pool, poolDev);
    const n = Number(count), s = Number(first);
    for (let i = 0; i < n; i++) syncOnce(s + i);
    for (let i = 0; i < n; i++) await asyncOnce(s + n + i);
  } finally {
    dm.close();
  }
}

const run = process.argv[2] === '--memory-child' ? memoryChild(...process.argv.slice(3)) : main();
run.catch((e) => { console.error(e); process.exit(1); });
