// The types of the DM command API: what DeviceMapper takes and returns. Targets and the thin layer depend on
// these, not on the DeviceMapper class.
import type { DevNumber, DmBinding } from '../core/binding';
import type { Sectors } from '../core/units';

/** Who makes /dev/mapper/<name>: 'auto' (us unless udev runs), 'manage' (us), 'udev', 'none'. */
export type NodePolicy = 'auto' | 'manage' | 'udev' | 'none';

/** A device by name (a string), or by uuid or device number. */
export type DeviceRef = string | { name: string } | { uuid: string } | { dev: DevNumber };

export interface Target {
  start: Sectors;
  length: Sectors;
  type: string;
  params: string;
}

export interface DeviceInfo {
  name: string;
  uuid: string;
  dev: DevNumber;
  openCount: number;
  eventNr: number;
  targetCount: number;
  suspended: boolean;
  readOnly: boolean;
  /** A live table is loaded. */
  liveTable: boolean;
  /** A table is loaded but not yet made live by resume. */
  inactiveTable: boolean;
  /** A deferred remove is scheduled (remove at last close). */
  deferredRemove: boolean;
  internalSuspend: boolean;
}

export interface DeviceListEntry {
  name: string;
  dev: DevNumber;
  /** Present on kernels >= 4.38 (dm interface). */
  eventNr?: number;
  /** Present when asked for and set. */
  uuid?: string;
}

export interface KernelVersion { major: number; minor: number; patch: number }
export interface TargetVersion { name: string; version: KernelVersion }

export interface CreateOptions { uuid?: string; readOnly?: boolean; /** Persistent minor number. */ minor?: number }
export interface LoadOptions { readOnly?: boolean; secure?: boolean }
export interface SuspendOptions {
  noflush?: boolean;
  skipLockfs?: boolean;
  /** Give up after this long (ERR_DM_TIMEOUT): the kernel undoes the suspend. Not in a batch. */
  timeoutMs?: number;
}
export interface RemoveOptions { deferred?: boolean }
export interface QueryOptions { inactive?: boolean; noflush?: boolean }
/** inactive and noflush as for status(): noflush keeps a thin-pool from committing its metadata for the status the wait returns. */
export interface WaitOptions extends QueryOptions { timeoutMs?: number; signal?: AbortSignal }
export interface MessageOptions { secure?: boolean }
export interface Geometry { cylinders: number; heads: number; sectors: number; start: number }
export interface DeviceMapperOptions {
  /** Who makes /dev/mapper/<name>: 'auto' (us unless udev runs), 'manage' (us), 'udev', 'none'. */
  nodes?: NodePolicy;
  /** How long to wait for udev to make a node before making it ourselves. */
  udevTimeoutMs?: number;
  /** The native calls to make: the addon by default; a scripted one for tests without a kernel. */
  binding?: DmBinding;
}
export interface WaitResult { info: DeviceInfo; status: Target[] }

/**
 * Commands queued by `dm.batch()`, sent in order in one native call: one trip off the main thread for all of
 * them. Each method checks its arguments at once (bad input throws before anything is sent) and returns the
 * batch; `run()` resolves with each command's result, in order. The batch stops at the first command that
 * fails: that error rejects, with `completed`, how many commands before it ran (nothing is undone). A batch
 * is sent once.
 */
export interface DmBatch<R extends unknown[] = []> {
  create(name: string, o?: CreateOptions): DmBatch<[...R, DeviceInfo]>;
  /** By name: a batch has no step to look a name up. */
  remove(name: string, o?: RemoveOptions): DmBatch<[...R, DeviceInfo]>;
  rename(name: string, newName: string): DmBatch<[...R, DeviceInfo]>;
  suspend(ref: DeviceRef, o?: SuspendOptions): DmBatch<[...R, DeviceInfo]>;
  resume(ref: DeviceRef): DmBatch<[...R, DeviceInfo]>;
  info(ref: DeviceRef): DmBatch<[...R, DeviceInfo]>;
  load(ref: DeviceRef, targets: readonly Target[], o?: LoadOptions): DmBatch<[...R, DeviceInfo]>;
  clear(ref: DeviceRef): DmBatch<[...R, DeviceInfo]>;
  deps(ref: DeviceRef, o?: QueryOptions): DmBatch<[...R, DevNumber[]]>;
  status(ref: DeviceRef, o?: QueryOptions): DmBatch<[...R, Target[]]>;
  table(ref: DeviceRef, o?: QueryOptions): DmBatch<[...R, Target[]]>;
  message(ref: DeviceRef, sector: number, text: string, o?: MessageOptions): DmBatch<[...R, string | undefined]>;
  /** How many commands are queued. */
  readonly length: number;
  run(): Promise<R>;
  runSync(): R;
}

