// What every verb of the devmapper command shares: argument parsing on util.parseArgs, output, the exit codes
// (0 ok, 1 a failed operation, 2 a usage error) and the shape of errors, plain and --json.
import { parseArgs, ParseArgsConfig } from 'node:util';
import { DevmapperError } from '../core/errors';

/** A mistake in the command line: exit status 2, the message and a pointer to --help on stderr. */
export class UsageError extends Error {
  constructor(message: string, readonly verb?: string) { super(message); this.name = 'UsageError'; }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** stdin, read whole (a table piped to create or load). */
  readStdin(): string;
}

export interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

/** parseArgs, strict, with its errors (unknown option, missing value) turned into usage errors. */
export function parse(verb: string, args: string[], options: Options): Parsed {
  try {
    const r = parseArgs({ args, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) throw new UsageError((e as Error).message, verb);
    throw e;
  }
}

export function str(p: Parsed, key: string): string | undefined {
  const v = p.values[key];
  return typeof v === 'string' ? v : undefined;
}
export const flag = (p: Parsed, key: string): boolean => p.values[key] === true;

/** Positionals count within [min, max]; else a usage error naming the verb. */
export function arity(verb: string, p: Parsed, min: number, max: number, what: string): void {
  const n = p.positionals.length;
  if (n < min) throw new UsageError(`${verb}: missing ${what}`, verb);
  if (n > max) throw new UsageError(`${verb}: unexpected argument ${JSON.stringify(p.positionals[max])}`, verb);
}

/** A whole number argument, or a usage error. */
export function integerArg(verb: string, text: string, what: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${verb}: ${what} must be a whole number, got ${JSON.stringify(text)}`, verb);
  return Number(text);
}

/** The JSON form of a failure: every field a DevmapperError carries, code and message first. */
export function errorJson(e: unknown): { error: Record<string, unknown> } {
  if (e instanceof UsageError) return { error: { code: 'ERR_USAGE', message: e.message } };
  const x = e as DevmapperError;
  const error: Record<string, unknown> = { code: typeof x?.code === 'string' ? x.code : 'ERR_DM_INTERNAL', message: x instanceof Error ? x.message : String(e) };
  for (const k of ['errno', 'syscall', 'command', 'device', 'completed', 'block', 'check', 'mode', 'space', 'freeBytes', 'holders'] as const)
    if (x && (x as unknown as Record<string, unknown>)[k] !== undefined) error[k] = (x as unknown as Record<string, unknown>)[k];
  return { error };
}

export const json = (v: unknown): string => JSON.stringify(v, null, 2) + '\n';
