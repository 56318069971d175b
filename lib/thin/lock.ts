// Serializes changes to one pool: a promise queue inside this process, and flock() on a lock file across
// processes, so two processes never allocate the same thin id or interleave pool messages.
import { native } from '../native';

export class PoolLock {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly file: string) {}

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(async () => {
      // Uncontended (the usual case): no thread. Contended: wait on a thread of its own.
      let fd = native.tryLockFile(this.file);
      if (fd < 0) fd = await native.lockFileAsync(this.file).promise;
      try {
        return await fn();
      } finally {
        native.closeFd(fd);
      }
    });
    this.tail = result.catch(() => undefined);
    return result;
  }
}
