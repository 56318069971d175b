// One body, two twins. ThinPool and ThinVolume write each operation once, as a generator that yields the
// blocking steps it needs (Op: a sync form and a promise form of the same call); runAsync drives it with
// promises, runSync with the sync twins. So the promise API and its sync twin cannot drift apart.
//   const info = yield* step(twin(this.dm, 'info', name));   // dm.info(name) or dm.infoSync(name)
import { dmError } from './errors';

/** `body`, with any error it throws passed through `map` (say, Node's fs errors made DevmapperErrors). */
export function* mapErrors<T>(body: Steps<T>, map: (e: unknown) => unknown): Steps<T> {
  try {
    return yield* body;
  } catch (e) {
    throw map(e);
  }
}

/** A blocking step in both forms. */
export interface Op<T> {
  sync(): T;
  async(): Promise<T>;
}

/** An operation's body: yields Ops, gets each one's result back, returns T. */
export type Steps<T> = Generator<Op<unknown>, T, unknown>;

export function op<T>(sync: () => T, async: () => Promise<T>): Op<T> {
  return { sync, async };
}

/** A blocking call in both forms, run as a step: `const r = yield* call(() => f(), () => fAsync())`. */
export const call = <T>(sync: () => T, async: () => Promise<T>): Generator<Op<unknown>, T, unknown> => step(op(sync, async));

/** Work that does not block (a local file, a close): the same function in both forms. */
export const local = <T>(fn: () => T): Op<T> => op(fn, async () => fn());

/** A value already known, as an Op. */
export const done = <T>(v: T): Op<T> => op(() => v, () => Promise.resolve(v));

/** Runs an Op inside a body: `const r = yield* step(op)`, typed. */
export function* step<T>(o: Op<T>): Generator<Op<unknown>, T, unknown> {
  return (yield o) as T;
}

/** The methods `m` of O that have an `mSync` twin. */
type Twinned<O> = {
  [K in keyof O & string]: O[K] extends (...a: never[]) => Promise<unknown>
    ? (`${K}Sync` extends keyof O ? K : never) : never;
}[keyof O & string];
type Fn = (...a: unknown[]) => unknown;

// One object per step, methods on the prototype: no closures made per call.
class TwinOp<R> implements Op<R> {
  constructor(private readonly o: Record<string, Fn>, private readonly m: string, private readonly args: unknown[]) {}
  sync(): R { return this.o[this.m + 'Sync'].apply(this.o, this.args) as R; }
  async(): Promise<R> { return this.o[this.m].apply(this.o, this.args) as Promise<R>; }
}

/** `o.m(...args)` as an Op whose sync form is `o.mSync(...args)`. */
export function twin<O, K extends Twinned<O>>(o: O, m: K,
  ...args: O[K] extends (...a: infer A) => unknown ? A : never): Op<O[K] extends (...a: never[]) => Promise<infer R> ? R : never> {
  return new TwinOp(o as unknown as Record<string, Fn>, m, args);
}

/** A nested body as an Op: run in the same mode as the body that yields it. */
export function sub<T>(body: () => Steps<T>): Op<T> {
  return op(() => runSync(body()), () => runAsync(body()));
}

/** Both Ops, concurrently in the promise form (Promise.all), one after the other in the sync form. */
export function both<A, B>(a: Op<A>, b: Op<B>): Op<[A, B]> {
  return op(() => [a.sync(), b.sync()], () => Promise.all([a.async(), b.async()]));
}

/**
 * Starts `o` and goes on; `yield* step(started)` later gives its result (or throws its error). The promise
 * form runs it alongside what follows; the sync form runs it at once. Either way its failure waits for the join.
 */
export function start<T>(o: Op<T>): Op<Op<T>> {
  return op(() => {
    try {
      const v = o.sync();
      return done(v);
    } catch (e) {
      return op<T>(() => { throw e; }, () => Promise.reject(e));
    }
  }, () => {
    const p = o.async();
    p.catch(() => undefined);  // joined later; this only keeps it from counting as unhandled meanwhile
    return Promise.resolve(op<T>(() => { throw dmError('ERR_DM_INTERNAL', 'a step started in the promise form was joined synchronously'); }, () => p));
  });
}

/** Waits `ms`: a timer in the promise form, a blocking sleep in the sync form (scripts only). */
export function sleep(ms: number): Op<void> {
  return op(() => { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); },
    () => new Promise<void>((r) => setTimeout(r, ms)));
}

export function runSync<T>(g: Steps<T>): T {
  let r = g.next();
  while (!r.done) {
    let v: unknown;
    try {
      v = r.value.sync();
    } catch (e) {
      r = g.throw(e);
      continue;
    }
    r = g.next(v);
  }
  return r.value;
}

// A plain promise chain, not an async function: one .then per step, no extra promise per await.
export function runAsync<T>(g: Steps<T>): Promise<T> {
  let first: IteratorResult<Op<unknown>, T>;
  try {
    first = g.next();
  } catch (e) {
    return Promise.reject(e);  // the body threw
  }
  return runAsyncFrom(g, first);
}

/** runAsync for a body already run to `first` (its first step, or its end). */
export function runAsyncFrom<T>(g: Steps<T>, first: IteratorResult<Op<unknown>, T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const go = (r: IteratorResult<Op<unknown>, T>): void => {
      if (r.done) return resolve(r.value);
      let next: Promise<unknown>;
      try {
        next = r.value.async();
      } catch (e) {
        return onError(e);  // the step threw before making its promise: the body gets it, as from a rejection
      }
      next.then(onValue, onError);
    };
    const advance = (failed: boolean, v: unknown): void => {
      let r: IteratorResult<Op<unknown>, T>;
      try {
        r = failed ? g.throw(v) : g.next(v);
      } catch (e) {
        return reject(e);  // the body threw
      }
      go(r);
    };
    const onValue = (v: unknown) => advance(false, v);
    const onError = (e: unknown) => advance(true, e);
    go(first);
  });
}
