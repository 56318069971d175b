// Loop devices: attach a file (LOOP_CONFIGURE, or SET_FD + SET_STATUS64 on kernels before 5.8), detach,
// status, list, find the loop of a file, set capacity. The GET_FREE race is handled natively (bounded).
import fs from 'node:fs';
import path from 'node:path';
import { dmError } from '../core/errors';
import { K, native, RawLoopAttachResult, RawLoopStatus } from '../core/binding';
import { Bytes } from '../core/units';
import { checkInteger } from '../core/validate';

export interface LoopAttachOptions {
  readOnly?: boolean;
  /** Detach when the last user (say, a dm table) closes it. */
  autoclear?: boolean;
  directIo?: boolean;
  partscan?: boolean;
  offset?: Bytes | number;
  /** Bytes of the file to expose; 0 or absent = to its end. */
  sizeLimit?: Bytes | number;
  /** Logical block size: 512, 1024, 2048 or 4096. */
  blockSize?: number;
  /**
   * How to bind: 'configure' (LOOP_CONFIGURE, one ioctl; the default, and where the kernel lacks it, before
   * 5.8, 'set-fd' is used instead) or 'set-fd' (LOOP_SET_FD, then LOOP_SET_STATUS64 and the rest).
   */
  method?: 'configure' | 'set-fd';
}

export interface LoopDevice {
  path: string;
  number: number;
  /** How it was bound: 'set-fd' when asked for, or when the kernel has no LOOP_CONFIGURE. */
  method: 'configure' | 'set-fd';
  /**
   * An autoclear device detaches at its last close, so attach() returns it held open: call release() once
   * something else (a dm table) holds it, or to let it go. A no-op for devices without autoclear.
   */
  release(): void;
}

class AttachedLoop implements LoopDevice {
  readonly path: string;
  constructor(readonly number: number, readonly method: LoopDevice['method'], private fd: number) { this.path = devPath(number); }
  release(): void {
    if (this.fd >= 0) native.closeFd(this.fd);
    this.fd = -1;
  }
}

export interface LoopStatus {
  path: string;
  number: number;
  /** Full path of the backing file, from sysfs (the ioctl keeps only 63 bytes of it). */
  backingFile: string;
  backingDev: number;
  backingInode: number;
  offset: Bytes;
  sizeLimit: Bytes;
  readOnly: boolean;
  autoclear: boolean;
  directIo: boolean;
  partscan: boolean;
}

function checkOptions(o: LoopAttachOptions) {
  if (o.blockSize !== undefined && ![512, 1024, 2048, 4096].includes(o.blockSize))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `loop block size must be 512, 1024, 2048 or 4096, got ${o.blockSize}`);
  if (o.method !== undefined && o.method !== 'configure' && o.method !== 'set-fd')
    throw dmError('ERR_DM_INVALID_ARGUMENT', `loop attach method must be 'configure' or 'set-fd', got ${String(o.method)}`);
  return {
    readOnly: !!o.readOnly, autoclear: !!o.autoclear, directIo: !!o.directIo, partscan: !!o.partscan,
    offset: checkInteger(o.offset ?? 0, 'offset'), sizeLimit: checkInteger(o.sizeLimit ?? 0, 'sizeLimit'),
    blockSize: o.blockSize ?? 0, keepOpen: !!o.autoclear, legacy: o.method === 'set-fd',
  };
}

function checkFile(file: string): string {
  if (typeof file !== 'string' || file.length === 0) throw dmError('ERR_DM_INVALID_ARGUMENT', 'a backing file path is needed');
  return path.resolve(file);
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

function checkDevice(device: string): string {
  if (typeof device !== 'string' || !/^\/dev\/loop\d+$/.test(device))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `'${String(device)}' is not a loop device path (/dev/loopN)`);
  return device;
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

export const Loop = {
  async attach(file: string, o: LoopAttachOptions = {}): Promise<LoopDevice> {
    return attached(await native.loopAttachAsync(checkFile(file), checkOptions(o)));
  },
  attachSync(file: string, o: LoopAttachOptions = {}): LoopDevice {
    return attached(native.loopAttach(checkFile(file), checkOptions(o)));
  },
  /** Detaches; on an open device the kernel only sets autoclear and detaches at last close. */
  detach(device: string): Promise<void> { return native.loopDetachAsync(checkDevice(device)); },
  detachSync(device: string): void { native.loopDetach(checkDevice(device)); },

  async status(device: string): Promise<LoopStatus> { return toStatus(device, await native.loopStatusAsync(checkDevice(device))); },
  statusSync(device: string): LoopStatus { return toStatus(device, native.loopStatus(checkDevice(device))); },

  /** Re-reads the backing file's size (after it grew). */
  setCapacity(device: string): Promise<void> { return native.loopSetCapacityAsync(checkDevice(device)); },
  setCapacitySync(device: string): void { native.loopSetCapacity(checkDevice(device)); },

  list: listBound,

  /** The loop devices backed by this file (same inode on the same filesystem). */
  async find(file: string): Promise<string[]> {
    const st = await fs.promises.stat(checkFile(file));
    const found: string[] = [];
    for (const l of listBound()) {
      const s = await native.loopStatusAsync(l.path).catch(() => undefined);
      if (s && matchesFile(st, s)) found.push(l.path);
    }
    return found;
  },
  findSync(file: string): string[] {
    const st = fs.statSync(checkFile(file));
    return listBound().filter((l) => {
      try { return matchesFile(st, native.loopStatus(l.path)); } catch { return false; }
    }).map((l) => l.path);
  },
};
