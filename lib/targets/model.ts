// A target type as a model: format() gives the params text the kernel takes, parse() reads the text the
// kernel gives back (STATUS_TABLE). parse(format(x)) equals x. This is the only place each format lives.
import { dmError } from '../core/errors';
import type { Target } from '../dm/types';
import { Sectors, sectors } from '../core/units';

export interface TargetModel<P> {
  readonly type: string;
  format(p: P): string;
  parse(params: string): P;
}

/** A table line for a model. */
export function line<P>(model: TargetModel<P>, start: number, length: number, p: P): Target {
  return { start: sectors(start), length: sectors(length), type: model.type, params: model.format(p) };
}

/** A block device in a table: 'major:minor' or an absolute path (the kernel reports major:minor back). */
export type DeviceSpec = string;

export function checkDevice(d: unknown, what: string): DeviceSpec {
  if (typeof d !== 'string' || !(/^\d+:\d+$/.test(d) || /^\/\S+$/.test(d)))
    throw dmError('ERR_DM_INVALID_TABLE', `${what} must be 'major:minor' or an absolute path without spaces, got '${String(d)}'`);
  return d;
}

/** Splits params into words; the kernel separates them with single spaces and may end with one. */
export function words(params: string, type: string, min: number): string[] {
  const w = params.trim().split(/\s+/).filter(Boolean);
  if (w.length < min) throw dmError('ERR_DM_PARSE', `${type} params need at least ${min} words: '${params}'`);
  return w;
}

export function int(word: string | undefined, type: string, what: string): number {
  const n = Number(word);
  if (word === undefined || !/^\d+$/.test(word) || !Number.isSafeInteger(n)) throw dmError('ERR_DM_PARSE', `${type}: ${what} '${word}' is not a number`);
  return n;
}

export const sectorCount = (word: string | undefined, type: string, what: string): Sectors => sectors(int(word, type, what));
