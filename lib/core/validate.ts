// Cheap checks that run before any ioctl. Each throws a DevmapperError with its own code.
import { dmError } from './errors';
import { K } from './binding';

// Over max UTF-8 bytes? A UTF-16 unit is 1..3 bytes, so most strings need no byte count (a native call).
const overBytes = (s: string, max: number) => s.length > max || (s.length * 3 > max && Buffer.byteLength(s, 'utf8') > max);

/** dm names: 1..127 bytes, no '/', not '.' or '..' (the kernel refuses those as node names). */
export function checkName(name: unknown, what = 'name'): string {
  if (typeof name !== 'string' || name.length === 0) throw dmError('ERR_DM_INVALID_NAME', `${what} must be a non-empty string`);
  if (overBytes(name, K.DM_NAME_LEN - 1)) throw dmError('ERR_DM_INVALID_NAME', `${what} '${name}' is longer than ${K.DM_NAME_LEN - 1} bytes`);
  if (name.includes('/')) throw dmError('ERR_DM_INVALID_NAME', `${what} '${name}' contains '/'`);
  if (name === '.' || name === '..') throw dmError('ERR_DM_INVALID_NAME', `${what} cannot be '${name}'`);
  if (name.includes('\0')) throw dmError('ERR_DM_INVALID_NAME', `${what} contains a NUL byte`);
  return name;
}

export function checkUuid(uuid: unknown): string {
  if (typeof uuid !== 'string' || uuid.length === 0) throw dmError('ERR_DM_INVALID_UUID', 'uuid must be a non-empty string');
  if (overBytes(uuid, K.DM_UUID_LEN - 1)) throw dmError('ERR_DM_INVALID_UUID', `uuid is longer than ${K.DM_UUID_LEN - 1} bytes`);
  if (uuid.includes('\0')) throw dmError('ERR_DM_INVALID_UUID', 'uuid contains a NUL byte');
  return uuid;
}

export const MAX_THIN_ID = 2 ** 24 - 1;

export function checkThinId(id: unknown): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > MAX_THIN_ID)
    throw dmError('ERR_DM_INVALID_THIN_ID', `thin device ids are integers 0..${MAX_THIN_ID}, got ${String(id)}`);
  return id;
}

export function checkInteger(n: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max)
    throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be an integer ${min}..${max}, got ${String(n)}`);
  return n;
}
