// Cheap checks that run before any syscall. Each throws a DevmapperError with its own code; none clamps,
// truncates or coerces: a value is taken as given or refused.
import { dmError, DevmapperErrorCode } from './errors';
import { K } from './binding';

// Over max UTF-8 bytes? A UTF-16 unit is 1..3 bytes, so most strings need no byte count (a native call).
const overBytes = (s: string, max: number) => s.length > max || (s.length * 3 > max && Buffer.byteLength(s, 'utf8') > max);

// C0 controls, DEL and the C1 controls: they break every line-based tool (dmsetup ls, udev rules, logs).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** How a value is shown in an error: never by calling its own toString (a hostile object, a symbol). */
export function show(v: unknown): string {
  if (typeof v === 'string') return `'${v.length > 64 ? v.slice(0, 64) + '…' : v}'`.replace(CONTROL, '?');
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === undefined) return String(v);
  if (v === null) return 'null';
  if (typeof v === 'symbol') return 'a symbol';
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return 'an array';
  return 'an object';
}

/**
 * dm names: 1..127 bytes; no '/', NUL or control character; not '.', '..' or 'control' (the kernel takes
 * 'control', but its node would replace /dev/mapper/control).
 */
export function checkName(name: unknown, what = 'name'): string {
  if (typeof name !== 'string' || name.length === 0) throw dmError('ERR_DM_INVALID_NAME', `${what} must be a non-empty string, got ${show(name)}`);
  if (name.includes('\0')) throw dmError('ERR_DM_INVALID_NAME', `${what} contains a NUL byte`);
  if (CONTROL.test(name)) throw dmError('ERR_DM_INVALID_NAME', `${what} ${show(name)} contains a control character`);
  if (overBytes(name, K.DM_NAME_LEN - 1)) throw dmError('ERR_DM_INVALID_NAME', `${what} ${show(name)} is longer than ${K.DM_NAME_LEN - 1} bytes`);
  if (name.includes('/')) throw dmError('ERR_DM_INVALID_NAME', `${what} ${show(name)} contains '/'`);
  if (name === '.' || name === '..' || name === 'control') throw dmError('ERR_DM_INVALID_NAME', `${what} cannot be '${name}'`);
  return name;
}

/** uuids: 1..128 bytes, no NUL or control character. */
export function checkUuid(uuid: unknown, what = 'uuid'): string {
  if (typeof uuid !== 'string' || uuid.length === 0) throw dmError('ERR_DM_INVALID_UUID', `${what} must be a non-empty string, got ${show(uuid)}`);
  if (uuid.includes('\0')) throw dmError('ERR_DM_INVALID_UUID', `${what} contains a NUL byte`);
  if (CONTROL.test(uuid)) throw dmError('ERR_DM_INVALID_UUID', `${what} contains a control character`);
  if (overBytes(uuid, K.DM_UUID_LEN - 1)) throw dmError('ERR_DM_INVALID_UUID', `${what} is longer than ${K.DM_UUID_LEN - 1} bytes`);
  return uuid;
}

/** The highest thin device id the kernel takes (24 bits). */
export const MAX_THIN_ID = 2 ** 24 - 1;

/** dev_t as the kernel encodes it: a 12-bit major, a 20-bit minor. */
export const MAX_MAJOR = 2 ** 12 - 1;
export const MAX_MINOR = 2 ** 20 - 1;

export function checkThinId(id: unknown, what = 'thin device id'): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_THIN_ID)
    throw dmError('ERR_DM_INVALID_THIN_ID', `${what}s are integers 0..${MAX_THIN_ID}, got ${show(id)}`);
  return id;
}

/** An integer min..max (a safe integer by default): NaN, ±Infinity, fractions and other types are refused. */
export function checkInteger(n: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER,
  code: DevmapperErrorCode = 'ERR_DM_INVALID_ARGUMENT'): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max)
    throw dmError(code, `${what} must be an integer ${min}..${max}, got ${show(n)}`);
  return n;
}

export function checkBoolean(v: unknown, what: string, code: DevmapperErrorCode = 'ERR_DM_INVALID_ARGUMENT'): boolean {
  if (typeof v !== 'boolean') throw dmError(code, `${what} must be true or false, got ${show(v)}`);
  return v;
}

/** Text that reaches the kernel or the filesystem: a string with no NUL byte (never cut at one). */
export function checkText(s: unknown, what: string, o: { empty?: boolean; oneLine?: boolean } = {}): string {
  if (typeof s !== 'string') throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be a string, got ${show(s)}`);
  if (!o.empty && s.length === 0) throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must not be empty`);
  if (s.includes('\0')) throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} contains a NUL byte`);
  if (o.oneLine && /[\r\n]/.test(s)) throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be one line`);
  return s;
}

/** A filesystem path: a non-empty string without NUL. */
export const checkPath = (p: unknown, what: string): string => checkText(p, what);

/**
 * An options object: undefined (no options) or a plain object whose keys are all known. An unknown key is
 * refused by name: a typo (readonly for readOnly) must not silently mean the default. Returns the object,
 * or an empty one.
 */
const NO_OPTIONS = Object.freeze({});

export function checkOptions<T extends object>(o: unknown, known: readonly (keyof T & string)[], what = 'options'): T {
  if (o === undefined) return NO_OPTIONS as T;
  if (o === null || typeof o !== 'object' || Array.isArray(o))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be an object, got ${show(o)}`);
  // A plain object of any realm (vm contexts, structuredClone under jest), or one with no prototype: not a
  // boxed primitive, a Date or a Map, whose fields would never be read.
  const proto: unknown = Object.getPrototypeOf(o);
  if (proto !== null && (Object.getPrototypeOf(proto) !== null || Object.prototype.toString.call(o) !== '[object Object]'))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be a plain object, got an instance of another class`);
  checkKnownKeys(o, known, what);
  return o as T;
}

/** Every own key of `o` is one of `known`; the first that is not is refused by name. */
export function checkKnownKeys(o: object, known: readonly string[], what: string, code: DevmapperErrorCode = 'ERR_DM_INVALID_ARGUMENT',
  noun = 'option'): void {
  for (const key of Reflect.ownKeys(o)) {
    if (typeof key !== 'string' || !known.includes(key))
      throw dmError(code, `${what}: unknown ${noun} ${typeof key === 'string' ? `'${key}'` : 'a symbol'} (known: ${known.join(', ') || 'none'})`);
  }
}

/** An optional boolean option: undefined, or true/false. */
export const optBoolean = (v: unknown, what: string, code?: DevmapperErrorCode): boolean | undefined =>
  (v === undefined ? undefined : checkBoolean(v, what, code));

/** An optional integer option. */
export const optInteger = (v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined =>
  (v === undefined ? undefined : checkInteger(v, what, min, max));

/** An AbortSignal, or undefined. */
export function optSignal(v: unknown, what = 'signal'): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be an AbortSignal, got ${show(v)}`);
  return v;
}
