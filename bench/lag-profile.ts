// Which main-thread stretches make the volume lifecycle lag the event loop: each synchronous stretch of a
// promise-API call (a body's step between two awaits, a step's start, a native completion) timed and summed by
// where it happens. A diagnostic for bench/loop-lag, not a benchmark of its own.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as steps from '../lib/core/steps';
import { native } from '../lib/core/binding';
import { ThinPool } from '../lib';

interface Stat { n: number; total: number; max: number; over5: number }
const stats = new Map<string, Stat>();
function note(key: string, ms: number): void {
  let s = stats.get(key);
  if (!s) stats.set(key, s = { n: 0, total: 0, max: 0, over5: 0 });
  s.n++; s.total += ms; if (ms > s.max) s.max = ms; if (ms > 5) s.over5++;
}
const now = () => performance.now();

// Late timers, by what ran in between: a 1 ms interval's lateness, charged to the steps started since it last
// fired (what kept the loop from it). Which chains of steps make the lag that bench/loop-lag measures.
let started: string[] = [];
const late = new Map<string, number[]>();
function watchLateness(): () => void {
  let expected = now() + 1;
  const t = setInterval(() => {
    const at = now(), lateMs = at - expected;
    expected = at + 1;
    if (lateMs > 1 && started.length) {
      const key = started.join(' > ');
      const a = late.get(key);
      if (a) a.push(lateMs); else late.set(key, [lateMs]);
    }
    started = [];
  }, 1);
  return () => clearInterval(t);
}

// The step runner, timed: the body's stretch from one step to the next, and each step's synchronous start.
(steps as unknown as Record<string, unknown>).runAsync = function runAsync<T>(g: steps.Steps<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let last = 'start';
    const advance = (failed: boolean, v: unknown): void => {
      let r: IteratorResult<steps.Op<unknown>, T>;
      const t0 = now();
      try {
        r = failed ? g.throw(v) : g.next(v);
      } catch (e) {
        return reject(e);
      }
      const name = r.done ? 'return' : ((r.value as unknown as { m?: string }).m ?? 'op');
      note(`body: after ${last}`, now() - t0);
      if (r.done) return resolve(r.value);
      last = name;
      started.push(name);
      let next: Promise<unknown>;
      const t1 = now();
      try { next = r.value.async(); } catch (e) { return advance(true, e); }
      note(`start: ${name}`, now() - t1);
      next.then((x) => advance(false, x), (e) => advance(true, e));
    };
    advance(false, undefined);
  });
};

// The registry store's calls, all on the main thread.
const Store = native.KvStore as unknown as new (file: string) => Record<string | symbol, unknown>;
(native as unknown as Record<string, unknown>).KvStore = function (file: string) {
  const kv = new Store(file);
  return new Proxy(kv, {
    get(t, p) {
      const f = t[p];
      if (typeof f !== 'function') return f;
      return (...a: unknown[]) => { const t0 = now(); try { return (f as (...x: unknown[]) => unknown).apply(t, a); } finally { note(`kv.${String(p)}`, now() - t0); } };
    },
  });
};

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lag-profile-'));
  const pool = await ThinPool.create({ name: 'lagp-pool', dataFile: path.join(dir, 'data'), dataSize: '1G', skipBlockZeroing: true });
  try {
    const report = (title: string) => {
      const rows = [...stats.entries()].sort((a, b) => b[1].total - a[1].total);
      console.log(`\nMain-thread stretches: ${title}`);
      console.log('| where | count | total ms | mean ms | max ms | > 5 ms |');
      console.log('|---|---|---|---|---|---|');
      for (const [k, s] of rows.slice(0, 30)) console.log(`| ${k} | ${s.n} | ${s.total.toFixed(1)} | ${(s.total / s.n).toFixed(2)} | ${s.max.toFixed(1)} | ${s.over5} |`);
      stats.clear();
      const lateRows = [...late].map(([k, a]) => ({ k, n: a.length, mean: a.reduce((x, y) => x + y, 0) / a.length, max: Math.max(...a) }))
        .sort((a, b) => b.n * b.mean - a.n * a.mean);
      console.log(`\nLate 1 ms timers (> 1 ms late), by the steps started since the last one fired: ${title}`);
      console.log('| steps | late timers | mean ms late | max ms |');
      console.log('|---|---|---|---|');
      for (const r of lateRows.slice(0, 20)) console.log(`| ${r.k} | ${r.n} | ${r.mean.toFixed(2)} | ${r.max.toFixed(1)} |`);
      late.clear();
    };
    const stopWatching = watchLateness();
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => { while (next++ < 1000) await pool.status({ noflush: true }); }));
    report('1,000 ThinPool.status calls, 8 in flight');
    const calls = Number(process.env.LAG_PROFILE_CALLS ?? 100);
    for (let i = 0; i < calls; i++) {
      const v = await pool.createVolume(`v${i}`, '64M');
      await v.activate();
      await v.deactivate();
      await pool.deleteVolume(v.name);
    }
    report(`${calls} lifecycles (createVolume, activate, deactivate, deleteVolume)`);
    stopWatching();
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
