// Block-device helpers: size, discard, flush, device number.
import { native, DevNumber } from '../core/binding';
import { Bytes, bytes } from '../core/units';

export const Block = {
  /** Size in bytes (BLKGETSIZE64). */
  async size(device: string): Promise<Bytes> { return (await native.blockSizeAsync(device)) as Bytes; },
  sizeSync(device: string): Bytes { return native.blockSize(device) as Bytes; },
  /** Discards a byte range (BLKDISCARD); on a thin volume this gives the blocks back to the pool. */
  discard(device: string, offset: Bytes | number, length: Bytes | number): Promise<void> {
    return native.blockDiscardAsync(device, { offset: bytes(offset), length: bytes(length) });
  },
  discardSync(device: string, offset: Bytes | number, length: Bytes | number): void {
    native.blockDiscard(device, { offset: bytes(offset), length: bytes(length) });
  },
  /** fsync + BLKFLSBUF. */
  flush(device: string): Promise<void> { return native.blockFlushAsync(device); },
  flushSync(device: string): void { native.blockFlush(device); },
  /** major:minor of a device node. */
  deviceNumber(path: string): Promise<DevNumber> { return native.deviceNumberAsync(path); },
  deviceNumberSync(path: string): DevNumber { return native.deviceNumber(path); },
};

export function formatDev(d: DevNumber): string {
  return `${d.major}:${d.minor}`;
}
