// The one-body-two-twins runner (lib/thin/twin.ts) and the pool lock's sync form: pure JS and flock on a
// scratch file, no device-mapper needed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PoolLock } from '../../lib/thin/lock';
import { retryWhileBusy } from '../../lib/thin/busy';
import { Op, Steps, both, op, runAsync, runSync, start, step, sub } from '../../lib/core/steps';

/** An Op that records which form ran, and fails when told to. */
function probe<T>(log: string[], name: string, value: T, fail?: Error): Op<T> {
  return op(() => { log.push(`${name}:sync`); if (fail) throw fail; return value; },
    async () => { log.push(`${name}:async`); if (fail) throw fail; return value; });
}

function* body(log: string[], failSecond: boolean): Steps<string> {
  const a = yield* step(probe(log, 'a', 1));
  let b = 0;
  try {
    b = yield* step(probe(log, 'b', 2, failSecond ? Object.assign(new Error('busy'), { code: 'EBUSY' }) : undefined));
  } catch (e) {
    log.push(`caught ${(e as Error).message}`);
  } finally {
    log.push('finally');
  }
  const [c, d] = yield* step(both(probe(log, 'c', 3), sub(() => inner(log))));
  return `${a}${b}${c}${d}`;
}
function* inner(log: string[]): Steps<number> {
  return 10 * (yield* step(probe(log, 'inner', 4)));
}

test('one body runs the same steps in both forms: results, a caught error, finally, nested bodies', async () => {
  for (const fail of [false, true]) {
    const s: string[] = [], a: string[] = [];
    const syncResult = runSync(body(s, fail));
    const asyncResult = await runAsync(body(a, fail));
    expect(syncResult).toBe(asyncResult);
    expect(syncResult).toBe(fail ? '10340' : '12340');
    expect(s.map((l) => l.replace(':sync', ''))).toEqual(a.map((l) => l.replace(':async', '')));
    expect(s.every((l) => !l.endsWith(':async'))).toBe(true);
    expect(a.every((l) => !l.endsWith(':sync'))).toBe(true);
  }
});

test('an uncaught error leaves both forms as a throw and a rejection', async () => {
  function* failing(): Steps<void> { yield* step(probe([], 'x', 0, new Error('boom'))); }
  expect(() => runSync(failing())).toThrow('boom');
  await expect(runAsync(failing())).rejects.toThrow('boom');
});

test('a step that throws before making its promise reaches the body like a rejection', async () => {
  const throwing = op<number>(() => { throw new Error('early'); }, () => { throw new Error('early'); });
  function* catching(): Steps<string> {
    try {
      yield* step(throwing);
      return 'no error';
    } catch (e) {
      return `caught ${(e as Error).message}`;
    }
  }
  expect(runSync(catching())).toBe('caught early');
  expect(await runAsync(catching())).toBe('caught early');
});

test('start() runs alongside in the promise form, at once in the sync form; its error waits for the join', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const log: string[] = [];
  const slow = op(() => { log.push('slow'); throw new Error('late'); }, async () => { await gate; log.push('slow'); throw new Error('late'); });
  function* joined(): Steps<string> {
    const started = yield* step(start(slow));
    log.push('meanwhile');
    release?.();
    try {
      yield* step(started);
      return 'no error';
    } catch (e) {
      return (e as Error).message;
    }
  }
  expect(await runAsync(joined())).toBe('late');
  expect(log).toEqual(['meanwhile', 'slow']);
  log.length = 0;
  expect(runSync(joined())).toBe('late');
  expect(log).toEqual(['slow', 'meanwhile']);
});

test('retryWhileBusy retries EBUSY in both forms and stops when told it lasts', async () => {
  for (const run of [runSync, runAsync] as const) {
    let tries = 0;
    const attempt = function* (): Steps<string> {
      yield* step(op(() => undefined, async () => undefined));
      if (++tries < 3) throw Object.assign(new Error('busy'), { code: 'EBUSY' });
      return 'ok';
    };
    expect(await run(retryWhileBusy(attempt, { retries: 5, delayMs: 20 }))).toBe('ok');
    expect(tries).toBe(3);
    tries = 0;
    const lasting = function* (): Steps<boolean> { return true; };
    await expect((async () => run(retryWhileBusy(attempt, { retries: 5, delayMs: 20, lasting })))()).rejects.toMatchObject({ code: 'EBUSY' });
    expect(tries).toBe(1);
  }
});

test('the pool lock: the sync form refuses while a promise-form run of this process is pending, then works', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lock-'));
  try {
    const lock = new PoolLock(path.join(dir, 'lock'));
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    function* waiting(): Steps<string> { yield* step(op(() => undefined, () => gate)); return 'async'; }
    function* quick(): Steps<string> { return 'sync'; }
    const pending = lock.op(waiting, 'pool0').async();
    expect(() => lock.op(quick, 'pool0').sync()).toThrow(expect.objectContaining({ code: 'ERR_DM_IN_PROGRESS', device: 'pool0' }));
    release();
    expect(await pending).toBe('async');
    expect(lock.op(quick, 'pool0').sync()).toBe('sync');  // right after: the promise-form run has let go
    expect(await lock.op(quick, 'pool0').async()).toBe('sync');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
