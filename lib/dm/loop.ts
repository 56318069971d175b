// Loop devices: attach a file (LOOP_CONFIGURE, or SET_FD + SET_STATUS64 on kernels before 5.8), detach,
// status, list, find the loop of a file, set capacity. The GET_FREE race is handled natively (bounded).
// Each operation is one body of steps (core/steps.ts) that checks its arguments before any syscall: the
// promise form rejects on bad input, the sync twin throws.
import fs from 'node:fs';
import path from 'node:path';
import { dmError, systemError } from '../core/errors';
import { FdHandle } from '../core/handles';
import { K, native, RawLoopAttachOptions, RawLoopAttachResult, RawLoopStatus } from '../core/binding';
import { Bytes, SECTOR_SIZE } from '../core/units';
import { Steps, call, mapErrors, runAsync, runSync } from '../core/steps';
import { checkOptions, checkPath, optBoolean, optInteger, show } from '../core/validate';

/** Options of {@link Loop.attach}; unknown keys are refused (ERR_DM_INVALID_ARGUMENT), flags must be booleans. */
export interface LoopAttachOptions {
  /** Bind the file read-only (LO_FLAGS_READ_ONLY). */
  readOnly?: boolean;
  /** Detach when the last user (say, a dm table) closes it. */
  autoclear?: boolean;
  /** Direct I/O to the backing file (LO_FLAGS_DIRECT_IO). */
  directIo?: boolean;
  /** Let the kernel scan the device for partitions (LO_FLAGS_PARTSCAN). */
  partscan?: boolean;
  /** Where in the file the device starts, in bytes. */
  offset?: Bytes | number;
  /** Bytes of the file to expose, whole sectors; 0 or absent = to its end. */
  sizeLimit?: Bytes | number;
  /** Logical block size: 512, 1024, 2048 or 4096. */
  blockSize?: number;
  /**
   * How to bind: 'configure' (LOOP_CONFIGURE, one ioctl; the default, and where the kernel lacks it, before
   * 5.8, 'set-fd' is used instead) or 'set-fd' (LOOP_SET_FD, then LOOP_SET_STATUS64 and the rest).
   */
  method?: 'configure' | 'set-fd';
}

/** A loop device {@link Loop.attach} bound. */
export interface LoopDevice {
  /** /dev/loopN. */
  path: string;
  /** N. */
  number: number;
  /** How it was bound: 'set-fd' when asked for, or when the kernel has no LOOP_CONFIGURE. */
  method: 'configure' | 'set-fd';
  /**
   * An autoclear device detaches at its last close, so attach() returns it held open: call release() once
   * something else (a dm table) holds it, or to let it go. A no-op for devices without autoclear.
   */
  release(): void;
}

// The fd that holds an autoclear loop is owned by a handle: release() closes it, and so does the handle's
// finalizer if the LoopDevice is dropped unreleased (the loop then detaches, as at any last close).
class AttachedLoop implements LoopDevice {
  readonly path: string;
  private readonly held?: FdHandle;
  constructor(readonly number: number, readonly method: LoopDevice['method'], fd: number) {
    this.path = devPath(number);
    if (fd >= 0) this.held = new FdHandle(fd, this.path);
  }
  release(): void { this.held?.close(); }
}

/** A loop device's binding (LOOP_GET_STATUS64). */
export interface LoopStatus {
  /** /dev/loopN. */
  path: string;
  /** N. */
  number: number;
  /** Full path of the backing file, from sysfs (the ioctl keeps only 63 bytes of it). */
  backingFile: string;
  /** The device number (dev_t) of the filesystem the backing file is on. */
  backingDev: number;
  /** The backing file's inode number. */
  backingInode: number;
  /** Where in the file the device starts, in bytes. */
  offset: Bytes;
  /** Bytes of the file exposed; 0 = to its end. */
  sizeLimit: Bytes;
  /** Bound read-only. */
  readOnly: boolean;
  /** Detaches at last close. */
  autoclear: boolean;
  /** Direct I/O to the backing file. */
  directIo: boolean;
  /** The kernel scans it for partitions. */
  partscan: boolean;
}

const ATTACH_KEYS = ['readOnly', 'autoclear', 'directIo', 'partscan', 'offset', 'sizeLimit', 'blockSize', 'method'] as const;
const BLOCK_SIZES = [512, 1024, 2048, 4096];

/**
 * The checked arguments of an attach: the backing file as an absolute path, and the addon's options. Unknown
 * keys (readonly for readOnly) are refused by name; flags must be booleans, not truthy values; a size limit
 * must be whole sectors (the kernel would round it down).
 */
function attachArgs(file: unknown, options: unknown): [string, RawLoopAttachOptions] {
  const f = path.resolve(checkPath(file, 'backing file'));
  const o = checkOptions<LoopAttachOptions>(options, ATTACH_KEYS, 'loop attach options');
  const readOnly = optBoolean(o.readOnly, 'readOnly') ?? false;
  const autoclear = optBoolean(o.autoclear, 'autoclear') ?? false;
  const directIo = optBoolean(o.directIo, 'directIo') ?? false;
  const partscan = optBoolean(o.partscan, 'partscan') ?? false;
  const offset = optInteger(o.offset, 'offset') ?? 0;
  const sizeLimit = optInteger(o.sizeLimit, 'sizeLimit') ?? 0;
  if (sizeLimit % SECTOR_SIZE !== 0)
    throw dmError('ERR_DM_INVALID_ARGUMENT', `sizeLimit must be a multiple of ${SECTOR_SIZE} bytes (the kernel would cut it to whole sectors), got ${sizeLimit}`);
  if (o.blockSize !== undefined && !BLOCK_SIZES.includes(o.blockSize))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `loop block size must be 512, 1024, 2048 or 4096, got ${show(o.blockSize)}`);
  if (o.method !== undefined && o.method !== 'configure' && o.method !== 'set-fd')
    throw dmError('ERR_DM_INVALID_ARGUMENT', `loop attach method must be 'configure' or 'set-fd', got ${show(o.method)}`);
  return [f, {
    readOnly, autoclear, directIo, partscan, offset, sizeLimit,
    blockSize: o.blockSize ?? 0, keepOpen: autoclear, legacy: o.method === 'set-fd',
  }];
}

const devPath = (n: number) => `/dev/loop${n}`;
const attached = (r: RawLoopAttachResult) => new AttachedLoop(r.number, r.usedConfigure ? 'configure' : 'set-fd', r.fd);

function sysfsBackingFile(n: number): string | undefined {
  try {
    return fs.readFileSync(`/sys/block/loop${n}/loop/backing_file`, 'utf8').trimEnd();
  } catch {
    return undefined;
  }
}

function toStatus(device: string, s: RawLoopStatus): LoopStatus {
  return {
    path: device, number: s.number,
    backingFile: sysfsBackingFile(s.number) ?? s.fileName,
    backingDev: s.backingDev, backingInode: s.backingInode,
    offset: s.offset as Bytes, sizeLimit: s.sizeLimit as Bytes,
    readOnly: (s.flags & K.LO_FLAGS_READ_ONLY) !== 0,
    autoclear: (s.flags & K.LO_FLAGS_AUTOCLEAR) !== 0,
    directIo: (s.flags & K.LO_FLAGS_DIRECT_IO) !== 0,
    partscan: (s.flags & K.LO_FLAGS_PARTSCAN) !== 0,
  };
}

// The kernel numbers loop devices below 2^20 (MINORBITS); the path is taken only in its canonical form.
const MAX_LOOP = 2 ** 20 - 1;

function checkDevice(device: unknown): string {
  const m = typeof device === 'string' ? /^\/dev\/loop(0|[1-9][0-9]{0,6})$/.exec(device) : null;
  if (!m || Number(m[1]) > MAX_LOOP)
    throw dmError('ERR_DM_INVALID_ARGUMENT', `${show(device)} is not a loop device path (/dev/loopN, N below 2^20)`);
  return device as string;
}

/** Loop devices bound to a file now, from sysfs. */
function listBound(): { path: string; number: number; backingFile: string }[] {
  let entries: string[];
  try { entries = fs.readdirSync('/sys/block'); } catch { return []; }
  const out = [];
  for (const e of entries) {
    const m = /^loop(\d+)$/.exec(e);
    if (!m) continue;
    const backingFile = sysfsBackingFile(Number(m[1]));
    if (backingFile !== undefined) out.push({ path: devPath(Number(m[1])), number: Number(m[1]), backingFile });
  }
  return out.sort((a, b) => a.number - b.number);
}

function matchesFile(st: fs.Stats, s: RawLoopStatus): boolean {
  return s.backingInode === st.ino && s.backingDev === st.dev;
}

// One body per operation, run as a promise (runAsync: bad input rejects) or by its sync twin (runSync).
// Arguments are checked at the top of each body, before any syscall.

function* attachSteps(file: unknown, options: unknown): Steps<LoopDevice> {
  const [f, o] = attachArgs(file, options);
  return attached(yield* call(() => native.loopAttach(f, o), () => native.loopAttachAsync(f, o)));
}

function* detachSteps(device: unknown): Steps<void> {
  const d = checkDevice(device);
  yield* call(() => native.loopDetach(d), () => native.loopDetachAsync(d));
}

function* statusSteps(device: unknown): Steps<LoopStatus> {
  const d = checkDevice(device);
  return toStatus(d, yield* call(() => native.loopStatus(d), () => native.loopStatusAsync(d)));
}

function* setCapacitySteps(device: unknown): Steps<void> {
  const d = checkDevice(device);
  yield* call(() => native.loopSetCapacity(d), () => native.loopSetCapacityAsync(d));
}

function* findSteps(file: unknown): Steps<string[]> {
  const f = path.resolve(checkPath(file, 'backing file'));
  const st = yield* mapErrors(call(() => fs.statSync(f), () => fs.promises.stat(f)), (e) => systemError(e, 'find the loop devices of', f));
  const found: string[] = [];
  for (const l of listBound()) {
    let s: RawLoopStatus | undefined;
    try {
      s = yield* call(() => native.loopStatus(l.path), () => native.loopStatusAsync(l.path));
    } catch {
      continue;  // detached meanwhile
    }
    if (matchesFile(st, s)) found.push(l.path);
  }
  return found;
}

/**
 * Loop devices, through the loop ioctls: each operation a promise and a sync twin, its arguments checked before
 * any syscall (ERR_DM_INVALID_ARGUMENT; a device is named by its canonical /dev/loopN path).
 */
export const Loop = {
  /** Binds a file to a free loop device (LOOP_CTL_GET_FREE, then LOOP_CONFIGURE or LOOP_SET_FD). */
  attach(file: string, o: LoopAttachOptions = {}): Promise<LoopDevice> { return runAsync(attachSteps(file, o)); },
  /** The sync twin of attach(). */
  attachSync(file: string, o: LoopAttachOptions = {}): LoopDevice { return runSync(attachSteps(file, o)); },

  /** Detaches; on an open device the kernel only sets autoclear and detaches at last close. */
  detach(device: string): Promise<void> { return runAsync(detachSteps(device)); },
  /** The sync twin of detach(). */
  detachSync(device: string): void { runSync(detachSteps(device)); },

  /** The device's binding; ENXIO if nothing is bound to it. */
  status(device: string): Promise<LoopStatus> { return runAsync(statusSteps(device)); },
  /** The sync twin of status(). */
  statusSync(device: string): LoopStatus { return runSync(statusSteps(device)); },

  /** Re-reads the backing file's size (after it grew). */
  setCapacity(device: string): Promise<void> { return runAsync(setCapacitySteps(device)); },
  /** The sync twin of setCapacity(). */
  setCapacitySync(device: string): void { runSync(setCapacitySteps(device)); },

  /** The loop devices bound to a file now, from sysfs. */
  list(): {
    /** /dev/loopN. */
    path: string;
    /** N. */
    number: number;
    /** Full path of the backing file. */
    backingFile: string;
  }[] { return listBound(); },


  /** The loop devices backed by this file (same inode on the same filesystem). */
  find(file: string): Promise<string[]> { return runAsync(findSteps(file)); },
  /** The sync twin of find(). */
  findSync(file: string): string[] { return runSync(findSteps(file)); },
};
