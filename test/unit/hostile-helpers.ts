// Shared by the hostile-input tests (hostile-dm, hostile-fuzz): a DeviceMapper binding that no call may
// reach, the hostile values themselves, and the two checks every call must pass: the sync form throws a
// DevmapperError, the promise form returns a promise (never throws) that rejects with one, within a bound.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeviceMapper, DevmapperError } from '../../lib';
import type { DeviceMapperOptions } from '../../lib';

type Binding = NonNullable<DeviceMapperOptions['binding']>;

/**
 * A DeviceMapper whose binding records every call and fails it: input that passes the checks reaches it (the
 * first thing any command does is open the control fd), so `calls` says whether a hostile input got through.
 * No call ever reaches a kernel, whatever machine this runs on.
 */
export function tripwireDm(): { dm: DeviceMapper; calls: string[] } {
  const calls: string[] = [];
  const fail = (what: string): never => {
    calls.push(what);
    throw new DevmapperError(`tripwire: ${what} was called`, { code: 'ETRIPWIRE' });
  };
  const failing = (what: string) => () => fail(what);
  const rejecting = (what: string) => () => { try { return fail(what); } catch (e) { return Promise.reject(e); } };
  const binding = {
    openControl: failing('openControl'),
    closeFd: () => undefined,
    dm: failing('dm'),
    dmAsync: rejecting('dmAsync'),
    dmSeq: failing('dmSeq'),
    dmSeqAsync: rejecting('dmSeqAsync'),
    dmWait: failing('dmWait'),
    pollControl: failing('pollControl'),
  } as unknown as Binding;
  return { dm: new DeviceMapper({ nodes: 'none', binding }), calls };
}

/** An empty folder of our own: paths that pass the checks point into it, at files that do not exist. */
export function scratch(): { dir: string; absent: (tag?: string) => string; remove(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-hostile-'));
  let n = 0;
  return {
    dir,
    absent: (tag = 'f') => path.join(dir, 'absent', `${tag.replace(/[^A-Za-z0-9]/g, '_').slice(0, 32)}-${++n}`),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

// ---- hostile values ------------------------------------------------------------------------------------

/** Not strings at all. */
export const NOT_STRINGS: unknown[] = [
  undefined, null, 0, 1, -1, NaN, Infinity, true, false, Symbol('s'), 10n, [], ['pool'], {}, new String('pool'),
  () => 'pool', new Date(0), new Map(), /pool/, Buffer.from('pool'),
];

/** Strings no dm name may be. */
export const BAD_NAMES: unknown[] = [
  '', '.', '..', 'control', '/', 'a/b', '\0', 'a\0b', 'pool\0', 'a\nb', 'pool\n', 'a\rb', 'a\x01b', 'tab\tname', 'del\x7f',
  'c1\x85', 'x'.repeat(128), 'é'.repeat(64), ...NOT_STRINGS,
];

/** Device references that name no device: bad names, other types, objects without exactly one good key. */
export const BAD_REFS: unknown[] = [
  ...BAD_NAMES, { name: 'pool', uuid: 'U' }, { name: 'pool', dev: { major: 253, minor: 0 } }, { name: 'a/b' }, { name: 'control' },
  { name: 'a\nb' }, { name: undefined }, { name: 5 }, { name: new String('pool') }, { uuid: '' }, { uuid: 'a\0b' }, { uuid: 'u'.repeat(129) },
  { uuid: 5 }, { dev: null }, { dev: '253:0' }, { dev: 253 }, { dev: {} }, { dev: { major: 253 } }, { dev: { minor: 0 } },
  { dev: { major: 4096, minor: 0 } }, { dev: { major: 253, minor: 2 ** 20 } }, { dev: { major: -1, minor: 0 } },
  { dev: { major: 1.5, minor: 0 } }, { dev: { major: '253', minor: 0 } }, { dev: { major: NaN, minor: 0 } },
  { dev: { major: 253, minor: 0, extra: 1 } }, { dev: [253, 0] }, { nme: 'pool' }, { name: 'pool', extra: 1 },
  { name: 'pool', [Symbol('k')]: 1 }, Object.create({ name: 'pool' }), JSON.parse('{"__proto__": {"name": "pool"}}'),
];

/** Strings with a NUL byte: no path, message or uuid may hold one. */
export const NUL_STRINGS: string[] = ['\0', 'a\0', '\0a', '/tmp/x\0y', '/dev/loop0\0', '/dev/mapper/control\0'];

/** Numbers (and non-numbers) that no integer field takes. */
export const BAD_NUMBERS: unknown[] = [
  NaN, Infinity, -Infinity, 1.5, 0.1, -1, -0.5, -0, 2 ** 53, 2 ** 53 + 2, 2 ** 64, Number.MAX_VALUE, Number.MIN_VALUE,
  '1', '0', '', new Number(1), 1n, null, true, false, Symbol('n'), {}, [], [1], () => 1,
].filter((v) => !Object.is(v, -0));  // -0 is 0: a valid integer

/** Values no boolean flag takes (undefined is absent, so allowed). */
export const BAD_BOOLEANS: unknown[] = ['true', 'false', '', 'yes', 1, 0, NaN, null, new Boolean(false), new Boolean(true), {}, [], Symbol('b'), 1n];

/** Values no options object is. */
export const BAD_OPTION_OBJECTS: unknown[] = [
  null, 0, 1, 'options', '', true, Symbol('o'), 1n, [], [{}], () => ({}), new String('x'), new Boolean(true), new Number(1),
  new Map([['readOnly', true]]), new Date(0), /x/, Buffer.alloc(1),
];

/** show() of a value, for test titles and failure messages: never calls the value's own toString. */
export function label(v: unknown, depth = 0): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v);
  if (typeof v === 'symbol') return 'Symbol()';
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'function';
  if (v instanceof Map) return 'Map';
  if (v instanceof Date) return 'Date';
  if (v instanceof RegExp) return 'RegExp';
  if (Buffer.isBuffer(v)) return 'Buffer';
  if (v instanceof String || v instanceof Number || v instanceof Boolean) return `new ${v.constructor.name}(${JSON.stringify(v.valueOf())})`;
  if (v !== null && typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    const cls = proto && proto !== Object.prototype && proto !== Array.prototype && typeof proto.constructor === 'function' ? proto.constructor.name : '';
    if (depth >= 2) return `${cls || (Array.isArray(v) ? 'array' : 'object')}…`;  // a pool, a volume: not walked (they hold cycles)
    const inner = (x: unknown) => label(x, depth + 1);
    if (Array.isArray(v)) return `[${v.slice(0, 8).map(inner).join(', ')}${v.length > 8 ? ', …' : ''}]`;
    try {
      const keys = Reflect.ownKeys(v);
      return `${cls}{${keys.slice(0, 8).map((k) => `${typeof k === 'symbol' ? '[symbol]' : k}: ${inner((v as Record<PropertyKey, unknown>)[k])}`).join(', ')}${keys.length > 8 ? ', …' : ''}}`;
    } catch {
      return 'object';
    }
  }
  return Object.is(v, -0) ? '-0' : String(v);
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name} ${(e as { code?: string }).code ?? ''}: ${e.message}`;
  return `a thrown ${typeof e}`;
}

export interface Expect {
  /** The error's code: exactly this, or matching. Default: any ERR_DM_* code (refused before any syscall). */
  code?: string | RegExp;
  /** Text the message must contain (the name of the offending key, say). */
  mentions?: string;
  /** How long the promise may take before it counts as a hang (default HANG_MS). */
  boundMs?: number;
}

function checkError(e: unknown, x: Expect | undefined, where: string): DevmapperError {
  if (!(e instanceof DevmapperError)) throw new Error(`${where}: expected a DevmapperError, got ${describe(e)}`);
  const code = x?.code ?? /^ERR_DM_/;
  if (typeof code === 'string' ? e.code !== code : !code.test(e.code))
    throw new Error(`${where}: expected code ${String(code)}, got ${e.code}: ${e.message}`);
  if (x?.mentions !== undefined && !e.message.includes(x.mentions))
    throw new Error(`${where}: expected the message to mention ${JSON.stringify(x.mentions)}: ${e.message}`);
  return e;
}

/** The sync form: must throw a DevmapperError (by default one of ours, ERR_DM_*). */
export function syncRefuses(fn: () => unknown, x?: Expect): DevmapperError {
  let returned = false;
  try {
    fn();
    returned = true;
  } catch (e) {
    return checkError(e, x, 'sync form');
  }
  if (returned) throw new Error('sync form: expected a DevmapperError, the call returned');
  throw new Error('unreachable');
}

/** How long a promise may take to settle before the test calls it a hang (a bound, not a speed claim). */
export const HANG_MS = 20_000;

/** Settles `p` or fails when HANG_MS pass first. */
export function withinBound<T>(p: Promise<T>, what: string, boundMs = HANG_MS): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_r, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: did not settle within ${boundMs} ms (a hang)`)), boundMs);
  });
  const outcome = p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
  return Promise.race([outcome, hang]).finally(() => clearTimeout(timer));
}

/** The promise form: must return a promise, not throw, and that promise must reject with a DevmapperError. */
export async function asyncRefuses(fn: () => unknown, x?: Expect): Promise<DevmapperError> {
  let p: unknown;
  try {
    p = fn();
  } catch (e) {
    throw new Error(`promise form threw synchronously instead of rejecting: ${describe(e)}`);
  }
  if (!(p instanceof Promise)) throw new Error(`promise form returned ${label(p)}, not a promise`);
  const r = await withinBound(p, 'promise form', x?.boundMs);
  if (r.ok) throw new Error('promise form: expected a rejection, it resolved');
  return checkError(r.error, x, 'promise form');
}

/** Both forms of one call. */
export async function bothRefuse(sync: () => unknown, promise: () => unknown, x?: Expect): Promise<void> {
  syncRefuses(sync, x);
  await asyncRefuses(promise, x);
}

/**
 * ThinPool.create and attach take a lifecycle lock, /run/devmapper/<name>.lock, once the options pass their
 * first checks. The tests use a few fixed names; this removes the lock files (and the folder) they made.
 */
export function lifecycleLockJanitor(names: string[]): () => void {
  const dir = '/run/devmapper';
  const hadDir = fs.existsSync(dir);
  const had = new Set(names.filter((n) => fs.existsSync(path.join(dir, `${n}.lock`))));
  return () => {
    for (const n of names) if (!had.has(n)) fs.rmSync(path.join(dir, `${n}.lock`), { force: true });
    if (!hadDir) { try { fs.rmdirSync(dir); } catch { /* not empty, or gone: not ours to force */ } }
  };
}
