// The thin target, and the thin status line.
import { dmError } from '../core/errors';
import { Sectors } from '../core/units';
import { MAX_THIN_ID, checkThinId, show } from '../core/validate';
import { DeviceSpec, TargetModel, checkDevice, checkExtra, checkParams, device, extraWords, int, join, sectorCount, words } from './model';

/** `<pool dev> <dev id> [<external origin dev>]`. */
export interface ThinParams {
  /** The thin-pool device. */
  pool: DeviceSpec;
  /** 0..2^24-1. */
  deviceId: number;
  /** Read-only origin for blocks the thin device has not written yet. */
  externalOrigin?: DeviceSpec;
  /**
   * Words after the external origin, which today's kernels neither take nor print: parse() keeps any a newer
   * kernel prints (the field is present only when there are such words) and format() writes them back (they
   * need `externalOrigin`: the third word is always read as the origin).
   */
  extra?: string[];
}

/** The thin target: a thin device of a pool (the pool must already have the id, see ThinPool). */
export const thin: TargetModel<ThinParams> = {
  type: 'thin',
  format: (p) => {
    const o = checkParams<ThinParams>(p, ['pool', 'deviceId', 'externalOrigin', 'extra'], 'thin');
    const pool = checkDevice(o.pool, 'thin pool');
    const id = checkThinId(o.deviceId);
    const origin = o.externalOrigin === undefined ? undefined : checkDevice(o.externalOrigin, 'thin external origin');
    if (origin === pool) throw dmError('ERR_DM_INVALID_TABLE', 'thin: the external origin cannot be the pool');
    const extra = checkExtra(o.extra, 'thin');
    if (extra.length && origin === undefined) throw dmError('ERR_DM_INVALID_TABLE', 'thin: extra words need an external origin before them');
    return join([pool, id, ...(origin === undefined ? [] : [origin]), ...extra]);
  },
  parse: (params) => {
    const w = words(params, 'thin');
    if (w.length < 2) throw dmError('ERR_DM_PARSE', `thin needs at least 2 words, got ${show(params)}`);
    const p: ThinParams = { pool: device(w[0], 'thin', 'pool'), deviceId: int(w[1], 'thin', 'device id', 0, MAX_THIN_ID) };
    if (w.length > 2) p.externalOrigin = device(w[2], 'thin', 'external origin');
    const extra = extraWords(w, 3, 'thin');
    if (extra) p.extra = extra;
    return p;
  },
};

/**
 * `<mapped sectors> <highest mapped sector|->`, or `-` (no thin device: the pool is not active), `Fail`,
 * `Error`. `extra` holds words after the highest mapped sector that a newer (or vendor) kernel prints; it is
 * present only when there are such words.
 */
export type ThinStatus =
  | {
    /** The device maps. */
    state: 'ok';
    /** Sectors it has mapped. */
    mappedSectors: Sectors;
    /** Its last mapped sector; null when it maps none. */
    highestMappedSector: Sectors | null;
    /** Words a newer kernel prints after these. */
    extra?: string[];
  }
  | {
    /** The device failed, errored, or its pool is not active. */
    state: 'Fail' | 'Error' | 'inactive';
  };

/** Reads a thin target's status line. @throws {DevmapperError} ERR_DM_PARSE */
export function parseThinStatus(params: string): ThinStatus {

  const w = words(params, 'thin status');
  if (w.length === 1 && (w[0] === 'Fail' || w[0] === 'Error')) return { state: w[0] };
  if (w.length === 1 && w[0] === '-') return { state: 'inactive' };
  if (w.length < 2) throw dmError('ERR_DM_PARSE', `thin status ${show(params)}`);
  const s: ThinStatus = {
    state: 'ok',
    mappedSectors: sectorCount(w[0], 'thin status', 'mapped sectors'),
    highestMappedSector: w[1] === '-' ? null : sectorCount(w[1], 'thin status', 'highest mapped sector'),
  };
  const extra = extraWords(w, 2, 'thin status');
  if (extra) s.extra = extra;
  return s;
}
