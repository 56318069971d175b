// EBUSY from the kernel that passes: an opener about to close (udev, blkid), or a thin whose last device is
// still being torn down. One bounded retry loop for every such call.
import { DevmapperError } from '../errors';

export interface BusyRetry {
  retries: number;
  delayMs: number;
  /** Asked after each EBUSY: true when the busy state will not pass (stop and throw it). */
  lasting?: () => Promise<boolean>;
}

/** Runs `op` again while it fails with EBUSY, at most `retries` more times, `delayMs` apart. */
export async function retryWhileBusy<T>(op: () => Promise<T>, o: BusyRetry): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (e) {
      if ((e as DevmapperError).code !== 'EBUSY' || attempt >= o.retries || (o.lasting && await o.lasting())) throw e;
      await new Promise((r) => setTimeout(r, o.delayMs));
    }
  }
}
