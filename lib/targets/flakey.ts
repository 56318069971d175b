import { dmError, DevmapperErrorCode } from '../core/errors';
import { Sectors } from '../core/units';
import { show } from '../core/validate';
import {
  DeviceSpec, TargetModel, U32_MAX, checkDevice, checkField, checkParams, checkSectors, device, int, join, oneOf, optFlag,
  sectorCount, words,
} from './model';

/** The kernel's scale for random_read_corrupt / random_write_corrupt: a probability in billionths. */
export const FLAKEY_PROBABILITY_BASE = 1_000_000_000;

/** `corrupt_bio_byte <nth byte> <r|w> <value> <flags>`: while down, set one byte of matching bios. */
export interface FlakeyCorruptBioByte {
  /** 1-based byte in the bio: 1..2^32-1. */
  nthByte: number;
  /** Corrupt reads (as they complete) or writes (before they are sent). */
  direction: 'r' | 'w';
  /** The byte written: 0..255. */
  value: number;
  /** Only bios with all these REQ_* flags: 0..2^32-1 (0: every bio). */
  flags: number;
}

/**
 * `<device> <offset> <up> <down> [<n> <feature>...]`: up for upInterval seconds, then down for downInterval
 * seconds, repeating (intervals 0..2^32-1, their sum 1..2^32-1). While down, with no feature, reads and
 * writes fail (kernels from 6.5 print that default back as `error_reads error_writes`).
 *
 * Flags are true or absent in what parse() returns; format() takes false as absent. The table has no
 * `extra` words: the kernel counts every feature word, and a count that does not match the words after it,
 * or a feature word it does not know, is ERR_DM_PARSE.
 */
export interface FlakeyParams {
  /** The device mapped onto. */
  device: DeviceSpec;
  /** Where on it the mapping starts, in sectors. */
  offset: Sectors;
  /** Seconds up (I/O passes). */
  upInterval: number;
  /** Seconds down (the features apply). */
  downInterval: number;
  /** While down, fail reads (kernel 6.5+). */
  errorReads?: boolean;
  /** While down, drop writes silently (excludes errorWrites). */
  dropWrites?: boolean;
  /** While down, fail writes (excludes dropWrites). */
  errorWrites?: boolean;
  /** While down, set one byte of matching bios. */
  corruptBioByte?: FlakeyCorruptBioByte;
  /** While down, corrupt a random byte of this many reads in FLAKEY_PROBABILITY_BASE (kernel 6.5). */
  randomReadCorrupt?: number;
  /** While down, corrupt a random byte of this many writes in FLAKEY_PROBABILITY_BASE (kernel 6.5). */
  randomWriteCorrupt?: number;
}

const KEYS = ['device', 'offset', 'upInterval', 'downInterval', 'errorReads', 'dropWrites', 'errorWrites', 'corruptBioByte',
  'randomReadCorrupt', 'randomWriteCorrupt'] as const;

// The combinations the kernel's constructor refuses.
function checkConflicts(p: FlakeyParams, code: DevmapperErrorCode): void {
  const corruptsWrites = p.corruptBioByte?.direction === 'w' || !!p.randomWriteCorrupt;
  const corruptsReads = p.corruptBioByte?.direction === 'r' || !!p.randomReadCorrupt;
  let why: string | undefined;
  if (p.dropWrites && p.errorWrites) why = 'drop_writes and error_writes exclude each other';
  else if (p.dropWrites && corruptsWrites) why = 'drop_writes excludes corrupting writes (corrupt_bio_byte w, random_write_corrupt)';
  else if (p.errorWrites && corruptsWrites) why = 'error_writes excludes corrupting writes (corrupt_bio_byte w, random_write_corrupt)';
  else if (p.errorReads && corruptsReads) why = 'error_reads excludes corrupting reads (corrupt_bio_byte r, random_read_corrupt)';
  if (why) throw dmError(code, `flakey: ${why}`);
  const up = p.upInterval, down = p.downInterval;
  if (up + down === 0) throw dmError(code, 'flakey: up + down interval is zero');
  if (up + down > U32_MAX) throw dmError(code, `flakey: up + down interval ${up + down} is over ${U32_MAX}`);
}

function checkCorrupt(v: unknown): FlakeyCorruptBioByte | undefined {
  if (v === undefined) return undefined;
  const c = checkParams<FlakeyCorruptBioByte>(v, ['nthByte', 'direction', 'value', 'flags'], 'flakey corruptBioByte');
  const nthByte = checkField(c.nthByte, 'flakey corruptBioByte.nthByte', 1, U32_MAX);
  const direction: unknown = c.direction;
  if (direction !== 'r' && direction !== 'w') throw dmError('ERR_DM_INVALID_TABLE', `flakey corruptBioByte.direction must be 'r' or 'w', got ${show(direction)}`);
  return { nthByte, direction, value: checkField(c.value, 'flakey corruptBioByte.value', 0, 255), flags: checkField(c.flags, 'flakey corruptBioByte.flags', 0, U32_MAX) };
}

const optProbability = (v: unknown, what: string): number | undefined =>
  (v === undefined ? undefined : checkField(v, what, 0, FLAKEY_PROBABILITY_BASE));

/** The flakey target: a device that fails, drops or corrupts I/O on a timer, for tests. */
export const flakey: TargetModel<FlakeyParams> = {

  type: 'flakey',
  format: (p) => {
    const o = checkParams<FlakeyParams>(p, KEYS, 'flakey');
    const f: FlakeyParams = {
      device: checkDevice(o.device, 'flakey device'),
      offset: checkSectors(o.offset, 'flakey offset'),
      upInterval: checkField(o.upInterval, 'flakey upInterval', 0, U32_MAX),
      downInterval: checkField(o.downInterval, 'flakey downInterval', 0, U32_MAX),
      errorReads: optFlag(o.errorReads, 'flakey errorReads'),
      dropWrites: optFlag(o.dropWrites, 'flakey dropWrites'),
      errorWrites: optFlag(o.errorWrites, 'flakey errorWrites'),
      corruptBioByte: checkCorrupt(o.corruptBioByte),
      randomReadCorrupt: optProbability(o.randomReadCorrupt, 'flakey randomReadCorrupt'),
      randomWriteCorrupt: optProbability(o.randomWriteCorrupt, 'flakey randomWriteCorrupt'),
    };
    checkConflicts(f, 'ERR_DM_INVALID_TABLE');
    // The kernel's order when it prints the table back.
    const features: (string | number)[] = [];
    if (f.errorReads) features.push('error_reads');
    if (f.dropWrites) features.push('drop_writes');
    if (f.errorWrites) features.push('error_writes');
    const c = f.corruptBioByte;
    if (c) features.push('corrupt_bio_byte', c.nthByte, c.direction, c.value, c.flags);
    if (f.randomReadCorrupt !== undefined) features.push('random_read_corrupt', f.randomReadCorrupt);
    if (f.randomWriteCorrupt !== undefined) features.push('random_write_corrupt', f.randomWriteCorrupt);
    return join([f.device, f.offset, f.upInterval, f.downInterval, features.length, ...features]);
  },
  parse: (params) => {
    const T = 'flakey';
    const w = words(params, T);
    if (w.length < 4) throw dmError('ERR_DM_PARSE', `flakey needs at least 4 words, got ${w.length}`);
    const p: FlakeyParams = {
      device: device(w[0], T, 'device'), offset: sectorCount(w[1], T, 'offset'),
      upInterval: int(w[2], T, 'up interval', 0, U32_MAX), downInterval: int(w[3], T, 'down interval', 0, U32_MAX),
    };
    // Old kernels printed no feature count.
    const n = w.length > 4 ? int(w[4], T, 'feature count', 0, U32_MAX) : 0;
    const end = 5 + n;
    if (w.length > 4 && w.length !== end) throw dmError('ERR_DM_PARSE', `flakey: feature count ${n} does not match the ${w.length - 5} words after it`);
    const seen = new Set<string>();
    for (let i = 5; i < end;) {
      const f = oneOf(w[i++], ['error_reads', 'drop_writes', 'error_writes', 'corrupt_bio_byte', 'random_read_corrupt', 'random_write_corrupt'] as const, T, 'feature');
      if (seen.has(f)) throw dmError('ERR_DM_PARSE', `flakey: feature ${f} given twice`);
      seen.add(f);
      const args = f === 'corrupt_bio_byte' ? 4 : f.startsWith('random_') ? 1 : 0;
      if (i + args > end) throw dmError('ERR_DM_PARSE', `flakey: feature ${f} needs ${args} args inside the feature count`);
      if (f === 'error_reads') p.errorReads = true;
      else if (f === 'drop_writes') p.dropWrites = true;
      else if (f === 'error_writes') p.errorWrites = true;
      else if (f === 'corrupt_bio_byte') {
        p.corruptBioByte = {
          nthByte: int(w[i], T, 'corrupt_bio_byte byte', 1, U32_MAX), direction: oneOf(w[i + 1], ['r', 'w'] as const, T, 'corrupt_bio_byte direction'),
          value: int(w[i + 2], T, 'corrupt_bio_byte value', 0, 255), flags: int(w[i + 3], T, 'corrupt_bio_byte flags', 0, U32_MAX),
        };
      } else if (f === 'random_read_corrupt') p.randomReadCorrupt = int(w[i], T, f, 0, FLAKEY_PROBABILITY_BASE);
      else p.randomWriteCorrupt = int(w[i], T, f, 0, FLAKEY_PROBABILITY_BASE);
      i += args;
    }
    checkConflicts(p, 'ERR_DM_PARSE');
    return p;
  },
};
