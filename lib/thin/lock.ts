// Serializes changes to one pool: a promise queue inside this process, and flock() on a lock file across
// processes, so two processes never allocate the same thin id or interleave pool messages.
import { native } from '../native';

export class PoolLock {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly file: string) {}

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(async () => {
      const fd = await native.lockFileAsync(this.file).promise;
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
