// A target type as a model: format() gives the params text the kernel takes, parse() reads the text the
// kernel gives back (STATUS_TABLE). parse(format(x)) equals x. This is the only place each format lives.
//
// Both directions are strict. format() checks every field of its params (types, ranges, the kernel's field
// widths, unknown keys) before it makes any text, and throws a DevmapperError, never a TypeError, never
// clamping or cutting a value. parse() takes only what the kernel can print: each word is checked (numbers
// in canonical decimal that fit a JS number exactly, device specs, the known words of each position), and
// anything else is ERR_DM_PARSE, never a rounded number or a silently dropped word.
import { dmError, DevmapperErrorCode } from '../core/errors';
import type { Target } from '../dm/types';
import { Sectors } from '../core/units';
import { checkInteger, checkOptions, optBoolean, show, MAX_MAJOR, MAX_MINOR } from '../core/validate';

/** A target type's table format, both ways: parse(format(p)) equals p. */
export interface TargetModel<P> {
  /** The kernel's name of the target type. */
  readonly type: string;
  /** The params text for `p`, every field checked first. @throws {DevmapperError} ERR_DM_INVALID_TABLE or ERR_DM_INVALID_ARGUMENT */
  format(p: P): string;
  /** Reads a params text as the kernel prints it back. @throws {DevmapperError} ERR_DM_PARSE */
  parse(params: string): P;
}

/** The largest value of a C unsigned int, as the kernel parses many target args (kstrtouint, dm_read_arg). */
export const U32_MAX = 0xffffffff;

/** A table line for a model: `start` and `length` in sectors, `p` formatted by the model. */
export function line<P>(model: TargetModel<P>, start: number, length: number, p: P): Target {
  const s = checkInteger(start, 'target start', 0, Number.MAX_SAFE_INTEGER, 'ERR_DM_INVALID_SIZE') as Sectors;
  const l = checkInteger(length, 'target length', 0, Number.MAX_SAFE_INTEGER, 'ERR_DM_INVALID_SIZE') as Sectors;
  return { start: s, length: l, type: model.type, params: model.format(p) };
}

/**
 * A block device in a table: 'major:minor' (decimal, no leading zeros, major < 2^12 and minor < 2^20 as the
 * kernel's dev_t allows) or an absolute path without whitespace or control characters (the kernel always
 * reports major:minor back).
 */
export type DeviceSpec = string;

const DEV_NUMBERS = /^(0|[1-9][0-9]{0,6}):(0|[1-9][0-9]{0,6})$/;
const PATH_MAX = 4096;  // bytes, with the NUL
// Whitespace (ASCII and Unicode: the kernel splits params on ASCII spaces, and a path with any space is
// never what was meant), C0 controls, DEL, C1 controls, and UTF-16 halves without their pair (they would be
// sent as U+FFFD, another name than the one given).
// eslint-disable-next-line no-control-regex
const NOT_IN_WORD = /[\s\u0000-\u001f\u007f-\u009f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** One word of a table or status line: non-empty, no whitespace, no control character, well-formed text. */
export function isWord(s: string): boolean {
  return s.length > 0 && !NOT_IN_WORD.test(s);
}

export function isDevice(s: string): boolean {
  const m = DEV_NUMBERS.exec(s);
  if (m) return Number(m[1]) <= MAX_MAJOR && Number(m[2]) <= MAX_MINOR;
  return s.length >= 2 && s[0] === '/' && isWord(s) && (s.length * 3 < PATH_MAX || Buffer.byteLength(s, 'utf8') < PATH_MAX);
}

/** `d` if it is a {@link DeviceSpec}; `what` names it in the error. @throws {DevmapperError} ERR_DM_INVALID_TABLE */
export function checkDevice(d: unknown, what: string): DeviceSpec {

  if (typeof d !== 'string' || !isDevice(d))
    throw dmError('ERR_DM_INVALID_TABLE', `${what} must be 'major:minor' (major < 4096, minor < 1048576, no leading zeros) or an absolute path without spaces or control characters, got ${show(d)}`);
  return d;
}

/**
 * The params object of a model: a plain object (a literal or null-prototype object: not null, an array, a
 * boxed primitive, a Date, a Map...) whose keys are all known. Otherwise ERR_DM_INVALID_ARGUMENT; an
 * unknown key is refused by name (checkOptions).
 */
export function checkParams<T extends object>(p: unknown, known: readonly (keyof T & string)[], what: string): T {
  if (p === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} params must be an object, got undefined`);
  return checkOptions<T>(p, known, `${what} params`);
}

/** An integer field of a table: min..max, else ERR_DM_INVALID_TABLE (or the code given). */
export const checkField = (v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER,
  code: DevmapperErrorCode = 'ERR_DM_INVALID_TABLE'): number => checkInteger(v, what, min, max, code);

/** A sector count or offset in a table: a safe integer >= 0 (the kernel's sector_t is 64 bits). */
export const checkSectors = (v: unknown, what: string): Sectors => checkField(v, what) as Sectors;

/** An optional boolean flag: undefined, true or false (false means the same as absent). */
export const optFlag = (v: unknown, what: string): boolean => optBoolean(v, what, 'ERR_DM_INVALID_TABLE') ?? false;

/**
 * The optional `extra` words of a model's params: undefined, or a non-empty array of words (what parse()
 * found after the last field it knows, written back after the known fields).
 */
export function checkExtra(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.length === 0) throw dmError('ERR_DM_INVALID_TABLE', `${what} extra must be a non-empty array of words, got ${show(v)}`);
  const out: string[] = [];
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== 'string' || !isWord(x)) throw dmError('ERR_DM_INVALID_TABLE', `${what} extra[${i}] must be a word without spaces or control characters, got ${show(x)}`);
    out.push(x);
  }
  return out;
}

/** Joins the words of a params line. */
export const join = (w: readonly (string | number)[]): string => w.join(' ');

/**
 * Splits params into words. The kernel separates words with single spaces and may end a line with one; any
 * other whitespace or control character is left inside a word, where that word's own check refuses it.
 */
export function words(params: unknown, type: string): string[] {
  if (typeof params !== 'string') throw dmError('ERR_DM_PARSE', `${type}: params must be a string, got ${show(params)}`);
  return params.split(' ').filter((w) => w !== '');
}

export function needWords(w: readonly string[], min: number, type: string): void {
  if (w.length < min) throw dmError('ERR_DM_PARSE', `${type} needs at least ${min} words, got ${w.length}: ${show(w.join(' '))}`);
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/**
 * A decimal the kernel printed (%u, %llu: no sign, no leading zeros) as a number min..max. A value a JS number
 * cannot hold exactly (above 2^53 - 1) is an error, never rounded.
 */
export function int(word: string | undefined, type: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (word === undefined) throw dmError('ERR_DM_PARSE', `${type}: ${what} is missing`);
  if (!DECIMAL.test(word)) throw dmError('ERR_DM_PARSE', `${type}: ${what} ${show(word)} is not a decimal integer`);
  const n = Number(word);
  if (!Number.isSafeInteger(n)) throw dmError('ERR_DM_PARSE', `${type}: ${what} ${show(word)} does not fit exactly in a JS number`);
  if (n < min || n > max) throw dmError('ERR_DM_PARSE', `${type}: ${what} ${word} is outside ${min}..${max}`);
  return n;
}

export const sectorCount = (word: string | undefined, type: string, what: string): Sectors => int(word, type, what) as Sectors;

export function device(word: string | undefined, type: string, what: string): DeviceSpec {
  if (word === undefined) throw dmError('ERR_DM_PARSE', `${type}: ${what} is missing`);
  if (!isDevice(word)) throw dmError('ERR_DM_PARSE', `${type}: ${what} ${show(word)} is not 'major:minor' or an absolute path`);
  return word;
}

/** One of the words the kernel prints at a position. */
export function oneOf<W extends string>(word: string | undefined, known: readonly W[], type: string, what: string): W {
  if (word === undefined || !(known as readonly string[]).includes(word))
    throw dmError('ERR_DM_PARSE', `${type}: ${what} ${word === undefined ? 'is missing' : show(word)} (known: ${known.join(', ')})`);
  return word as W;
}

/** The words after the last one a model knows (a newer kernel's additions), each checked; undefined if none. */
export function extraWords(w: readonly string[], from: number, type: string): string[] | undefined {
  if (w.length <= from) return undefined;
  const extra = w.slice(from);
  for (const x of extra) if (!isWord(x)) throw dmError('ERR_DM_PARSE', `${type}: ${show(x)} is not a word`);
  return extra;
}
