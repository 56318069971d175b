// The thin-pool target: table params and status line.
import { dmError } from '../core/errors';
import { Sectors } from '../core/units';
import { show } from '../core/validate';
import {
  DeviceSpec, TargetModel, checkDevice, checkField, checkParams, device, extraWords, int, join, oneOf, optFlag, words,
} from './model';

/** The smallest thin-pool data block size, in sectors (64 KiB); every block size is a multiple of it. */
export const MIN_BLOCK_SIZE = 128;      // sectors, 64 KiB
/** The largest thin-pool data block size, in sectors (1 GiB). */
export const MAX_BLOCK_SIZE = 2097152;  // sectors, 1 GiB
/** The kernel ignores metadata beyond this (DM_SM_METADATA_MAX_SECTORS: 255 * 2^14 blocks of 4 KiB). */
export const MAX_METADATA_SECTORS = 255 * (1 << 14) * 8;

/** Table features: true or absent in what parse() returns; format() takes false (or undefined) as absent. */
export interface ThinPoolFeatures {
  /** skip_block_zeroing: newly provisioned blocks are not zeroed first (faster; old data can show through). */
  skipBlockZeroing?: boolean;
  /** ignore_discard: discards are not processed at all. */
  ignoreDiscard?: boolean;
  /** no_discard_passdown: discards free pool blocks but are not passed down to the data device. */
  noDiscardPassdown?: boolean;
  /** Only on a reload: the kernel's thin-pool refuses read_only at first creation (we do too). */
  readOnly?: boolean;
  /** error_if_no_space: out of data space, I/O fails at once instead of queueing. */
  errorIfNoSpace?: boolean;
}

/**
 * `<metadata dev> <data dev> <block size> <low water mark> [<n> <feature>...]`. There is no `extra` field:
 * the kernel counts the feature words, and a count that does not match the words after it, or a feature
 * word it does not know, is ERR_DM_PARSE.
 */
export interface ThinPoolParams {
  /** The metadata device. */
  metadataDev: DeviceSpec;
  /** The data device; not the metadata device. */
  dataDev: DeviceSpec;
  /** Data block size in sectors: 128..2097152, a multiple of 128. */
  blockSize: Sectors;
  /** Free data blocks at or below which the pool raises an event (a safe integer: the kernel's is 64 bits). */
  lowWaterMark: number;
  /** Its feature args (at most 4 set at once). */
  features?: ThinPoolFeatures;
}

// The kernel's order when it prints the table back.
const FEATURE_WORDS: [keyof ThinPoolFeatures, string][] = [
  ['skipBlockZeroing', 'skip_block_zeroing'],
  ['ignoreDiscard', 'ignore_discard'],
  ['noDiscardPassdown', 'no_discard_passdown'],
  ['readOnly', 'read_only'],
  ['errorIfNoSpace', 'error_if_no_space'],
];
const FEATURE_KEYS = FEATURE_WORDS.map(([k]) => k);
const MAX_FEATURES = 4;  // the kernel's dm_read_arg_group limit

const isBlockSize = (n: unknown): n is number =>
  typeof n === 'number' && Number.isInteger(n) && n >= MIN_BLOCK_SIZE && n <= MAX_BLOCK_SIZE && n % MIN_BLOCK_SIZE === 0;

/** `n` if it is a valid data block size, in sectors. @throws {DevmapperError} ERR_DM_INVALID_BLOCK_SIZE */
export function checkBlockSize(n: unknown): Sectors {
  if (!isBlockSize(n))
    throw dmError('ERR_DM_INVALID_BLOCK_SIZE', `thin-pool block size must be ${MIN_BLOCK_SIZE}..${MAX_BLOCK_SIZE} sectors in steps of ${MIN_BLOCK_SIZE}, got ${show(n)}`);
  return n as Sectors;
}

/** The thin-pool target: a pool of data blocks that thin devices map into, and their metadata. */
export const thinPool: TargetModel<ThinPoolParams> = {
  type: 'thin-pool',
  format: (p) => {
    const o = checkParams<ThinPoolParams>(p, ['metadataDev', 'dataDev', 'blockSize', 'lowWaterMark', 'features'], 'thin-pool');
    const meta = checkDevice(o.metadataDev, 'thin-pool metadata device');
    const data = checkDevice(o.dataDev, 'thin-pool data device');
    if (meta === data) throw dmError('ERR_DM_INVALID_TABLE', 'thin-pool metadata and data devices must differ');
    const blockSize = checkBlockSize(o.blockSize);
    const low = checkField(o.lowWaterMark, 'thin-pool lowWaterMark');
    const fo = o.features === undefined ? {} : checkParams<ThinPoolFeatures>(o.features, FEATURE_KEYS, 'thin-pool features');
    const f: string[] = [];
    for (const [k, word] of FEATURE_WORDS) if (optFlag(fo[k], `thin-pool features.${k}`)) f.push(word);
    if (f.length > MAX_FEATURES) throw dmError('ERR_DM_INVALID_TABLE', `thin-pool takes at most ${MAX_FEATURES} feature args, got ${f.join(', ')}`);
    return join([meta, data, blockSize, low, f.length, ...f]);
  },
  parse: (params) => {
    const T = 'thin-pool';
    const w = words(params, T);
    if (w.length < 4) throw dmError('ERR_DM_PARSE', `thin-pool needs at least 4 words, got ${w.length}`);
    const metadataDev = device(w[0], T, 'metadata device');
    const dataDev = device(w[1], T, 'data device');
    if (metadataDev === dataDev) throw dmError('ERR_DM_PARSE', 'thin-pool: metadata and data devices are the same');
    const blockSize = int(w[2], T, 'block size', MIN_BLOCK_SIZE, MAX_BLOCK_SIZE);
    if (!isBlockSize(blockSize)) throw dmError('ERR_DM_PARSE', `thin-pool: block size ${blockSize} is not a multiple of ${MIN_BLOCK_SIZE}`);
    const lowWaterMark = int(w[3], T, 'low water mark');
    const n = w.length > 4 ? int(w[4], T, 'feature count', 0, MAX_FEATURES) : 0;
    if (w.length > 4 && w.length !== 5 + n) throw dmError('ERR_DM_PARSE', `thin-pool: feature count ${n} does not match the ${w.length - 5} words after it`);
    const features: ThinPoolFeatures = {};
    for (const word of w.slice(5)) {
      const i = FEATURE_WORDS.findIndex(([, fw]) => fw === word);
      if (i < 0) throw dmError('ERR_DM_PARSE', `thin-pool: unknown feature ${show(word)}`);
      const k = FEATURE_WORDS[i][0];
      if (features[k]) throw dmError('ERR_DM_PARSE', `thin-pool: feature ${word} given twice`);
      features[k] = true;
    }
    return { metadataDev, dataDev, blockSize: blockSize as Sectors, lowWaterMark, features };
  },
};

/** A live pool's mode, as its status reports it. */
export type PoolMode = 'rw' | 'ro' | 'out_of_data_space';
const MODES = ['rw', 'ro', 'out_of_data_space'] as const;
const DISCARDS = ['ignore_discard', 'discard_passdown', 'no_discard_passdown'] as const;
const NO_SPACE = ['error_if_no_space', 'queue_if_no_space'] as const;

/**
 * `<transaction id> <used>/<total metadata blocks> <used>/<total data blocks> <held root|-> <mode> <discard>
 * <no space policy> <needs_check|-> <metadata low watermark>`. Older kernels stop earlier (the missing fields
 * are null); words a newer kernel prints after the metadata low watermark are kept in `extra`, which is
 * present only when there are such words. A word the kernel does not print at a known position is
 * ERR_DM_PARSE.
 */
export interface ThinPoolStatusOk {
  /** The pool works (see {@link ThinPoolStatus} for one that failed). */
  state: 'ok';
  /** The pool's metadata transaction id. */
  transactionId: number;
  /** In 4 KiB metadata blocks. */
  metadata: {
    /** Blocks used. */
    used: number;
    /** Blocks in all. */
    total: number;
  };
  /** In data blocks of the pool's block size. */
  data: {
    /** Blocks used. */
    used: number;
    /** Blocks in all. */
    total: number;
  };
  /** The held metadata snapshot's block; null when none is held. */
  heldMetadataRoot: number | null;
  /** rw, ro, or out_of_data_space. */
  mode: PoolMode;
  /** How discards are handled; null on kernels that do not print it. */
  discard: 'ignore_discard' | 'discard_passdown' | 'no_discard_passdown' | null;
  /** What I/O does when data space runs out; null on kernels that do not print it. */
  noSpacePolicy: 'error_if_no_space' | 'queue_if_no_space' | null;
  /** The metadata needs a check (thin_check) before the pool can be written again. */
  needsCheck: boolean;
  /** Absent on kernels before 4.19's format. */
  metadataLowWatermark: number | null;
  /** Words after the metadata low watermark (a newer kernel's), present only when there are some. */
  extra?: string[];
}
/** A thin-pool's status: working ({@link ThinPoolStatusOk}), or failed. */
export type ThinPoolStatus = ThinPoolStatusOk | {
  /** The pool failed (its devices, or its metadata). */
  state: 'Fail' | 'Error';
};

const RATIO = /^(0|[1-9][0-9]*)\/(0|[1-9][0-9]*)$/;

function ratio(word: string | undefined, what: string) {
  const m = RATIO.exec(word ?? '');
  if (!m) throw dmError('ERR_DM_PARSE', `thin-pool status: ${what} ${word === undefined ? 'is missing' : show(word)} is not <used>/<total>`);
  return { used: int(m[1], 'thin-pool status', `used ${what}`), total: int(m[2], 'thin-pool status', `total ${what}`) };
}

/** Reads a thin-pool status line in every format the kernel has used; older ones stop earlier. @throws {DevmapperError} ERR_DM_PARSE */

export function parseThinPoolStatus(params: string): ThinPoolStatus {
  const T = 'thin-pool status';
  const w = words(params, T);
  if (w.length === 1 && (w[0] === 'Fail' || w[0] === 'Error')) return { state: w[0] };
  if (w.length < 5) throw dmError('ERR_DM_PARSE', `thin-pool status needs at least 5 words: ${show(params)}`);
  const s: ThinPoolStatusOk = {
    state: 'ok',
    transactionId: int(w[0], T, 'transaction id'),
    metadata: ratio(w[1], 'metadata'),
    data: ratio(w[2], 'data'),
    heldMetadataRoot: w[3] === '-' ? null : int(w[3], T, 'held metadata root'),
    mode: oneOf(w[4], MODES, T, 'mode'),
    discard: w.length > 5 ? oneOf(w[5], DISCARDS, T, 'discard mode') : null,
    noSpacePolicy: w.length > 6 ? oneOf(w[6], NO_SPACE, T, 'no-space policy') : null,
    needsCheck: w.length > 7 ? oneOf(w[7], ['needs_check', '-'] as const, T, 'needs_check') === 'needs_check' : false,
    metadataLowWatermark: w.length > 8 ? int(w[8], T, 'metadata low watermark') : null,
  };
  const extra = extraWords(w, 9, T);
  if (extra) s.extra = extra;
  return s;
}
