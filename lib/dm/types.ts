// The types of the DM command API: what DeviceMapper takes and returns. Targets and the thin layer depend on
// these, not on the DeviceMapper class.
import type { DevNumber, DmBinding } from '../core/binding';
import type { Sectors } from '../core/units';

/** Who makes `/dev/mapper/<name>`: 'auto' (us unless udev runs), 'manage' (us), 'udev', 'none'. */
export type NodePolicy = 'auto' | 'manage' | 'udev' | 'none';

/** A device by name (a string), or by uuid or device number. */
export type DeviceRef = string | {
  /** The device's name. */
  name: string;
} | {
  /** The device's dm uuid. */
  uuid: string;
} | {
  /** The device's number. */
  dev: DevNumber;
};

/** One line of a table (or of a status): the sectors it maps and its target type and parameters. */
export interface Target {
  /** First sector this line maps; each line starts where the one before ends, the first at 0. */
  start: Sectors;
  /** How many sectors it maps (> 0). */
  length: Sectors;
  /** The target type: 'linear', 'thin-pool', ... (the targets namespace builds them). */
  type: string;
  /** Its parameters (a status line's text, for a status), one line. */
  params: string;
}

/** A device's state, as every command on one device reports it. */
export interface DeviceInfo {
  /** The device's name (`/dev/mapper/<name>`). */
  name: string;
  /** Its dm uuid, '' when it has none. */
  uuid: string;
  /** Its device number. */
  dev: DevNumber;
  /** How many times it is open. */
  openCount: number;
  /** Its event counter (see {@link DeviceMapper.wait}). */
  eventNr: number;
  /** Lines in its table. */
  targetCount: number;
  /** It is suspended: I/O to it waits. */
  suspended: boolean;
  /** It is read-only. */
  readOnly: boolean;
  /** A live table is loaded. */
  liveTable: boolean;
  /** A table is loaded but not yet made live by resume. */
  inactiveTable: boolean;
  /** A deferred remove is scheduled (remove at last close). */
  deferredRemove: boolean;
  /** The kernel suspended it on behalf of another device (a thin device while its pool is suspended). */
  internalSuspend: boolean;
}

/** A device as {@link DeviceMapper.list} reports it. */
export interface DeviceListEntry {
  /** Its name. */
  name: string;
  /** Its device number. */
  dev: DevNumber;
  /** Present on kernels >= 4.38 (dm interface). */
  eventNr?: number;
  /** Present when asked for and set. */
  uuid?: string;
}

/** A three-part version: the dm interface's, or a target type's. */
export interface KernelVersion {
  /** Major version. */
  major: number;
  /** Minor version: what the library checks features against (dm 4.x). */
  minor: number;
  /** Patch level. */
  patch: number;
}
/** A loaded target type and its version. */
export interface TargetVersion {
  /** The target type ('thin-pool', ...). */
  name: string;
  /** Its version. */
  version: KernelVersion;
}

/** Options of {@link DeviceMapper.create}. */
export interface CreateOptions {
  /** The dm uuid to give the device (checked: ERR_DM_INVALID_UUID). */
  uuid?: string;
  /** Create it read-only. */
  readOnly?: boolean;
  /** Persistent minor number. */
  minor?: number;
}
/** Options of {@link DeviceMapper.load}. */
export interface LoadOptions {
  /** Load the table read-only. */
  readOnly?: boolean;
  /** Ask the kernel to wipe the ioctl buffer that carried the table (DM_SECURE_DATA_FLAG): for tables holding keys. */
  secure?: boolean;
}
/** Options of {@link DeviceMapper.suspend}. */
export interface SuspendOptions {
  /** Do not flush I/O the device holds back (DM_NOFLUSH_FLAG): a thin-pool keeps it queued. */
  noflush?: boolean;
  /** Do not freeze a filesystem mounted on the device (DM_SKIP_LOCKFS_FLAG). */
  skipLockfs?: boolean;
  /** Give up after this long (ERR_DM_TIMEOUT): the kernel undoes the suspend. Not in a batch. */
  timeoutMs?: number;
}
/** Options of {@link DeviceMapper.remove} and {@link DeviceMapper.removeAll}. */
export interface RemoveOptions {
  /** A device that is open is removed at its last close instead of failing with EBUSY. */
  deferred?: boolean;
}
/** Options of the commands that read a table or status: deps, status, table. */
export interface QueryOptions {
  /** Ask about the inactive (loaded, not yet resumed) table instead of the live one. */
  inactive?: boolean;
  /** status: do not let a thin-pool commit its metadata for this status. */
  noflush?: boolean;
}
/** inactive and noflush as for status(): noflush keeps a thin-pool from committing its metadata for the status the wait returns. */
export interface WaitOptions extends QueryOptions {
  /** Give up after this long (ERR_DM_TIMEOUT). */
  timeoutMs?: number;
  /** Aborting it ends the wait (ERR_DM_ABORTED). */
  signal?: AbortSignal;
}
/** Options of {@link DeviceMapper.message}. */
export interface MessageOptions {
  /** Ask the kernel to wipe the ioctl buffer that carried the message (DM_SECURE_DATA_FLAG). */
  secure?: boolean;
}
/** A device's CHS geometry, as {@link DeviceMapper.setGeometry} sets it for BIOS-era partitioning tools. */
export interface Geometry {
  /** 0..65535. */
  cylinders: number;
  /** 0..255. */
  heads: number;
  /** Sectors per track, 0..255. */
  sectors: number;
  /** The start sector, at most cylinders * heads * sectors. */
  start: number;
}
/** Options of the {@link DeviceMapper} constructor. */
export interface DeviceMapperOptions {
  /** Who makes `/dev/mapper/<name>`: 'auto' (us unless udev runs), 'manage' (us), 'udev', 'none'. */
  nodes?: NodePolicy;
  /** How long to wait for udev to make a node before making it ourselves. */
  udevTimeoutMs?: number;
  /** The native calls to make: the addon by default; a scripted one for tests without a kernel. */
  binding?: DmBinding;
}
/** What {@link DeviceMapper.wait} resolves with: the device's state after the event. */
export interface WaitResult {
  /** Its info, with the new eventNr. */
  info: DeviceInfo;
  /** Its status lines. */
  status: Target[];
}

/**
 * Commands queued by `dm.batch()`, sent in order in one native call: one trip off the main thread for all of
 * them. Each method checks its arguments at once (bad input throws before anything is sent) and returns the
 * batch; `run()` resolves with each command's result, in order. The batch stops at the first command that
 * fails: that error rejects, with `completed`, how many commands before it ran (nothing is undone). A batch
 * is sent once.
 */
export interface DmBatch<R extends unknown[] = []> {
  /** Queues {@link DeviceMapper.create}. */
  create(name: string, o?: CreateOptions): DmBatch<[...R, DeviceInfo]>;
  /** By name: a batch has no step to look a name up. */
  remove(name: string, o?: RemoveOptions): DmBatch<[...R, DeviceInfo]>;
  /** Queues {@link DeviceMapper.rename}; by name, as remove. */
  rename(name: string, newName: string): DmBatch<[...R, DeviceInfo]>;
  /** Queues {@link DeviceMapper.suspend}; without timeoutMs (ERR_DM_INVALID_ARGUMENT): it would run on the batch's thread. */
  suspend(ref: DeviceRef, o?: SuspendOptions): DmBatch<[...R, DeviceInfo]>;
  /** Queues {@link DeviceMapper.resume}. */
  resume(ref: DeviceRef): DmBatch<[...R, DeviceInfo]>;
  /** Queues {@link DeviceMapper.info}. */
  info(ref: DeviceRef): DmBatch<[...R, DeviceInfo]>;
  /** Queues {@link DeviceMapper.load}. */
  load(ref: DeviceRef, targets: readonly Target[], o?: LoadOptions): DmBatch<[...R, DeviceInfo]>;
  /** Queues {@link DeviceMapper.clear}. */
  clear(ref: DeviceRef): DmBatch<[...R, DeviceInfo]>;
  /** Queues {@link DeviceMapper.deps}. */
  deps(ref: DeviceRef, o?: QueryOptions): DmBatch<[...R, DevNumber[]]>;
  /** Queues {@link DeviceMapper.status}. */
  status(ref: DeviceRef, o?: QueryOptions): DmBatch<[...R, Target[]]>;
  /** Queues {@link DeviceMapper.table}. */
  table(ref: DeviceRef, o?: QueryOptions): DmBatch<[...R, Target[]]>;
  /** Queues {@link DeviceMapper.message}. */
  message(ref: DeviceRef, sector: number, text: string, o?: MessageOptions): DmBatch<[...R, string | undefined]>;
  /** How many commands are queued. */
  readonly length: number;
  /** Sends the batch; resolves with each command's result, in order. A second send throws ERR_DM_INVALID_ARGUMENT. */
  run(): Promise<R>;
  /** The sync twin of run(). */
  runSync(): R;
}


