import { dmError } from '../core/errors';
import { Sectors } from '../core/units';
import { show } from '../core/validate';
import {
  DeviceSpec, TargetModel, U32_MAX, checkDevice, checkExtra, checkParams, checkSectors, device, extraWords, int, join,
  needWords, sectorCount, words,
} from './model';

/** `<#stripes> <chunk size> (<device> <offset>)...`. */
export interface StripedParams {
  /**
   * Sectors per chunk. format() takes a power of two 8..2^31 (what every kernel takes); parse() reads any
   * 1..2^32-1, as kernels since 3.6 take and print.
   */
  chunkSize: Sectors;
  /** The devices striped across, in order; at least one. */
  stripes: {
    /** The device. */
    device: DeviceSpec;
    /** Where on it the stripe starts, in sectors. */
    offset: Sectors;
  }[];
  /**
   * Words after the last stripe, which today's kernels neither take nor print: parse() keeps any a newer
   * kernel prints (the field is present only when there are such words) and format() writes them back.
   */
  extra?: string[];
}

const MAX_CHUNK = 2 ** 31;

/** The striped target: chunks spread round-robin over several devices. */
export const striped: TargetModel<StripedParams> = {

  type: 'striped',
  format: (p) => {
    const o = checkParams<StripedParams>(p, ['chunkSize', 'stripes', 'extra'], 'striped');
    const chunk: unknown = o.chunkSize;
    if (typeof chunk !== 'number' || !Number.isInteger(chunk) || chunk < 8 || chunk > MAX_CHUNK || (chunk & (chunk - 1)) !== 0)
      throw dmError('ERR_DM_INVALID_TABLE', `striped chunk size must be a power of two 8..${MAX_CHUNK} sectors, got ${show(chunk)}`);
    const stripes: unknown = o.stripes;
    if (!Array.isArray(stripes) || stripes.length === 0)
      throw dmError('ERR_DM_INVALID_TABLE', `striped needs a non-empty array of stripes, got ${show(stripes)}`);
    const out: (string | number)[] = [stripes.length, chunk];
    for (let i = 0; i < stripes.length; i++) {
      const s = checkParams<StripedParams['stripes'][number]>(stripes[i], ['device', 'offset'], `stripe ${i}`);
      out.push(checkDevice(s.device, `stripe ${i} device`), checkSectors(s.offset, `stripe ${i} offset`));
    }
    return join([...out, ...checkExtra(o.extra, 'striped')]);
  },
  parse: (params) => {
    const w = words(params, 'striped');
    needWords(w, 4, 'striped');
    const n = int(w[0], 'striped', 'stripe count', 1, U32_MAX);
    const chunkSize = int(w[1], 'striped', 'chunk size', 1, U32_MAX) as Sectors;
    if (w.length < 2 + 2 * n) throw dmError('ERR_DM_PARSE', `striped: ${n} stripes need ${2 + 2 * n} words, got ${w.length}`);
    const stripes: StripedParams['stripes'] = [];
    for (let i = 0; i < n; i++)
      stripes.push({ device: device(w[2 + 2 * i], 'striped', `stripe ${i} device`), offset: sectorCount(w[3 + 2 * i], 'striped', `stripe ${i} offset`) });
    const p: StripedParams = { chunkSize, stripes };
    const extra = extraWords(w, 2 + 2 * n, 'striped');
    if (extra) p.extra = extra;
    return p;
  },
};
