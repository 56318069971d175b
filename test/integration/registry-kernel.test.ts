// The registry against the real pool: EEXIST skipping, recovery of a change interrupted at every step,
// and two processes creating on one pool at once.
import { fork } from 'node:child_process';
import path from 'node:path';
import { PendingChange, Step, ThinPool } from '../../lib';
import { uniqueName } from './helpers';
import { withPool } from './thin-helpers';

class Crash extends Error {}

test('an id the pool already has (EEXIST) is recorded as taken and skipped, not an error', async () => {
  await withPool({}, async (pool) => {
    await pool.dm.message(pool.name, 0, 'create_thin 0');  // behind the registry's back
    await pool.dm.message(pool.name, 0, 'create_thin 1');
    const v = await pool.createVolume(uniqueName('skip'), '1M');
    expect(v.id).toBe(2);
    expect((await pool.createVolume(uniqueName('next'), '1M')).id).toBe(3);
  });
});

const steps: Step[] = ['intent', 'message', 'commit'];
const cases = steps.flatMap((s) => (['create', 'snapshot', 'delete'] as const).map((op) => [op, s] as const));

/** After a change to `name` (or of `base`, for delete) was interrupted after `step`, open() must leave the
 *  registry agreeing with the pool: committed changes kept, uncommitted creates rolled back, deletes finished. */
async function expectRecovered(poolName: string, op: 'create' | 'snapshot' | 'delete', step: Step, base: string, name: string) {
  const reopened = await ThinPool.open(poolName);
  try {
    const tid = await reopened.transactionId();
    const names = reopened.registry.list().map((v) => v.name).sort();
    const committed = step === 'commit';
    if (op === 'delete') {
      expect(names).toEqual([]);  // a delete is always finished
      expect(tid).toBe(2);
    } else {
      expect(names).toEqual(committed ? [base, name].sort() : [base]);
      expect(tid).toBe(committed ? 2 : 1);
    }
    expect(reopened.registry.pending()).toBeUndefined();
    // The registry agrees with the pool: every recorded id exists (create_snap of it works), no orphan id
    // blocks allocation (the next volume gets the lowest id free in both).
    for (const v of reopened.registry.list()) {
      const probe = await reopened.snapshot(v.name, uniqueName('probe'));
      await reopened.deleteVolume(probe.name);
    }
    const fresh = await reopened.createVolume(uniqueName('fresh'), '1M');
    const used = reopened.registry.list().map((v) => v.id).filter((id) => id !== fresh.id);
    expect(fresh.id).toBe([0, 1, 2].find((id) => !used.includes(id)));
  } finally {
    await reopened.close();
  }
}

test.each(cases)('%s interrupted after %s (in-process): open() completes or rolls it back, nothing leaks', async (op, step) => {
  await withPool({}, async (pool) => {
    const base = await pool.createVolume(uniqueName('base'), '1M');
    let armed = true;
    const crashing = await ThinPool.open(pool.name, {
      hooks: { step: (s: Step, c: PendingChange) => { if (armed && s === step && c.op === op) { armed = false; throw new Crash(); } } },
    });
    const name = uniqueName('victim');
    const attempt = op === 'create' ? crashing.createVolume(name, '1M')
      : op === 'snapshot' ? crashing.snapshot(base.name, name)
        : crashing.deleteVolume(base.name);
    await expect(attempt).rejects.toBeInstanceOf(Crash);
    await crashing.close();
    await expectRecovered(pool.name, op, step, base.name, name);
  });
});

test.each(cases)('%s: the process dies after %s; the next open finishes the job', async (op, step) => {
  await withPool({}, async (pool) => {
    const base = await pool.createVolume(uniqueName('base'), '1M');
    const name = uniqueName('killed');
    const child = fork(path.join(__dirname, 'pool-worker.js'), [pool.name, 'crash', op, step, name, base.name], { stdio: 'inherit' });
    expect(await new Promise<number | null>((r) => child.once('exit', r))).toBe(9);
    await expectRecovered(pool.name, op, step, base.name, name);
  });
});

test('two processes x 200 creates on one pool never collide', async () => {
  await withPool({ dataSize: '64M' }, async (pool) => {
    const run = (tag: string) => new Promise<number | null>((resolve) => {
      fork(path.join(__dirname, 'pool-worker.js'), [pool.name, 'create-many', tag, '200'], { stdio: 'inherit' }).once('exit', resolve);
    });
    expect(await Promise.all([run('a'), run('b')])).toEqual([0, 0]);
    pool.registry.refresh();
    const all = pool.registry.list();
    if (all.length !== 400) {
      const have = new Set(all.map((v) => v.name));
      const ids = all.map((v) => v.id).sort((x, y) => x - y);
      console.log('DIAG missing', ['a', 'b'].flatMap((t) => Array.from({ length: 200 }, (_, i) => `${t}-${i}`)).filter((n) => ![...have].some((h) => h.startsWith(n + '-'))),
        'tid', await pool.transactionId(), 'pending', pool.registry.pending(), 'next', pool.registry.nextFreeId(),
        'ids gaps', ids.filter((id, i) => id !== i).slice(0, 5), 'count', pool.registry.count());
    }
    expect(all).toHaveLength(400);
    expect(new Set(all.map((v) => v.id)).size).toBe(400);
    expect(Math.max(...all.map((v) => v.id))).toBe(399);
    expect(await pool.transactionId()).toBe(400);
    expect(pool.registry.pending()).toBeUndefined();
    // Every id is really in the pool: deleting each succeeds.
    for (const v of all) await pool.deleteVolume(v.name);
  }, );
}, 600_000);
