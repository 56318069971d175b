// Every error devmapper throws is built here: from a table of our own codes for bad input and misuse, and
// from the kernel's errno for failed syscalls (the addon calls kernelError through setErrorFactory).
import os from 'node:os';
import { native, RawSysError } from './binding';

/**
 * Our own error codes (kernel errors carry the errno's name instead): mostly for errors raised before any
 * syscall; ERR_DM_REGISTRY, ERR_DM_LOCK, ERR_DM_METADATA and the cancelled waits come from the addon. Each
 * value is the message template's prefix.
 */
export const ErrorCodes = {
  /** A device, pool or volume name the kernel would refuse: empty, too long, or with a NUL, a control character or '/'; or '.', '..', 'control'. */
  ERR_DM_INVALID_NAME: 'invalid device name',
  /** A dm uuid the kernel would refuse: empty, too long, or with a NUL or a control character. */
  ERR_DM_INVALID_UUID: 'invalid uuid',
  /** A size or offset that is not a whole, in-range number of sectors or bytes. */
  ERR_DM_INVALID_SIZE: 'invalid size',
  /** A thin device id outside 0..MAX_THIN_ID. */
  ERR_DM_INVALID_THIN_ID: 'invalid thin device id',
  /** A thin-pool data block size out of range or not a multiple of 128 sectors (64 KiB). */
  ERR_DM_INVALID_BLOCK_SIZE: 'invalid block size',
  /** Any other bad argument or option: a wrong type, an unknown option key, a value out of range. */
  ERR_DM_INVALID_ARGUMENT: 'invalid argument',
  /** A table that is not contiguous from sector 0, or a target that is malformed. */
  ERR_DM_INVALID_TABLE: 'invalid table',
  /** A table or status line that does not parse as its target type. */
  ERR_DM_PARSE: 'cannot parse',
  /** The kernel's dm interface is too old for the command. */
  ERR_DM_UNSUPPORTED: 'not supported by this kernel',
  /** The DeviceMapper (or pool) was closed, or close() ended a pending wait. */
  ERR_DM_CLOSED: 'closed',
  /** A wait or a timed suspend ran past its timeoutMs. */
  ERR_DM_TIMEOUT: 'timed out',
  /** A wait's AbortSignal was aborted. */
  ERR_DM_ABORTED: 'aborted',
  /** The named device exists but its table is not one thin-pool target. */
  ERR_DM_NOT_A_THIN_POOL: 'not a thin-pool',
  /** A volume of that name is already in the registry. */
  ERR_DM_VOLUME_EXISTS: 'volume exists',
  /** No volume of that name in the registry. */
  ERR_DM_NO_SUCH_VOLUME: 'no such volume',
  /** The pool's mode refuses the change (read-only, out of data space, failed); `mode` says which. */
  ERR_DM_POOL_STATE: 'pool state',
  /** Every thin id up to MAX_THIN_ID is in use. */
  ERR_DM_IDS_EXHAUSTED: 'no free thin device id',
  /** Another call of this process (a promise call a sync one cannot wait for, a create or destroy) holds what is needed. */
  ERR_DM_IN_PROGRESS: 'busy in this process',
  /** create() found a dm device or a backing file of that name already there. */
  ERR_DM_POOL_EXISTS: 'pool exists',
  /** The device is held (open, mounted, stacked on, or live metadata); `holders` says by whom when known. */
  ERR_DM_BUSY: 'in use',
  /** The registry's store (LMDB) failed. */
  ERR_DM_REGISTRY: 'registry store failed',
  /** Taking a lock file failed. */
  ERR_DM_LOCK: 'lock failed',
  /** The pool's metadata failed a check while being read; `block` and `check` say where. */
  ERR_DM_METADATA: 'corrupt pool metadata',
  /** The pool is LVM's: it can be read, never changed. */
  ERR_DM_LVM_POOL: 'owned by LVM',
  /** The change would take the pool below its free-space floor; `space` and `freeBytes` say which and how much is left. */
  ERR_DM_POOL_FULL: 'pool full',
  /** Something that should not happen; a bug to report. */
  ERR_DM_INTERNAL: 'internal error',
} as const;
/** One of our own error codes (a key of {@link ErrorCodes}); kernel errors carry the errno's name instead. */
export type DevmapperErrorCode = keyof typeof ErrorCodes;

/**
 * The one error class devmapper throws: for bad input and misuse (code `ERR_DM_*`, see {@link ErrorCodes}),
 * for a failed syscall (code the errno's name, with errno, syscall and command), and for Node's own fs errors
 * met on the way (their code, and the path as `device`). Some carry {@link ErrorDetails} as well.
 */
export class DevmapperError extends Error {
  /** 'EBUSY', 'ENXIO', ... for kernel errors; 'ERR_DM_*' for ours. */
  code: string;
  /** Negative errno, as Node's own system errors carry it. */
  errno?: number;
  /** The system call that failed ('ioctl', 'open', ...). */
  syscall?: string;
  /** The DM or loop command: 'DM_DEV_REMOVE', 'LOOP_CONFIGURE', ... */
  command?: string;
  /** The device name or path the call was about. */
  device?: string;
  /** In a batch (`dm.batch()`, `createDevice`): how many of its commands ran before this one failed. */
  completed?: number;
  /** @param message The whole message. @param fields The code, and whichever of the other fields apply. */
  constructor(message: string, fields: { code: string; errno?: number; syscall?: string; command?: string; device?: string; completed?: number } & ErrorDetails) {
    super(message);
    this.name = 'DevmapperError';
    this.code = fields.code;
    if (fields.errno !== undefined) this.errno = fields.errno;
    if (fields.syscall) this.syscall = fields.syscall;
    if (fields.command) this.command = fields.command;
    if (fields.device) this.device = fields.device;
    if (fields.completed !== undefined) this.completed = fields.completed;
    for (const k of DETAIL_KEYS) if (fields[k] !== undefined) (this as Record<string, unknown>)[k] = fields[k];
  }
}

/** Who holds a block device open: its open count, the dm devices stacked on it, the mounts of it. */
export interface DeviceHolders {
  /** The kernel's open count of the device. */
  openCount: number;
  /** dm (or other) devices built on it: sysfs holders, by name. */
  devices: string[];
  /** Mounts of it in any mount namespace: the mount point as the process `pid` sees it. */
  mounts: {
    /** A process in the mount namespace the mount is in. */
    pid: number;
    /** Where it is mounted, as that process sees it. */
    mountPoint: string;
  }[];
}

/** Fields some errors carry beyond code, errno, syscall, command and device. */
export interface ErrorDetails {
  /** ERR_DM_METADATA: the metadata block that failed a check. */
  block?: number;
  /** ERR_DM_METADATA: the check that failed. */
  check?: string;
  /** ERR_DM_POOL_STATE: the pool's mode when it refused ('ro', 'out_of_data_space', 'fail', 'error'). */
  mode?: string;
  /** ERR_DM_POOL_FULL: the space that is short ('data' or 'metadata') and what is left of it, in bytes. */
  space?: 'data' | 'metadata';
  /** ERR_DM_POOL_FULL: what is left of that space, in bytes. */
  freeBytes?: number;
  /** EBUSY / ERR_DM_BUSY on deactivate, delete or destroy: who holds the device. */
  holders?: DeviceHolders;
}
// The details are fields of every DevmapperError (set only when present).
export interface DevmapperError extends ErrorDetails {}
const DETAIL_KEYS = ['block', 'check', 'mode', 'space', 'freeBytes', 'holders'] as const;

/** An error of ours (bad input, misuse), raised before any syscall. */
export function dmError(code: DevmapperErrorCode, detail: string, device?: string, details?: ErrorDetails): DevmapperError {
  const where = device ? `${device}: ` : '';
  return new DevmapperError(`${where}${ErrorCodes[code]}: ${detail}`, { code, device, ...details });
}

/** `e` (a kernel error, say) with details added, the same error object. */
export function withDetails<E extends DevmapperError>(e: E, details: ErrorDetails): E {
  for (const k of DETAIL_KEYS) if (details[k] !== undefined) (e as Record<string, unknown>)[k] = details[k];
  return e;
}

/**
 * An error Node raised for us (fs calls while creating, opening or attaching a pool): the same code, errno
 * and syscall, as a DevmapperError naming what we were doing and the path. Anything else is returned as it is.
 */
export function systemError(e: unknown, operation: string, path?: string): unknown {
  const x = e as NodeJS.ErrnoException | undefined;
  // Duck-typed: an Error from another realm (a vm context, a worker) is still Node's system error.
  if (e instanceof DevmapperError || typeof e !== 'object' || e === null || typeof x!.code !== 'string' || typeof x!.syscall !== 'string') return e;
  const where = path ?? x!.path;
  const message = `${operation}${where ? ` (${where})` : ''}: ${x!.message}`;
  return new DevmapperError(message, { code: x!.code, errno: typeof x!.errno === 'number' ? x!.errno : undefined, syscall: x!.syscall, device: where });
}

/** Runs fn; a Node system error it throws becomes a DevmapperError (systemError). */
export function withSystemErrors<T>(operation: string, path: string | undefined, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw systemError(e, operation, path);
  }
}

const errnoNames = new Map<number, string>(
  Object.entries(os.constants.errno).map(([name, value]) => [value, name]),
);

/** Why a wait thread was cancelled (the reason passed to cancel()), and the error it ends with. */
const CANCELLED: Record<string, { code: DevmapperErrorCode; why: (arg: string) => string }> = {
  timeout: { code: 'ERR_DM_TIMEOUT', why: (ms) => `no event within ${ms} ms` },
  abort: { code: 'ERR_DM_ABORTED', why: () => 'the signal was aborted' },
  close: { code: 'ERR_DM_CLOSED', why: () => 'close() was called' },
};

/**
 * What the addon reports, as the one error: a failed syscall (`DM_DEV_REMOVE pool0-vol3: Device or resource
 * busy (EBUSY)`, code the errno's name); a registry store or lock failure (ERR_DM_REGISTRY, ERR_DM_LOCK, with
 * the errno when there is one); a wait ended by cancel(reason) (ERR_DM_TIMEOUT, ERR_DM_ABORTED, ERR_DM_CLOSED).
 */
export function kernelError(raw: RawSysError): DevmapperError {
  const errnoName = raw.errno > 0 ? errnoNames.get(raw.errno) ?? `E${raw.errno}` : undefined;
  const what = [raw.command || raw.syscall, raw.target].filter(Boolean).join(' ');
  const fields = {
    errno: raw.errno > 0 ? -raw.errno : undefined, syscall: raw.syscall || undefined, command: raw.command || undefined,
    device: raw.target || undefined,
  };
  if (errnoName === 'ECANCELED') {
    const [reason, arg = ''] = raw.detail.split(' ');
    const c = CANCELLED[reason];
    if (c) return new DevmapperError(`${what}: ${ErrorCodes[c.code]}: ${raw.command || 'the call'} ended: ${c.why(arg)}`, { code: c.code, ...fields });
  }
  if (raw.command === 'metadata' && raw.check !== undefined)
    return new DevmapperError(`${ErrorCodes.ERR_DM_METADATA}: ${raw.target}: block ${raw.block}: ${raw.check}`,
      { code: 'ERR_DM_METADATA', ...fields, block: raw.block, check: raw.check });
  const own = raw.command === 'registry' ? 'ERR_DM_REGISTRY' : raw.command === 'flock' ? 'ERR_DM_LOCK' : undefined;
  let message = errnoName ? `${what}: ${raw.strerror} (${errnoName})` : `${what}`;
  if (raw.syscall && own) message = `${what}: ${raw.syscall}${errnoName ? `: ${raw.strerror} (${errnoName})` : ''}`;
  if (raw.detail) message += `: ${raw.detail}`;
  if (!own && (errnoName === 'EACCES' || errnoName === 'EPERM')) message += ' — device-mapper and loop ioctls need root (CAP_SYS_ADMIN)';
  if (own) return new DevmapperError(`${ErrorCodes[own]}: ${message}`, { code: own, ...fields });
  return new DevmapperError(message, { code: errnoName ?? 'ERR_DM_INTERNAL', ...fields });
}

native.setErrorFactory(kernelError);

/** An error as plain data, to cross to another thread: a structured clone keeps neither the class nor our fields. */
export interface ClonedError {
  kind: 'devmapper' | 'error' | 'value';
  message: string;
  stack?: string;
  /** DevmapperError: code, errno, syscall, command, device, completed and the details; Error: its name and
   * Node's system-error fields (code, errno, syscall, path, dest). */
  fields: Record<string, unknown>;
  /** The error's `cause`, cloned the same way (a few deep). */
  cause?: ClonedError;
  /** The cause was set by assignment (enumerable), not by the Error constructor. */
  causeEnumerable?: boolean;
  value?: unknown;
}

const SYSTEM_ERROR_KEYS = ['code', 'errno', 'syscall', 'path', 'dest'] as const;

/** `e` as plain data (see errorFromClone). */
export function cloneError(e: unknown, depth = 0): ClonedError {
  if (e instanceof Error) {
    const c: ClonedError = e instanceof DevmapperError
      ? { kind: 'devmapper', message: e.message, stack: e.stack, fields: {} }
      : { kind: 'error', message: e.message, stack: e.stack, fields: { name: e.name } };
    const keys = e instanceof DevmapperError ? ['code', 'errno', 'syscall', 'command', 'device', 'completed', ...DETAIL_KEYS] : SYSTEM_ERROR_KEYS;
    for (const k of keys) {
      const v = (e as unknown as Record<string, unknown>)[k];
      if (v !== undefined && (e instanceof DevmapperError || ['string', 'number'].includes(typeof v))) c.fields[k] = v;
    }
    if (e.cause !== undefined && depth < 4) {
      c.cause = cloneError(e.cause, depth + 1);
      c.causeEnumerable = Object.getOwnPropertyDescriptor(e, 'cause')?.enumerable;
    }
    return c;
  }
  const plain = e === null || ['string', 'number', 'boolean', 'undefined'].includes(typeof e);
  return { kind: 'value', message: String(e), fields: {}, value: plain ? e : String(e) };
}

/** The error cloneError saw, made again on this thread: a DevmapperError with the same fields, stack and all. */
export function errorFromClone(c: ClonedError): unknown {
  if (c.kind === 'value') return c.value;
  const { name, ...rest } = c.fields;
  const e = c.kind === 'devmapper' ? new DevmapperError(c.message, rest as { code: string }) : Object.assign(new Error(c.message), rest);
  if (c.kind === 'error' && typeof name === 'string') e.name = name;
  if (c.stack !== undefined) e.stack = c.stack;
  if (c.cause) Object.defineProperty(e, 'cause', { value: errorFromClone(c.cause), writable: true, configurable: true, enumerable: !!c.causeEnumerable });
  return e;
}
