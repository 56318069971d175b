import { dmError } from '../core/errors';
import { Sectors } from '../core/units';
import {
  DeviceSpec, TargetModel, U32_MAX, checkDevice, checkExtra, checkField, checkParams, checkSectors, device, extraWords, int,
  join, sectorCount, words,
} from './model';

/** A device, its start sector and a delay in milliseconds (0..2^32-1, the kernel's unsigned int). */
export interface DelayPath {
  /** The device. */
  device: DeviceSpec;
  /** Where on it the mapping starts, in sectors. */
  offset: Sectors;
  /** The delay, in milliseconds. */
  delayMs: number;
}

/**
 * `<read path> [<write path> [<flush path>]]`: reads (and, without `write`, writes and flushes) go to `read`
 * after its delay; writes to `write`; flushes to `flush` (which needs `write`), else to `write`.
 */
export interface DelayParams {
  /** Where reads go (and writes and flushes, without `write`). */
  read: DelayPath;
  /** Where writes go (and flushes, without `flush`). */
  write?: DelayPath;
  /** Where flushes go; needs `write`. */
  flush?: DelayPath;
  /**
   * Words after the flush path, which today's kernels neither take nor print: parse() keeps any a newer
   * kernel prints (the field is present only when there are such words) and format() writes them back (after
   * all three paths: the kernel reads 3, 6 or 9 words).
   */
  extra?: string[];
}

function fmt(d: unknown, what: string): (string | number)[] {
  const o = checkParams<DelayPath>(d, ['device', 'offset', 'delayMs'], `delay ${what} path`);
  return [checkDevice(o.device, `delay ${what} device`), checkSectors(o.offset, `delay ${what} offset`),
    checkField(o.delayMs, `delay ${what} delayMs`, 0, U32_MAX)];
}

const parsePath = (w: string[], i: number, what: string): DelayPath => ({
  device: device(w[i], 'delay', `${what} device`),
  offset: sectorCount(w[i + 1], 'delay', `${what} offset`),
  delayMs: int(w[i + 2], 'delay', `${what} delay`, 0, U32_MAX),
});

/** The delay target: I/O passed on to a device after a delay, for tests. */
export const delay: TargetModel<DelayParams> = {

  type: 'delay',
  format: (p) => {
    const o = checkParams<DelayParams>(p, ['read', 'write', 'flush', 'extra'], 'delay');
    const read = o.read, write = o.write, flush = o.flush;
    const out = fmt(read, 'read');
    if (write !== undefined) out.push(...fmt(write, 'write'));
    if (flush !== undefined) {
      if (write === undefined) throw dmError('ERR_DM_INVALID_TABLE', 'delay: a flush path needs a write path (the kernel reads 3, 6 or 9 words)');
      out.push(...fmt(flush, 'flush'));
    }
    const extra = checkExtra(o.extra, 'delay');
    if (extra.length && flush === undefined) throw dmError('ERR_DM_INVALID_TABLE', 'delay: extra words go after all three paths (read, write, flush)');
    return join([...out, ...extra]);
  },
  parse: (params) => {
    const w = words(params, 'delay');
    if (w.length !== 3 && w.length !== 6 && w.length < 9)
      throw dmError('ERR_DM_PARSE', `delay takes 3, 6 or 9 words, got ${w.length}`);
    const p: DelayParams = { read: parsePath(w, 0, 'read') };
    if (w.length >= 6) p.write = parsePath(w, 3, 'write');
    if (w.length >= 9) p.flush = parsePath(w, 6, 'flush');
    const extra = extraWords(w, 9, 'delay');
    if (extra) p.extra = extra;
    return p;
  },
};
