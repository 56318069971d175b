// Sizes. Device-mapper speaks 512-byte sectors; files and block devices speak bytes. The branded types keep
// one from being passed where the other is meant.
import { dmError } from './errors';
import { show } from './validate';

declare const unit: unique symbol;
/** A count of 512-byte sectors. */
export type Sectors = number & {
  /** Type-only brand: no such field exists at run time. */
  readonly [unit]: 'sectors';
};
/** A count of bytes. */
export type Bytes = number & {
  /** Type-only brand: no such field exists at run time. */
  readonly [unit]: 'bytes';
};

/** A count of a thin pool's data blocks (each the pool's block size in sectors). */
export type DataBlocks = number & {
  /** Type-only brand: no such field exists at run time. */
  readonly [unit]: 'data blocks';
};
/** A count of 4 KiB thin-pool metadata blocks. */
export type MetadataBlocks = number & {
  /** Type-only brand: no such field exists at run time. */
  readonly [unit]: 'metadata blocks';
};

/** Bytes in a sector: device-mapper's unit of size and offset. */
export const SECTOR_SIZE = 512;
/** Bytes in a thin-pool metadata block. */
export const METADATA_BLOCK_SIZE = 4096;

function checkCount(n: unknown, what: string): asserts n is number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
    throw dmError('ERR_DM_INVALID_SIZE', `${what} must be a non-negative safe integer, got ${show(n)}`);
}

/** `n` as Sectors. @throws {DevmapperError} ERR_DM_INVALID_SIZE unless `n` is a non-negative safe integer. */
export function sectors(n: number): Sectors {
  checkCount(n, 'sectors');
  return n as Sectors;
}

/** `n` as Bytes. @throws {DevmapperError} ERR_DM_INVALID_SIZE unless `n` is a non-negative safe integer. */
export function bytes(n: number): Bytes {
  checkCount(n, 'bytes');
  return n as Bytes;
}

/** Bytes to sectors; the byte count must be a multiple of 512. @throws {DevmapperError} ERR_DM_INVALID_SIZE */
export function bytesToSectors(n: Bytes | number): Sectors {
  checkCount(n, 'bytes');
  if (n % SECTOR_SIZE !== 0) throw dmError('ERR_DM_INVALID_SIZE', `${n} bytes is not a multiple of ${SECTOR_SIZE}`);
  return (n / SECTOR_SIZE) as Sectors;
}

/** Sectors to bytes (unchecked). */
export function sectorsToBytes(n: Sectors): Bytes {
  return (n * SECTOR_SIZE) as Bytes;
}

/** Data blocks of `blockSize` sectors to sectors (unchecked). */
export function dataBlocksToSectors(n: DataBlocks, blockSize: Sectors): Sectors {
  return (n * blockSize) as Sectors;
}

/** Data blocks of `blockSize` sectors to bytes (unchecked). */
export function dataBlocksToBytes(n: DataBlocks, blockSize: Sectors): Bytes {
  return sectorsToBytes(dataBlocksToSectors(n, blockSize));
}

const suffixes: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/**
 * '10G', '512M', '64k', '4096' (binary units, as dmsetup and Docker read them; an optional 'B' or 'iB' after
 * the suffix) to bytes. @throws {DevmapperError} ERR_DM_INVALID_SIZE for other text or beyond 2^53 bytes.
 */

export function parseSize(text: string): Bytes {
  const m = typeof text === 'string' ? /^\s*(\d+)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text) : null;
  if (!m) throw dmError('ERR_DM_INVALID_SIZE', `cannot read size ${show(text)}`);
  const n = Number(m[1]) * suffixes[m[2].toLowerCase()];
  if (!Number.isSafeInteger(n)) throw dmError('ERR_DM_INVALID_SIZE', `size ${show(text)} is beyond 2^53 bytes`);
  return bytes(n);
}

/** A size argument in bytes: a number, or text such as '10G' (parseSize). */
export function byteSize(v: unknown, what = 'size', device?: string): Bytes {
  if (typeof v === 'string') return parseSize(v);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw dmError('ERR_DM_INVALID_SIZE', `${what} must be bytes (a non-negative integer) or text such as '10G', got ${show(v)}`, device);
  return v as Bytes;
}
