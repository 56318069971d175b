// Serializes changes to one pool: a promise queue inside this process, and flock() on a lock file across
// processes, so two processes never allocate the same thin id or interleave pool messages.
import { dmError } from '../core/errors';
import { native } from '../core/binding';
import { FdHandle } from '../core/handles';
import { Op, Steps, op, runAsync, runSync } from '../core/steps';

/** The step PoolLock.op makes: a body under that lock (how offload.ts knows a change's first step). */
export class LockStep<T> implements Op<T> {
  constructor(readonly lock: PoolLock, readonly body: () => Steps<T>, readonly sync: () => T, readonly async: () => Promise<T>) {}
}

/** What PoolLock.queue gives its function: the lock taken here and held to its end, and a lock step run here. */
export interface QueueSlot {
  /** Waits for the lock file (another process holds it) on a thread of its own; held until the slot ends. */
  hold(): Promise<void>;
  /** The step's body under the lock, run here in this slot (not queued again). */
  here<T>(step: LockStep<T>): Promise<T>;
}

export class PoolLock {
  private tail: Promise<unknown> = Promise.resolve();
  /** Promise-form runs queued or running in this process. */
  private queued = 0;

  constructor(protected readonly file: string) {}

  /** `body` under the lock, as an Op: the promise form queues behind this process's other runs; the sync
   * form blocks on another process's lock, and refuses (ERR_DM_IN_PROGRESS) while a promise-form run of this
   * process is queued or running, which it could never wait for. */
  op<T>(body: () => Steps<T>, device: string): Op<T> {
    return new LockStep(this, body, () => this.runSync(() => runSync(body()), device), () => this.run(() => runAsync(body())));
  }

  /**
   * For a change the offload worker runs (offload.ts): `fn` in this process's queue of promise-form runs,
   * without the lock file, which the worker takes. When another process holds it, the worker gives up before
   * running anything and `fn` calls `slot.hold()`: the lock is waited for here, on a thread of its own, and
   * held until `fn` ends. A change the worker could not run runs here, in its place, by `slot.here()`.
   */
  queue<T>(fn: (slot: QueueSlot) => Promise<T>): Promise<T> {
    return this.enqueue(async () => {
      let held: FdHandle | undefined;
      try {
        return await fn({
          hold: async () => { held ??= this.held(await native.lockFileAsync(this.file).promise); },
          here: (step) => (held ? runAsync(step.body()) : this.locked(() => runAsync(step.body()))),
        });
      } finally {
        held?.close();
      }
    });
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    return this.enqueue(() => this.locked(fn));
  }

  // Uncontended (the usual case): no thread. Contended: waits on a thread of its own.
  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    let fd = native.tryLockFile(this.file);
    if (fd < 0) fd = await native.lockFileAsync(this.file).promise;
    return this.whileHeld(fd, fn);
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    this.queued++;
    const result = this.tail.then(fn).finally(() => { this.queued--; });  // before the caller's continuation: a sync call may follow at once
    this.tail = result.catch(() => undefined);
    return result;
  }

  private runSync<T>(fn: () => T, device: string): T {
    if (this.queued > 0) throw dmError('ERR_DM_IN_PROGRESS', 'a promise call on this pool has not finished; a sync call cannot wait for it', device);
    return this.whileHeld(native.lockFile(this.file), fn);
  }

  /** The lock file's fd, held until closed. */
  protected held(fd: number): FdHandle {
    return new FdHandle(fd, `the lock ${this.file}`);
  }

  /** `fn` while `fd` holds the lock; closed when fn returns, or its promise settles. */
  protected whileHeld<T>(fd: number, fn: () => T): T {
    const held = this.held(fd);
    let r: T;
    try {
      r = fn();
    } catch (e) {
      held.close();
      throw e;
    }
    if (r instanceof Promise) return r.finally(() => held.close()) as T;
    held.close();
    return r;
  }
}

/** Thrown by WorkerLock when another process holds the lock and nothing has run yet. */
export class LockBusy extends Error {}

/**
 * The lock of a pool on the offload worker (offload.ts), set for each request: taken there without waiting
 * ('try': LockBusy if another process holds it, so the sender waits for it on a thread of its own), or held
 * for the request by the sending thread ('held').
 */
export class WorkerLock extends PoolLock {
  mode: 'try' | 'held' = 'held';
  /** No lock taken yet in this request: a busy lock can still be handed back. */
  fresh = true;
  /** Told the lock file's fd while this thread holds it, and -1 before it is closed: if the thread dies
   * holding it, the sending thread closes it, as a dying process's lock would be released. */
  onHeld?: (fd: number) => void;

  protected override held(fd: number): FdHandle {
    this.onHeld?.(fd);
    return new FdHandle(fd, `the lock ${this.file}`, (f) => {
      this.onHeld?.(-1);
      native.closeFd(f);
    });
  }

  override op<T>(body: () => Steps<T>, device: string): Op<T> {
    return new LockStep(this, body, () => {
      if (this.mode === 'held') return runSync(body());
      let fd = native.tryLockFile(this.file);
      if (fd < 0) {
        if (this.fresh) throw new LockBusy();
        fd = native.lockFile(this.file);
      }
      this.fresh = false;
      return this.whileHeld(fd, () => runSync(body()));
    }, () => Promise.reject(dmError('ERR_DM_INTERNAL', 'a pool of the offload worker runs sync forms only', device)));
  }
}
