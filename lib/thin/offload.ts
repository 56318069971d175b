// The promise API's changes to a pool (create, snapshot, delete, resize, activate, deactivate), run off the
// main thread.
// A change is a chain of a dozen blocking steps (ioctls, registry commits): run as promises, each step's result
// is turned into the next request on the main thread, and those stretches lag the event loop. Here the chain
// runs as its sync twin on one worker thread per process (offload-worker.ts), on a shadow of the pool: the same
// registry environment (shared natively, native/kv_store.cc) and a DeviceMapper of its own. This thread checks
// the arguments first (the body up to its first step, which is the pool's lock), so bad input is refused here
// before any syscall, and queues the change with this process's other promise calls on the pool; the worker
// takes the pool's lock file, or, when another process holds it, hands the change back untouched and this
// thread waits for the lock (on a thread of its own) and holds it for the worker's second try. This thread
// keeps what stays in memory (the last change committed). Pools with the caller's own DeviceMapper, registry
// store or hooks run every step here, as do a closed pool's calls, calls that may wait long (the worker runs
// every pool's changes one at a time), and all calls once a worker could not start or has stopped.
import fs from 'node:fs';
import path from 'node:path';
import { types } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { DevNumber } from '../core/binding';
import { ClonedError, dmError, errorFromClone } from '../core/errors';
import { Op, Steps, runAsync, runAsyncFrom } from '../core/steps';
import type { ThinPoolParams } from '../targets';
import type { LockStep, QueueSlot } from './lock';
import type { PendingChange } from './registry';

/** What the worker makes its shadow of a pool from. */
export interface ShadowSpec {
  name: string;
  dev: DevNumber;
  params: ThinPoolParams;
  registryDir: string;
}

/** A change for the worker: a method of its shadow pool (or of a volume of it, given by its record). */
export interface OffloadCall {
  method: 'createVolume' | 'snapshot' | 'deleteVolume' | 'resizeVolume' | 'activate' | 'deactivate' | 'delete' | 'resize';
  args: unknown[];
  /** Keep this call on the calling thread (it may wait long: see waitsLong in changes.ts). */
  here?: boolean;
}

/** 'try': the worker takes the pool's lock file if it is free, else answers busy; 'held': this thread holds it. */
export type LockMode = 'try' | 'held';

export type OffloadRequest =
  | { id: number; pool: number; spec: ShadowSpec; call: OffloadCall; committed: PendingChange | undefined; lock: LockMode }
  | { id: number; drop: number };

/** What the worker shares with the sending thread as it goes (a SharedArrayBuffer's Int32Array). */
export const enum Shared {
  /** The pool lock file's fd while the worker holds it, else -1. */
  LockFd = 0,
  /** The id of the last request the worker began. */
  Started = 1,
}

export type OffloadReply =
  | { id: number; ok: true; value?: unknown; committed?: PendingChange }
  | { id: number; ok: false; error: ClonedError; committed?: PendingChange }
  | { id: number; busy: true };

/** What offloaded() needs of a pool's change protocol (PoolChanges). */
export interface OffloadingPool {
  readonly remote?: RemotePool;
  /** The last change this process committed (left pending in the registry). */
  committedChange?: PendingChange;
  /** Whether `o` is this pool's lock step. */
  isLockStep(o: Op<unknown>): boolean;
  /** `fn` queued with this process's other promise calls on the pool (PoolLock.queue). */
  lockQueue<T>(fn: (slot: QueueSlot) => Promise<T>): Promise<T>;
}

let worker: OffloadWorker | undefined;
/** Set once a worker could not start or stopped while in use: every later call runs on this thread. */
let broken = false;
let nextPool = 1;

/** The worker as this thread sees it (for tests): its thread id, the pools using it, calls in flight, idle. */
export function offloadWorkerState(): { threadId?: number; pools: number; calls: number; idle: boolean; holdsLock?: boolean } {
  return worker?.state() ?? { pools: 0, calls: 0, idle: false };
}

/** For tests: ends the worker at once, as if it had died (what it was running is cut off where it was). */
export function stopOffloadWorker(): Promise<number> {
  return worker?.stop() ?? Promise.resolve(0);
}

/** One pool's link to the worker. */
export class RemotePool {
  private readonly key = nextPool++;
  /** The worker that may have a shadow of this pool. */
  private sentTo?: OffloadWorker;
  /** The pool was closed: its calls run on its own thread, where they are refused. */
  private closed = false;

  constructor(private readonly spec: ShadowSpec) {}

  get usable(): boolean { return !broken && !this.closed; }

  /**
   * Starts the worker for this pool ahead of its first call (a pool opened by the promise API), so that call
   * does not wait for the worker to load the library. The worker then lives while the pool is open.
   */
  warm(): void {
    if (!this.usable) return;
    try {
      (worker ??= new OffloadWorker()).hold(this.key);
    } catch { /* no worker: the calls run on this thread */ }
  }

  /** Sends a call (with what the worker needs to make its shadow of the pool, if it has none). */
  call(c: OffloadCall, committed: PendingChange | undefined, lock: LockMode): Promise<OffloadReply> {
    if (!this.usable) return Promise.reject(new NotRun('the worker is not in use'));
    try {
      const w = worker ??= new OffloadWorker();
      const reply = w.request((id) => ({ id, pool: this.key, spec: this.spec, call: c, committed, lock }), this.key);
      this.sentTo = w;
      return reply;
    } catch (e) {
      return Promise.reject(new NotRun(String(e)));  // no worker, or a message it could not take: nothing sent
    }
  }

  /** Closes the worker's shadow (with the pool); the worker ends a while after no pool uses it. */
  drop(): void {
    this.closed = true;
    const w = worker;
    if (!w) return;
    if (this.sentTo !== w) { w.release(this.key); return; }
    this.sentTo = undefined;
    try {
      w.request((id) => ({ id, drop: this.key }), this.key, true).catch(() => undefined);
    } catch { /* a worker that cannot take a message has stopped: its shadows went with it */ }
  }
}

/** Nothing of the call ran on the worker: it could not be sent, or the worker had not begun it when it stopped. */
class NotRun extends Error {}

// How long an idle worker (no pool open that used it, no call in flight) is kept for the next pool: a script
// that closes and reopens its pool between changes does not load the library again on a new thread each time.
const IDLE_MS = 10_000;

class OffloadWorker {
  private readonly thread: Worker;
  private readonly shared = new Int32Array(new SharedArrayBuffer(8)).fill(-1);
  private readonly waiting = new Map<number, { resolve: (r: OffloadReply) => void; reject: (e: unknown) => void }>();
  private readonly pools = new Set<number>();
  private nextId = 1;
  private idle?: NodeJS.Timeout;

  constructor() {
    try {
      this.thread = new Worker(path.join(__dirname, 'offload-worker.js'), { workerData: this.shared });
    } catch (e) {
      broken = true;
      worker = undefined;
      throw e;
    }
    this.thread.unref();
    this.thread.on('message', (r: OffloadReply) => this.settle(r));
    this.thread.on('error', (e) => this.stopped(e));
    this.thread.on('exit', (code) => this.stopped(new Error(`exit code ${code}`)));
  }

  /** A pool will use the worker. */
  hold(pool: number): void {
    this.pools.add(pool);
    this.busy();
  }

  /** A pool that sent nothing is closed. */
  release(pool: number): void {
    this.pools.delete(pool);
    this.maybeIdle();
  }

  /** Sends a request (or throws, having sent nothing); the promise settles with its reply. */
  request(make: (id: number) => OffloadRequest, pool: number, drop = false): Promise<OffloadReply> {
    const id = this.nextId++;
    this.thread.postMessage(make(id));
    if (drop) this.pools.delete(pool);
    else this.pools.add(pool);
    this.busy();
    if (this.waiting.size === 0) this.thread.ref();  // a call in flight keeps the process alive, as a thread's would
    return new Promise<OffloadReply>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  private settle(r: OffloadReply): void {
    const w = this.waiting.get(r.id);
    if (!w) return;
    this.waiting.delete(r.id);
    if (this.waiting.size === 0) {
      this.thread.unref();
      this.maybeIdle();
    }
    w.resolve(r);
  }

  stop(): Promise<number> { return this.thread.terminate(); }

  state(): { threadId: number; pools: number; calls: number; idle: boolean; holdsLock: boolean } {
    return { threadId: this.thread.threadId, pools: this.pools.size, calls: this.waiting.size, idle: this.idle !== undefined,
      holdsLock: Atomics.load(this.shared, Shared.LockFd) >= 0 };
  }

  private busy(): void {
    clearTimeout(this.idle);
    this.idle = undefined;
  }

  private maybeIdle(): void {
    if (this.pools.size > 0 || this.waiting.size > 0 || this.idle) return;
    // hold() and request() clear the timer: when it fires, nothing uses the worker.
    this.idle = setTimeout(() => {
      if (worker === this) worker = undefined;
      void this.thread.terminate();
    }, IDLE_MS).unref();
  }

  private stopped(e: Error): void {
    this.busy();
    if (worker === this) {
      worker = undefined;
      if (this.pools.size > 0 || this.waiting.size > 0) broken = true;
    }
    // A lock the worker held goes with it, as a dead process's would.
    const fd = Atomics.exchange(this.shared, Shared.LockFd, -1);
    if (fd >= 0) {
      try { fs.closeSync(fd); } catch { /* closed already */ }
    }
    const started = Atomics.load(this.shared, Shared.Started);
    for (const [id, w] of this.waiting) {
      w.reject(id > started ? new NotRun(e.message)
        : dmError('ERR_DM_INTERNAL', `the thread that runs pool changes stopped (${e.message}); the change it was running is finished or undone by the next change or open()`));
    }
    this.waiting.clear();
  }
}

/**
 * A call of the promise API: the body `make` gives run to its first step here (its checks), then on the
 * worker, when the arguments can be sent; else here as a promise. A change (`locked`) must start with the
 * pool's lock: it queues with this process's promise calls on the pool. `result` makes the caller's value of
 * the worker's.
 */
export function offloaded<T>(pool: OffloadingPool, make: () => Steps<T>, call: OffloadCall, result: (value: unknown) => T, locked = true): Promise<T> {
  const body = make();
  let first: IteratorResult<Op<unknown>, T>;
  try {
    first = body.next();
  } catch (e) {
    return Promise.reject(e);
  }
  const remote = pool.remote;
  // The arguments as they are now: the call may wait in the queue while the caller changes its objects.
  const args = remote?.usable && !call.here && !first.done && (!locked || pool.isLockStep(first.value)) ? snapshot(call.args) : undefined;
  if (!args) return runAsyncFrom(body, first);
  body.return(undefined as T);
  const sent: OffloadCall = { method: call.method, args };
  const settle = (r: OffloadReply): T => {
    if ('busy' in r) throw dmError('ERR_DM_INTERNAL', 'the offload worker found the pool\'s lock busy though this thread holds it');
    if (locked) pool.committedChange = r.committed;
    if (!r.ok) throw errorFromClone(r.error);
    return result(r.value);
  };
  // A call the worker never ran runs here instead: a change in the queue's place it had.
  if (!locked) return remote!.call(sent, pool.committedChange, 'held').then(settle, (e) => (e instanceof NotRun ? runAsync(make()) : Promise.reject(e)));
  return pool.lockQueue(async (slot) => {
    let r: OffloadReply;
    try {
      r = await remote!.call(sent, pool.committedChange, 'try');
      if ('busy' in r) {
        await slot.hold();
        r = await remote!.call(sent, pool.committedChange, 'held');
      }
    } catch (e) {
      if (!(e instanceof NotRun)) throw e;
      return runInSlot(make(), slot);
    }
    return settle(r);
  });
}

// A change's body run here in its queue slot: its first step, the pool's lock, taken in the slot.
async function runInSlot<T>(body: Steps<T>, slot: QueueSlot): Promise<T> {
  const first = body.next();
  if (first.done) return first.value;
  let value: unknown;
  try {
    value = await slot.here(first.value as LockStep<unknown>);
  } catch (e) {
    return runAsyncFrom(body, body.throw(e));
  }
  return runAsyncFrom(body, body.next(value));
}

// A copy of the arguments the worker will get, made now; undefined when they are not plain data.
function snapshot(args: unknown[]): unknown[] | undefined {
  if (!cloneable(args)) return undefined;
  try {
    return structuredClone(args);
  } catch {
    return undefined;
  }
}

// Arguments a structured clone would refuse (functions, symbols, native handles) or change (a class's
// instance) stay on this thread with the whole call.
function cloneable(args: unknown[]): boolean {
  const plain = (v: unknown, depth: number): boolean => {
    if (v === null || v === undefined) return true;
    const t = typeof v;
    if (t === 'string' || t === 'number' || t === 'boolean') return true;
    if (t !== 'object' || depth > 4 || types.isProxy(v)) return false;
    if (Array.isArray(v)) return v.every((x) => plain(x, depth + 1));
    // A plain object's prototype is some realm's Object.prototype (a record the worker sent is of Node's own
    // realm, not of a vm context the caller may run in).
    const proto = Object.getPrototypeOf(v);
    if (proto !== null && Object.getPrototypeOf(proto) !== null) return false;
    for (const k of Reflect.ownKeys(v as object)) {
      const d = Object.getOwnPropertyDescriptor(v, k)!;
      if (typeof k !== 'string' || !('value' in d) || !d.enumerable || !plain(d.value, depth + 1)) return false;
    }
    return true;
  };
  try {
    return args.every((a) => plain(a, 0));
  } catch {
    return false;  // a getter or trap that throws: the body's own checks report it, here
  }
}
