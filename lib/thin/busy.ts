// EBUSY from the kernel that passes: an opener about to close (udev, blkid), or a thin whose last device is
// still being torn down. One bounded retry loop for every such call.
import { DevmapperError } from '../core/errors';
import { Steps, sleep, step } from '../core/steps';

export interface BusyRetry {
  retries: number;
  delayMs: number;
  /** Asked after each EBUSY: true when the busy state will not pass (stop and throw it). */
  lasting?: () => Steps<boolean>;
}

/** Runs `attempt` again while it fails with EBUSY, at most `retries` more times, `delayMs` apart. */
export function* retryWhileBusy<T>(attempt: () => Steps<T>, o: BusyRetry): Steps<T> {
  for (let n = 0; ; n++) {
    try {
      return yield* attempt();
    } catch (e) {
      if ((e as DevmapperError).code !== 'EBUSY' || n >= o.retries || (o.lasting && (yield* o.lasting()))) throw e;
      yield* step(sleep(o.delayMs));
    }
  }
}
