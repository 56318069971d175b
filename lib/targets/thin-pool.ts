// The thin-pool target: table params and status line.
import { dmError } from '../core/errors';
import { Sectors, sectors } from '../core/units';
import { checkInteger } from '../core/validate';
import { DeviceSpec, TargetModel, checkDevice, int, sectorCount, words } from './model';

export const MIN_BLOCK_SIZE = 128;      // sectors, 64 KiB
export const MAX_BLOCK_SIZE = 2097152;  // sectors, 1 GiB
/** The kernel ignores metadata beyond this (DM_SM_METADATA_MAX_SECTORS: 255 * 2^14 blocks of 4 KiB). */
export const MAX_METADATA_SECTORS = 255 * (1 << 14) * 8;

export interface ThinPoolFeatures {
  skipBlockZeroing?: boolean;
  ignoreDiscard?: boolean;
  noDiscardPassdown?: boolean;
  /** Only on a reload: the kernel's thin-pool refuses read_only at first creation (we do too). */
  readOnly?: boolean;
  errorIfNoSpace?: boolean;
}

export interface ThinPoolParams {
  metadataDev: DeviceSpec;
  dataDev: DeviceSpec;
  /** Data block size in sectors: 128..2097152, a multiple of 128. */
  blockSize: Sectors;
  /** Free data blocks at or below which the pool raises an event. */
  lowWaterMark: number;
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

export function checkBlockSize(n: unknown): Sectors {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < MIN_BLOCK_SIZE || n > MAX_BLOCK_SIZE || n % MIN_BLOCK_SIZE !== 0)
    throw dmError('ERR_DM_INVALID_BLOCK_SIZE', `thin-pool block size must be ${MIN_BLOCK_SIZE}..${MAX_BLOCK_SIZE} sectors in steps of ${MIN_BLOCK_SIZE}, got ${String(n)}`);
  return n as Sectors;
}

export const thinPool: TargetModel<ThinPoolParams> = {
  type: 'thin-pool',
  format: (p) => {
    const meta = checkDevice(p.metadataDev, 'metadata device');
    const data = checkDevice(p.dataDev, 'data device');
    if (meta === data) throw dmError('ERR_DM_INVALID_TABLE', 'metadata and data devices must differ');
    const f = FEATURE_WORDS.filter(([k]) => p.features?.[k]).map(([, w]) => w);
    if (f.length > 4) throw dmError('ERR_DM_INVALID_TABLE', 'thin-pool takes at most 4 feature args');
    return [meta, data, checkBlockSize(p.blockSize), checkInteger(p.lowWaterMark, 'lowWaterMark'), f.length, ...f].join(' ');
  },
  parse: (params) => {
    const w = words(params, 'thin-pool', 4);
    const n = w.length > 4 ? int(w[4], 'thin-pool', 'feature count') : 0;
    const given = new Set(w.slice(5, 5 + n));
    const features: ThinPoolFeatures = {};
    for (const [k, word] of FEATURE_WORDS) if (given.has(word)) features[k] = true;
    return {
      metadataDev: w[0], dataDev: w[1],
      blockSize: sectorCount(w[2], 'thin-pool', 'block size'),
      lowWaterMark: int(w[3], 'thin-pool', 'low water mark'),
      features,
    };
  },
};

export type PoolMode = 'rw' | 'ro' | 'out_of_data_space';

export interface ThinPoolStatusOk {
  state: 'ok';
  transactionId: number;
  /** In 4 KiB metadata blocks. */
  metadata: { used: number; total: number };
  /** In data blocks of the pool's block size. */
  data: { used: number; total: number };
  heldMetadataRoot: number | null;
  mode: PoolMode;
  discard: 'ignore_discard' | 'discard_passdown' | 'no_discard_passdown' | null;
  noSpacePolicy: 'error_if_no_space' | 'queue_if_no_space' | null;
  needsCheck: boolean;
  /** Absent on kernels before 4.19's format. */
  metadataLowWatermark: number | null;
}
export type ThinPoolStatus = ThinPoolStatusOk | { state: 'Fail' | 'Error' };

function ratio(word: string | undefined, what: string) {
  const m = /^(\d+)\/(\d+)$/.exec(word ?? '');
  if (!m) throw dmError('ERR_DM_PARSE', `thin-pool status: ${what} '${word}'`);
  return { used: Number(m[1]), total: Number(m[2]) };
}

/** Reads every format the kernel has used; older ones stop earlier. */
export function parseThinPoolStatus(params: string): ThinPoolStatus {
  const w = params.trim().split(/\s+/).filter(Boolean);
  if (w[0] === 'Fail' || w[0] === 'Error') return { state: w[0] };
  if (w.length < 5) throw dmError('ERR_DM_PARSE', `thin-pool status '${params}'`);
  const mode = w[4];
  if (mode !== 'rw' && mode !== 'ro' && mode !== 'out_of_data_space') throw dmError('ERR_DM_PARSE', `thin-pool status mode '${mode}'`);
  return {
    state: 'ok',
    transactionId: int(w[0], 'thin-pool status', 'transaction id'),
    metadata: ratio(w[1], 'metadata'),
    data: ratio(w[2], 'data'),
    heldMetadataRoot: w[3] === '-' ? null : int(w[3], 'thin-pool status', 'held root'),
    mode,
    discard: (w[5] as ThinPoolStatusOk['discard']) ?? null,
    noSpacePolicy: (w[6] as ThinPoolStatusOk['noSpacePolicy']) ?? null,
    needsCheck: w[7] === 'needs_check',
    metadataLowWatermark: w[8] !== undefined && w[8] !== '-' ? int(w[8], 'thin-pool status', 'metadata low watermark') : null,
  };
}
