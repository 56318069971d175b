// Block-device helpers: size, discard, flush, device number. Each checks its arguments before any syscall;
// the promise forms reject (never throw) on bad input.
import fs from 'node:fs';
import path from 'node:path';
import { native, DevNumber } from '../core/binding';
import { dmError, withSystemErrors } from '../core/errors';
import { Bytes, SECTOR_SIZE } from '../core/units';
import { Steps, call, runAsync, runSync } from '../core/steps';
import { MAX_MAJOR, MAX_MINOR, checkInteger, checkPath, show } from '../core/validate';

/** A byte count of a discard range: a safe integer, whole sectors (the kernel refuses others with EINVAL). */
function discardBytes(n: unknown, what: string, min: number): number {
  const v = checkInteger(n, what, min, Number.MAX_SAFE_INTEGER, 'ERR_DM_INVALID_SIZE');
  if (v % SECTOR_SIZE !== 0) throw dmError('ERR_DM_INVALID_SIZE', `${what} must be a multiple of ${SECTOR_SIZE} bytes, got ${v}`);
  return v;
}

function* sizeSteps(device: unknown): Steps<Bytes> {
  const d = checkPath(device, 'device');
  return (yield* call(() => native.blockSize(d), () => native.blockSizeAsync(d))) as Bytes;
}

function* discardSteps(device: unknown, offset: unknown, length: unknown): Steps<void> {
  const d = checkPath(device, 'device');
  // A zero length is refused here: older kernels took it as "to the end" when dropping the page cache.
  const range = { offset: discardBytes(offset, 'discard offset', 0), length: discardBytes(length, 'discard length', SECTOR_SIZE) };
  if (!Number.isSafeInteger(range.offset + range.length))
    throw dmError('ERR_DM_INVALID_SIZE', `discard range ends beyond 2^53 bytes (offset ${range.offset}, length ${range.length})`, d);
  yield* call(() => native.blockDiscard(d, range), () => native.blockDiscardAsync(d, range));
}

function* flushSteps(device: unknown): Steps<void> {
  const d = checkPath(device, 'device');
  yield* call(() => native.blockFlush(d), () => native.blockFlushAsync(d));
}

function* deviceNumberSteps(path: unknown): Steps<DevNumber> {
  const p = checkPath(path, 'path');
  return yield* call(() => native.deviceNumber(p), () => native.deviceNumberAsync(p));
}

/**
 * Block-device helpers, each a promise and a sync twin; a device is named by the path of its node, and its
 * arguments are checked before any syscall (the promise forms reject, never throw).
 */
export const Block = {

  /** Size in bytes (BLKGETSIZE64). */
  size(device: string): Promise<Bytes> { return runAsync(sizeSteps(device)); },
  /** The sync twin of size(). */
  sizeSync(device: string): Bytes { return runSync(sizeSteps(device)); },
  /**
   * Discards a byte range (BLKDISCARD); on a thin volume this gives the blocks back to the pool. Offset and
   * length are whole sectors; the length is not 0.
   */
  discard(device: string, offset: Bytes | number, length: Bytes | number): Promise<void> { return runAsync(discardSteps(device, offset, length)); },
  /** The sync twin of discard(). */
  discardSync(device: string, offset: Bytes | number, length: Bytes | number): void { runSync(discardSteps(device, offset, length)); },
  /** fsync + BLKFLSBUF. */
  flush(device: string): Promise<void> { return runAsync(flushSteps(device)); },
  /** The sync twin of flush(). */
  flushSync(device: string): void { runSync(flushSteps(device)); },
  /** major:minor of a device node. */
  deviceNumber(path: string): Promise<DevNumber> { return runAsync(deviceNumberSteps(path)); },
  /** The sync twin of deviceNumber(). */
  deviceNumberSync(path: string): DevNumber { return runSync(deviceNumberSteps(path)); },
};

/** `major:minor`, as tables name a device: major below 2^12 and minor below 2^20, as the kernel's dev_t holds them. */
export function formatDev(d: DevNumber): string {
  if (d === null || typeof d !== 'object') throw dmError('ERR_DM_INVALID_ARGUMENT', `a device number is { major, minor }, got ${show(d)}`);
  return `${checkInteger(d.major, 'major', 0, MAX_MAJOR)}:${checkInteger(d.minor, 'minor', 0, MAX_MINOR)}`;
}

/**
 * The node of a block device a table names: a path as it is, `major:minor` as `/dev/<kernel name>` (the name
 * sysfs gives it; devtmpfs makes that node without udev).
 */
export function nodeOfDevice(spec: string): string {
  if (spec.startsWith('/')) return spec;
  return withSystemErrors(`find the node of device ${spec}`, `/sys/dev/block/${spec}`, () => `/dev/${path.basename(fs.readlinkSync(`/sys/dev/block/${spec}`))}`);
}
