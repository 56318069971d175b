// SIGKILL storms: a worker doing random operations (create, snapshot of active and inactive origins,
// activate, deactivate, delete with and without discard, resize, growData; promise and sync forms) is killed
// at seeded random moments, early (in startup and open) or late (inside ioctls, LMDB commits, between
// steps). After every kill the pool must open, agree with its metadata (thin_dump, the oracle), hold no
// half-made device and no pending change, and every volume written with a known pattern must read it back.
// At the end the pool is deactivated, its metadata checked by thin_check, attached again and checked again.
//   DEVMAPPER_STORM_KILLS (default 40; `npm run soak` runs 500), DEVMAPPER_STORM_SEED (default 1)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DeviceMapper, Loop, ThinPool } from '../../lib';
import { scratchDir, uniqueName } from './helpers';
import { Journal, checkAfterKill, leftovers, pattern, rng, startWorker } from './crash-helpers';

const kills = Number(process.env.DEVMAPPER_STORM_KILLS ?? 40);
const seed = Number(process.env.DEVMAPPER_STORM_SEED ?? 1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * thin_check on a deactivated pool's metadata file, through a read-only loop device (the tools open with
 * O_DIRECT, which the guest's tmpfs refuses); throws with its report if it finds anything.
 */
function thinCheck(metaFile: string): void {
  const loop = Loop.attachSync(metaFile, { readOnly: true });
  try {
    execFileSync('thin_check', [loop.path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const r = e as { status: number; stdout: string; stderr: string };
    throw new Error(`thin_check ${metaFile} exited ${r.status}: ${r.stdout}${r.stderr}`);
  } finally {
    Loop.detachSync(loop.path);
  }
}

test(`SIGKILL storm: ${kills} kills of a worker doing random operations; every reopen is clean`, async () => {
  const dir = scratchDir();
  const journal = new Journal(path.join(dir, 'journal'));
  const dataFile = path.join(dir, 'data');
  const name = uniqueName('storm');
  // This process keeps the pool open throughout, as a long-lived runtime would, while workers come and die.
  let keeper = await ThinPool.create({ name, dataFile, dataSize: '256M' });
  const random = rng(seed);
  const problems: string[] = [];
  let killed = 0, finished = 0, failed = 0, cycles = 0;
  const started = Date.now();
  let checkMs = 0;
  try {
    while (killed < kills && cycles < kills * 2) {
      const cycle = cycles++;
      const early = random() < 0.15;
      const w = startWorker(['storm', name, String(seed * 100_000 + cycle), journal.file]);
      if (!early) await w.ready;
      await sleep(early ? random() * 1500 : random() < 0.3 ? random() * 40 : random() * 1200);
      w.child.kill('SIGKILL');
      const how = await w.exit;
      if (how === 'SIGKILL') killed++;
      else if (how === 0) finished++;
      else { failed++; problems.push(`cycle ${cycle}: the worker failed (${String(how)})`); }
      const t0 = Date.now();
      const { problems: found, pool } = await checkAfterKill(name, journal);
      await pool.close();
      checkMs += Date.now() - t0;
      problems.push(...found.map((p) => `cycle ${cycle}: ${p}`));
      // Progress for long soaks (jest holds console output until the test ends).
      if (cycles % 25 === 0) process.stderr.write(`storm: ${cycles} cycles, ${killed} killed, ${problems.length} problems\n`);
    }
    // After the storm: deactivate, check the metadata offline, bring the pool back and check it again.
    const volumes = keeper.registry.count();
    await keeper.destroy();
    try {
      thinCheck(`${dataFile}.meta`);
    } finally {
      keeper = await ThinPool.attach({ name, dataFile });
    }
    await keeper.close();
    const { problems: after, pool } = await checkAfterKill(name, journal);
    keeper = pool;
    problems.push(...after.map((p) => `after attach: ${p}`));
    const seconds = (Date.now() - started) / 1000;
    console.log(`storm: seed ${seed}, ${cycles} cycles, ${killed} killed, ${finished} finished before the kill, ${failed} failed; ` +
      `${volumes} volumes at the end; ${problems.length} problems; ${seconds.toFixed(0)} s, ` +
      `${(seconds / cycles).toFixed(2)} s per kill-and-recover cycle (the check ${(checkMs / cycles / 1000).toFixed(2)} s)`);
    expect(problems).toEqual([]);
    expect(killed).toBeGreaterThanOrEqual(Math.min(kills, cycles));
  } finally {
    await keeper.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, Math.max(600_000, kills * 30_000));

test('two processes x 500 operations on one pool: no id collision, no lost volume, no deadlock', async () => {
  const dir = scratchDir();
  const journal = new Journal(path.join(dir, 'journal'));
  const name = uniqueName('pair');
  const pool = await ThinPool.create({ name, dataFile: path.join(dir, 'data'), dataSize: '512M' });
  try {
    const started = Date.now();
    const workers = [7001, 7002].map((s) => startWorker(['storm', name, String(s), journal.file, '500']));
    expect(await Promise.all(workers.map((w) => w.exit))).toEqual([0, 0]);
    const seconds = (Date.now() - started) / 1000;
    const { problems, pool: checked } = await checkAfterKill(name, journal);
    await checked.close();
    expect(problems).toEqual([]);
    const records = pool.registry.list();
    expect(new Set(records.map((r) => r.id)).size).toBe(records.length);
    // Every volume a worker made and did not delete is there; nothing else is.
    const kept = workers.flatMap((w) => JSON.parse(/^volumes (.*)$/m.exec(w.output())![1]) as string[]).sort();
    expect(records.map((r) => r.name).sort()).toEqual(kept);
    console.log(`two workers x 500 operations: ${seconds.toFixed(1)} s, ${records.length} volumes at the end`);
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 1_200_000);

test('SIGKILL storm over a pool\'s own life: create, attach and destroy killed at random; open, attach or create puts it right', async () => {
  const cycles = Number(process.env.DEVMAPPER_LIFECYCLE_KILLS ?? 24);
  const random = rng(seed + 7);
  const dir = scratchDir();
  const journal = new Journal(path.join(dir, 'journal'));
  const name = uniqueName('life');
  const o = { name, dataFile: path.join(dir, 'data'), dataSize: '64M' };
  // What a user does after a crash, with the API alone: open the pool; if it is not active, attach it; if its
  // files are no whole pool, create it again.
  const recover = async (): Promise<ThinPool> => {
    try { return await ThinPool.open(name); } catch { /* not active */ }
    try { return await ThinPool.attach({ name, dataFile: o.dataFile }); } catch { /* no whole pool on these files */ }  // attach takes no sizes
    return ThinPool.create(o);
  };
  const problems: string[] = [];
  const states = new Map<string, number>();
  let killed = 0, finished = 0;
  const dm = new DeviceMapper();
  let pool = await ThinPool.create(o);
  try {
    for (let i = 0; i < cycles; i++) {
      // A volume with known data, when the pool has none (new, or made again).
      if (!pool.volume('keep')) {
        const v = await (await pool.createVolume('keep', '4M')).activate();
        const fd = fs.openSync(v.path, 'r+');
        try { fs.writeSync(fd, pattern('keep')); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
        journal.written('keep');
        await v.deactivate();
      }
      const kind = (['destroy', 'attach', 'create'] as const)[i % 3];
      let args: string[];
      if (kind === 'destroy') {
        await pool.close();
        args = ['destroy', 'none', JSON.stringify({ name, deleteFiles: random() < 0.5 })];
      } else if (kind === 'attach') {
        await pool.destroy();
        args = ['attach', 'none', JSON.stringify({ name, dataFile: o.dataFile })];
      } else {
        await pool.destroy({ deleteFiles: true });
        args = ['create', 'none', JSON.stringify(o)];
      }
      const w = startWorker(args);
      await w.ready;  // printed right before the operation starts
      await sleep(random() * 400);
      w.child.kill('SIGKILL');
      const how = await w.exit;
      if (how === 'SIGKILL') killed++;
      else if (how === 3) finished++;
      else problems.push(`cycle ${i} (${kind}): the worker failed (${String(how)})`);
      // What the kill left, before anything is put right: a tally, to show where kills landed.
      const info = dm.infoIfExistsSync(name);
      const left = [kind, how === 'SIGKILL' ? 'killed' : 'done', info ? (info.liveTable ? 'pool live' : 'pool without live table') : 'no pool device',
        fs.existsSync(`${o.dataFile}.incomplete`) ? 'marker' : '', fs.existsSync(o.dataFile) ? '' : 'no data file'].filter(Boolean).join(', ');
      states.set(left, (states.get(left) ?? 0) + 1);
      pool = await recover();
      await pool.close();
      const { problems: found, pool: checked } = await checkAfterKill(name, journal);
      pool = checked;
      problems.push(...found.map((p) => `cycle ${i} (${kind}): ${p}`));
    }
    console.log(`pool life storm: ${cycles} cycles, ${killed} killed inside create/attach/destroy, ${finished} finished first; ${problems.length} problems\n` +
      [...states].sort().map(([k, n]) => `  ${n} x ${k}`).join('\n'));
    expect(problems).toEqual([]);
  } finally {
    await pool.destroy({ deleteFiles: true });
  }
  try {
    expect(leftovers(dm, name)).toEqual([]);
  } finally {
    dm.close();
  }
  expect(fs.readdirSync(dir)).toEqual(['journal']);
  fs.rmSync(dir, { recursive: true, force: true });
}, 600_000);
