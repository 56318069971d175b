// Serializes changes to one pool: a promise queue inside this process, and flock() on a lock file across
// processes, so two processes never allocate the same thin id or interleave pool messages.
import { dmError } from '../core/errors';
import { native } from '../core/binding';
import { FdHandle } from '../core/handles';
import { Op, Steps, op, runAsync, runSync } from '../core/steps';

export class PoolLock {
  private tail: Promise<unknown> = Promise.resolve();
  /** Promise-form runs queued or running in this process. */
  private queued = 0;

  constructor(private readonly file: string) {}

  /** `body` under the lock, as an Op: the promise form queues behind this process's other runs; the sync
   * form blocks on another process's lock, and refuses (ERR_DM_IN_PROGRESS) while a promise-form run of this
   * process is queued or running, which it could never wait for. */
  op<T>(body: () => Steps<T>, device: string): Op<T> {
    return op(() => this.runSync(() => runSync(body()), device), () => this.run(() => runAsync(body())));
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    this.queued++;
    const result = this.tail.then(async () => {
      // Uncontended (the usual case): no thread. Contended: wait on a thread of its own.
      let fd = native.tryLockFile(this.file);
      if (fd < 0) fd = await native.lockFileAsync(this.file).promise;
      const held = new FdHandle(fd, `the lock ${this.file}`);
      try {
        return await fn();
      } finally {
        held.close();
      }
    }).finally(() => { this.queued--; });  // before the caller's continuation: a sync call may follow at once
    this.tail = result.catch(() => undefined);
    return result;
  }

  private runSync<T>(fn: () => T, device: string): T {
    if (this.queued > 0) throw dmError('ERR_DM_IN_PROGRESS', 'a promise call on this pool has not finished; a sync call cannot wait for it', device);
    const held = new FdHandle(native.lockFile(this.file), `the lock ${this.file}`);
    try {
      return fn();
    } finally {
      held.close();
    }
  }
}
