// A pool that cannot take a change says so by its mode: the kernel answers every pool message with EOPNOTSUPP
// once the pool is read-only (its metadata full, or a device failed and the metadata needs a check) or has
// failed. The library names the mode, and what brings the pool back, instead of the kernel's errno.
import { dmError, DevmapperError } from '../core/errors';
import type { ThinPoolStatus } from '../targets';

/** The pool's mode as a status shows it: the kernel's words, and 'fail' / 'error' for a failed pool. */
export type PoolModeName = 'rw' | 'ro' | 'out_of_data_space' | 'fail' | 'error';

export function modeOf(s: ThinPoolStatus): PoolModeName {
  return s.state === 'ok' ? s.mode : s.state === 'Fail' ? 'fail' : 'error';
}

/** Why a pool in this state refuses changes, and the way back; empty for a pool that takes them. */
export function refusalReason(s: ThinPoolStatus): string {
  if (s.state !== 'ok') return `the pool has failed (status ${s.state}); its devices may be faulty: remove the fault, then deactivate and reopen it (attach)`;
  if (s.mode !== 'ro') return '';
  if (s.needsCheck) return 'the pool is read-only and its metadata needs a check (a data or metadata device failed): remove the fault, then repair() it';
  if (s.metadata.used >= s.metadata.total - 1) return `the pool is read-only: its metadata is full (${s.metadata.used} of ${s.metadata.total} blocks); growMetadata() brings it back`;
  return 'the pool is read-only (its table says read_only, or the kernel switched it after an error)';
}

/** ERR_DM_POOL_STATE naming the pool's mode, for `what` refused in state `s`; `cause` is the kernel's error. */
export function poolStateError(pool: string, what: string, s: ThinPoolStatus, cause?: unknown): DevmapperError {
  const e = dmError('ERR_DM_POOL_STATE', `${what} refused: ${refusalReason(s) || `the pool is ${modeOf(s)}`}`, pool, { mode: modeOf(s) });
  if (cause !== undefined) {
    e.cause = cause;
    // Still the kernel's refusal: the call that was refused stays on the error.
    const k = cause as DevmapperError;
    if (k.errno !== undefined) e.errno = k.errno;
    if (k.syscall) e.syscall = k.syscall;
    if (k.command) e.command = k.command;
  }
  return e;
}

/** Whether `e` is the kernel refusing a pool message because of the pool's mode. */
export const isModeRefusal = (e: unknown): boolean => (e as DevmapperError | undefined)?.code === 'EOPNOTSUPP';
