// Pool events and autoextend: how long from the write that crosses the low water mark to the `lowWater` event,
// and from that event to a finished autoextend (`extended`: the file grown, the loop resized, the table
// reloaded). The crossing write runs on the libuv pool (fs.promises) so the main thread is free to take the
// event. One file-backed pool per part.   BENCHES=events npm run bench
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PoolEvent, ThinPool } from '../lib';
import { eventSource } from '../lib/thin/events';

const SAMPLES = Number(process.env.BENCH_EVENTS_N ?? 20);
const GROWTHS = Number(process.env.BENCH_EXTEND_N ?? 8);
const BLOCK = 64 << 10;
const now = () => Number(process.hrtime.bigint()) / 1e6;
/** A bench that waits for an event that never comes says so instead of hanging. */
const within = <T>(p: Promise<T>, what: string): Promise<T> => Promise.race([p,
  new Promise<never>((_, reject) => { const t = setTimeout(() => reject(new Error(`no ${what} within 120 s`)), 120_000); t.unref(); })]);

/** The next event of `type` from an iterator that is read all along. */
function listen(pool: ThinPool, signal: AbortSignal) {
  const waiting = new Map<string, (e: PoolEvent & { at: number }) => void>();
  const seen: (PoolEvent & { at: number })[] = [];
  void (async () => {
    for await (const e of pool.events({ signal })) {
      const got = { ...e, at: now() };
      seen.push(got);
      waiting.get(e.type)?.(got);
    }
  })();
  return {
    seen,
    next: (type: PoolEvent['type']) => new Promise<PoolEvent & { at: number }>((r) => waiting.set(type, (e) => { waiting.delete(type); r(e); })),
  };
}

async function writeBlock(fh: fs.promises.FileHandle, block: number): Promise<void> {
  await fh.write(Buffer.alloc(BLOCK, block & 0xff), 0, BLOCK, block * BLOCK);
  await fh.sync();
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return `${s[Math.floor(s.length / 2)].toFixed(2)} | ${s[0].toFixed(2)} | ${s[s.length - 1].toFixed(2)}`;
};

async function withPool(tag: string, dataSize: string, fn: (pool: ThinPool, fh: fs.promises.FileHandle) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-${tag}-`));
  const pool = await ThinPool.create({ name: `bench-${tag}-${process.pid}`, dataFile: path.join(dir, 'data'), dataSize, skipBlockZeroing: true });
  try {
    const v = await (await pool.createVolume(`bench-${tag}-vol-${process.pid}`, '1G')).activate();
    const fh = await fs.promises.open(v.path, 'r+');
    try { await fn(pool, fh); } finally { await fh.close(); await v.deactivate(); }
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function crossingToEvent(): Promise<{ event: number[]; write: number[] }> {
  const event: number[] = [], write: number[] = [];
  await withPool('events', '64M', async (pool, fh) => {
    const ac = new AbortController();
    const l = listen(pool, ac.signal);
    // Every status the pool's wait loop reads, to know when it has read the one after a reload.
    let statuses = 0;
    const unsubscribe = eventSource(pool).subscribe({ status: () => { statuses++; }, event: () => undefined, end: () => undefined });
    const quiet = async () => {
      for (let seen = -1; seen !== statuses;) { seen = statuses; await new Promise((r) => setTimeout(r, 200)); }
    };
    let block = 0;
    try {
      for (let i = 0; i < SAMPLES; i++) {
        // The kernel compares free blocks with the mark before it allocates: with the mark one block below what
        // is free now, the first write brings free blocks to the mark and the second raises the event. The
        // reload re-arms the mark.
        const s = await pool.status({ noflush: true });
        if (s.state !== 'ok') throw new Error(`pool is ${s.state}`);
        await pool.setLowWaterMark(s.data.total - s.data.used - 1);
        await quiet();  // the loop has read the status after the reload, before free blocks reach the mark
        await writeBlock(fh, block++);
        const low = l.next('lowWater');
        const t0 = now();
        await writeBlock(fh, block++);
        const wrote = now();
        const e = await within(low, 'lowWater');
        event.push(e.at - t0);
        write.push(wrote - t0);
      }
    } finally {
      unsubscribe();
      ac.abort();
    }
  });
  return { event, write };
}

async function eventToExtended(): Promise<number[]> {
  const out: number[] = [];
  await withPool('extend', '16M', async (pool, fh) => {
    const ac = new AbortController();
    const l = listen(pool, ac.signal);
    const running = pool.autoextend({ threshold: 50, percent: 20, maxDataSize: '1G', signal: ac.signal });
    try {
      let block = 0;
      while (pool.params.lowWaterMark !== 128) await new Promise((r) => setTimeout(r, 10));  // autoextend set its mark
      for (let i = 0; i < GROWTHS; i++) {
        const low = l.next('lowWater');
        const extended = l.next('extended');
        let crossed = false;
        void low.then(() => { crossed = true; });
        while (!crossed) {
          await writeBlock(fh, block++);
          await new Promise((r) => setImmediate(r));
        }
        const [a, b] = [await within(low, 'lowWater'), await within(extended, 'extended')];
        out.push(b.at - a.at);
        // autoextend sets the mark for the new size after growing: let it, before the next crossing.
        const s = await pool.status({ noflush: true });
        const mark = s.state === 'ok' ? s.data.total - Math.ceil(s.data.total / 2) : -1;
        while (pool.params.lowWaterMark !== mark) await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      ac.abort();
      await running;
    }
  });
  return out;
}

async function main(): Promise<void> {
  const a = await crossingToEvent();
  const b = await eventToExtended();
  console.log(`events bench (${os.cpus().length} CPUs, node ${process.version}, kernel ${os.release()})`);
  console.log('| measure | samples | median (ms) | min (ms) | max (ms) |');
  console.log('|---|---|---|---|---|');
  console.log(`| crossing write issued → lowWater event | ${a.event.length} | ${stats(a.event)} |`);
  console.log(`| the same write's write + fsync alone | ${a.write.length} | ${stats(a.write)} |`);
  console.log(`| lowWater event → extended (autoextend, +20 %) | ${b.length} | ${stats(b)} |`);
}

main().catch((e) => { console.error(e); process.exit(1); });
