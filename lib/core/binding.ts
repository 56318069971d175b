// The raw native surface, declared once. The addon is loaded here and nowhere else; everything in lib/ that
// touches the kernel goes through `native`.
import path from 'node:path';

/** A block device's number, as the kernel's dev_t splits it. */
export interface DevNumber {
  /** The driver's number (device-mapper's own, loop's 7). */
  major: number;
  /** The device's number within its driver. */
  minor: number;
}

/** One line of a table as the kernel takes and gives it: all in sectors, params unparsed. */
export interface RawTarget {
  /** First sector of the device this line maps. */
  start: number;
  /** Sectors this line maps. */
  length: number;
  /** The target type ('thin-pool', 'linear', ...). */
  type: string;
  /** The target's parameter string. */
  params: string;
}

/** What one DM ioctl is sent, before marshal.ts packs it into a struct dm_ioctl (raw binding layer). */
export interface RawDmRequest {
  /** The device's name. */
  name?: string;
  /** The device's dm uuid. */
  uuid?: string;
  /** The device's number, where name and uuid are not given. */
  dev?: DevNumber;
  /** DM_*_FLAG bits of struct dm_ioctl. */
  flags?: number;
  /** The event number DM_DEV_WAIT waits past. */
  eventNr?: number;
  /** The table DM_TABLE_LOAD loads. */
  targets?: RawTarget[];
  /** DM_TARGET_MSG: the sector that picks the target, and the message. */
  message?: {
    /** A sector of the target the message is for. */
    sector: number;
    /** The message, as dmsetup message takes it. */
    text: string;
  };
  /** String payload: the new name or uuid for DM_DEV_RENAME, a geometry for DM_DEV_SET_GEOMETRY. */
  data?: string;
  /** K.DM_NODE_MAKE / K.DM_NODE_REMOVE: the addon makes or removes `/dev/mapper/<name>` right after the ioctl. */
  node?: number;
}

/** A DM ioctl's answer: struct dm_ioctl's fields and the payload that follows it (raw binding layer). */
export interface RawDmResponse {
  /** The kernel's DM interface version. */
  version: [number, number, number];
  /** DM_*_FLAG bits the kernel set (suspended, read-only, active/inactive table present, ...). */
  flags: number;
  /** How many openers the device has. */
  openCount: number;
  /** The device's event counter. */
  eventNr: number;
  /** Lines in the table reported. */
  targetCount: number;
  /** The device's number. */
  dev: DevNumber;
  /** The device's name. */
  name: string;
  /** The device's dm uuid ('' when it has none). */
  uuid: string;
  /** Size of the buffer the answer came back in, in bytes. */
  bufferSize: number;
  /** Table or status lines (DM_TABLE_STATUS). */
  targets?: RawTarget[];
  /** The devices this one maps onto (DM_TABLE_DEPS). */
  deps?: DevNumber[];
  /** Every dm device (DM_LIST_DEVICES). */
  devices: RawDmDevice[];
  /** Loaded target types and their versions (DM_LIST_VERSIONS). */
  versions?: RawTargetVersion[];
  /** A target message's reply. */
  output?: string;
}

/** A device in DM_LIST_DEVICES's reply. */
export interface RawDmDevice {
  /** Its name. */
  name: string;
  /** Its number. */
  dev: DevNumber;
  /** Its event counter, on kernels that report it. */
  eventNr?: number;
  /** Its dm uuid, on kernels that report it. */
  uuid?: string;
}

/** A target type in DM_LIST_VERSIONS's reply. */
export interface RawTargetVersion {
  /** The target type. */
  name: string;
  /** Its version. */
  version: [number, number, number];
}

/** The strings and payload of a reply ("name\0uuid" alone when the command returns no payload); see marshal.ts. */
export interface RawDmPayload {
  /** "name\0uuid" of the device answered about. */
  key: string;
  /** As {@link RawDmResponse.targets}. */
  targets?: RawTarget[];
  /** As {@link RawDmResponse.deps}. */
  deps?: DevNumber[];
  /** As {@link RawDmResponse.devices}. */
  devices?: RawDmDevice[];
  /** As {@link RawDmResponse.versions}. */
  versions?: RawTargetVersion[];
  /** As {@link RawDmResponse.output}. */
  output?: string;
}
type RawDmReply = string | RawDmPayload;
/** One ioctl of {@link DmBinding}'s dmSeq: [cmd, head, name, uuid, data, targets], as dm() takes them. */
export type RawDmStep = [cmd: number, head: Float64Array, name?: string, uuid?: string, data?: string, targets?: (number | string)[]];
/** What dmSeq did: a reply per ioctl that succeeded, and the error of the one that stopped it. */
export interface RawDmSeqResult {
  /** One reply per step done, in order. */
  replies: RawDmReply[];
  /** The failure that stopped the sequence, if one did. */
  error?: Error;
}

/** What the addon hands the error factory; lib/core/errors.ts turns it into a DevmapperError. */
export interface RawSysError {
  /** The errno the call failed with. */
  errno: number;
  /** The system call ('ioctl', 'open', ...). */
  syscall: string;
  /** The command it ran (a DM or loop ioctl's name). */
  command: string;
  /** What it ran on: a device name or path. */
  target: string;
  /** The addon's words on what went wrong. */
  detail: string;
  /** strerror(errno). */
  strerror: string;
  /** Metadata verification failures: the block that failed and the check. */
  block?: number;
  /** Which check failed (checksum, block number, ...). */
  check?: string;
}

/** How the metadata reader reads: through block 0, or through the held metadata snapshot (its root checked). */
export interface RawMetadataView {
  /** Read through the held metadata snapshot instead of the live superblock. */
  held?: boolean;
  /** The held snapshot's block, which the superblock must still name. */
  heldRoot?: number;
  /** Open the metadata device O_EXCL (no pool active on it). */
  exclusive?: boolean;
}

/** A thin-pool metadata superblock's fields, as the addon read them. */
export interface RawSuperblock {
  /** The block it was read from (0 live, else the held snapshot's). */
  location: number;
  /** The metadata format version. */
  version: number;
  /** Superblock flags (bit 0: needs_check). */
  flags: number;
  /** The pool's snapshot clock. */
  time: number;
  /** The pool's transaction id. */
  transactionId: number;
  /** The held metadata snapshot's block, 0 when none is held. */
  heldRoot: number;
  /** Data blocks in the pool. */
  dataBlocks: number;
  /** Data blocks mapped. */
  dataBlocksUsed: number;
  /** Metadata blocks (4 KiB each). */
  metadataBlocks: number;
  /** Metadata blocks in use. */
  metadataBlocksUsed: number;
  /** The data block size, in sectors. */
  dataBlockSize: number;
  /** Metadata blocks when the metadata was formatted. */
  formattedMetadataBlocks: number;
  /** Compatible feature flags. */
  compatFlags: number;
  /** Read-only-compatible feature flags. */
  compatRoFlags: number;
}

/** The device facts in columns, ascending id; mapped/exclusive/highest only when usage was asked for. */
export interface RawMetadataReport {
  /** The superblock at block 0. */
  live: RawSuperblock;
  /** The superblock of the view read (the live one, or the held snapshot's). */
  view: RawSuperblock;
  /** Size of the metadata device, in 4 KiB blocks. */
  deviceBlocks: number;
  /** Thin ids. */
  ids: Float64Array;
  /** Data blocks each device maps, by its own count. */
  mappedBlocks: Float64Array;
  /** The pool's transaction id when each device was created. */
  transactionIds: Float64Array;
  /** The snapshot clock when each device was made. */
  creationTimes: Uint32Array;
  /** The snapshot clock when each device was last snapshotted. */
  snapshottedTimes: Uint32Array;
  /** Data blocks each device maps, counted by walking its tree. */
  mapped?: Float64Array;
  /** Data blocks each device alone maps. */
  exclusive?: Float64Array;
  /** Each device's highest mapped virtual block, -1 when it maps none. */
  highest?: Float64Array;
}

/** The full metadata check, then needs_check cleared if it was set (the superblock as checked: before). */
export interface RawNeedsCheckRepair { wasSet: boolean; live: RawSuperblock; devices: number }

/** A step of a diff of two thin devices' mappings, from virtual block `from` on. */
export interface RawDiffArgs {
  /** The left thin id. */
  a: number;
  /** The right thin id. */
  b: number;
  /** The virtual block to resume at (0 first, then the last chunk's next). */
  from: number;
  /** Stop after this many ranges. */
  maxRanges?: number;
  /** Stop after reading this many mappings. */
  maxMappings?: number;
}
/** `ranges`: (kind 0 left only | 1 right only | 2 different, begin, length) triples. */
export interface RawDiffChunk {
  /** (kind, begin, length) triples, in data blocks. */
  ranges: Float64Array;
  /** The diff reached the end of both devices. */
  done: boolean;
  /** The `from` of the next chunk. */
  next: number;
  /** The pool's data block size in sectors, from the superblock of the view read. */
  dataBlockSize: number;
}

/** A call on a thread of its own; cancel(reason) ends it: `timeout <ms>`, 'abort' or 'close' become ERR_DM_TIMEOUT, ERR_DM_ABORTED, ERR_DM_CLOSED. */
export interface Cancellable<T> {
  /** Settles with the call's result, or rejects once cancelled. */
  promise: Promise<T>;
  /** Interrupts the call; false if it had already ended. */
  cancel(reason?: string): boolean;
}


export interface RawLoopAttachOptions {
  readOnly?: boolean; autoclear?: boolean; directIo?: boolean; partscan?: boolean;
  offset?: number; sizeLimit?: number; blockSize?: number; keepOpen?: boolean;
  /** SET_FD + SET_STATUS64 even where LOOP_CONFIGURE exists. */
  legacy?: boolean;
}
export interface RawLoopAttachResult { number: number; attempts: number; usedConfigure: boolean; fd: number }
export interface RawLoopStatus {
  backingDev: number; backingInode: number; offset: number; sizeLimit: number;
  number: number; flags: number; fileName: string;
}

/** LMDB through the addon (native/kv_store.cc), for the registry: string keys and values, synchronous but for applyAsync. */
export interface KvStore {
  /** Opens the one write transaction; every call until commit() or abort() reads and writes in it. */
  begin(): void;
  commit(): void;
  abort(): void;
  get(key: string): string | undefined;
  put(key: string, value: string): void;
  /** Whether the key was there. */
  del(key: string): boolean;
  /** The [key, value] pairs (keysOnly: the keys) whose key starts with prefix, in key order, at most limit. */
  range(prefix: string, limit?: number): [string, string][];
  range(prefix: string, limit: number | undefined, keysOnly: true): string[];
  count(prefix: string): number;
  close(): void;
  /** The id of the last commit of any process. */
  lastTxn(): number;
  /**
   * One durable write transaction on the libuv pool: values[i] put under keys[i] (null: deleted), if no commit
   * landed since `base` (lastTxn() when the batch was worked out); resolves whether it was written.
   */
  applyAsync(base: number, keys: string[], values: (string | null)[]): Promise<boolean>;
}

type SyncAsync<A extends unknown[], R, N extends string> =
  { [K in N]: (...args: A) => R } & { [K in `${N}Async`]: (...args: A) => Promise<R> };

export type NativeAddon = {
  constants: Record<string, number>;
  /** new KvStore(file): opens (creating) an LMDB file; its lock file is file + "-lock". A file in lmdb-js's
   *  format is migrated to upstream LMDB's first (native/kv_migrate.h). */
  KvStore: new (file: string) => KvStore;
  /** "/dev/mapper": where named dm nodes live. */
  mapperDir: string;
  setErrorFactory(factory: (raw: RawSysError) => Error): void;
  openControl(): number;
  closeFd(fd: number): void;
  /** DM ioctls and the nanoseconds spent inside them, counted from the first call on (benchmarks; off until then). */
  dmIoctlStats(): { count: number; nanos: number };
  /** One DM ioctl: numbers in `head` (DM_HEAD_* slots, written back), strings positional, targets flat.
   *  Returns null when it failed with head's expected errno. Called only through marshal.ts. */
  dm(fd: number, cmd: number, head: Float64Array, name?: string, uuid?: string, data?: string, targets?: (number | string)[]): RawDmReply | null;
  dmAsync(fd: number, cmd: number, head: Float64Array, name?: string, uuid?: string, data?: string, targets?: (number | string)[]): Promise<RawDmReply | null>;
  /** Several ioctls in order, in one call (one trip off the main thread for the promise); stops at the first
   *  failure. Each step is [cmd, head, name, uuid, data, targets]. */
  dmSeq(fd: number, steps: RawDmStep[]): RawDmSeqResult;
  dmSeqAsync(fd: number, steps: RawDmStep[]): Promise<RawDmSeqResult>;
  /** DM_DEV_WAIT on a thread of its own; cancel() makes the promise reject with ECANCELED. */
  dmWait(fd: number, cmd: number, head: Float64Array, name?: string, uuid?: string): Cancellable<RawDmReply | null>;
  /** A DM command on a thread of its own for a sync caller, interrupted after timeoutMs (ECANCELED). */
  dmTimed(fd: number, cmd: number, head: Float64Array, name: string | undefined, uuid: string | undefined, data: undefined, targets: undefined,
    timeoutMs: number): RawDmReply | null;
  /** poll(POLLIN) on a control fd on a thread of its own: true on an event, false on timeout. */
  pollControl(fd: number, timeoutMs: number): Cancellable<boolean>;
  /** flock(LOCK_EX) on a lock file; returns the fd that holds it (close it to release). */
  lockFile(path: string): number;
  /** The lock without waiting: its fd, or -1 if another process holds it. */
  tryLockFile(path: string): number;
  lockFileAsync(path: string): Cancellable<number>;
} & SyncAsync<[file: string, opts: RawLoopAttachOptions], RawLoopAttachResult, 'loopAttach'>
  & SyncAsync<[device: string], void, 'loopDetach'>
  & SyncAsync<[device: string], RawLoopStatus, 'loopStatus'>
  & SyncAsync<[device: string], void, 'loopSetCapacity'>
  & SyncAsync<[device: string], number, 'blockSize'>
  & SyncAsync<[device: string, range: { offset: number; length: number }], void, 'blockDiscard'>
  & SyncAsync<[device: string], void, 'blockFlush'>
  & SyncAsync<[path: string], DevNumber, 'deviceNumber'>
  & SyncAsync<[path: string, node: { major: number; minor: number; mode?: number }], boolean, 'ensureBlockNode'>
  & SyncAsync<[path: string, view: RawMetadataView, usage: boolean], RawMetadataReport, 'metadataRead'>
  & SyncAsync<[path: string, view: RawMetadataView, args: RawDiffArgs], RawDiffChunk, 'metadataDiff'>
  & SyncAsync<[path: string], RawNeedsCheckRepair, 'metadataClearNeedsCheck'>;

/**
 * The part of the addon a DeviceMapper uses: the DM ioctls and the control fd. The real addon by default; a
 * scripted one (DeviceMapperOptions.binding) lets request building and recovery decisions be tested without
 * a kernel, as @serialport/bindings-cpp does.
 */
export type DmBinding = Pick<NativeAddon, 'openControl' | 'closeFd' | 'dm' | 'dmAsync' | 'dmSeq' | 'dmSeqAsync' | 'dmWait' | 'pollControl'>
  & Partial<Pick<NativeAddon, 'dmTimed'>>;

// The package root is three levels above dist/lib/core. node-gyp-build looks in a folder that
// DEVMAPPER_PREBUILD names instead, when that is set (its own <NAME>_PREBUILD rule): test/sanitize.sh points it
// at the sanitizer build of the addon.
// eslint-disable-next-line @typescript-eslint/no-var-requires
export const native: NativeAddon = require('node-gyp-build')(path.join(__dirname, '..', '..', '..'));
// A copy: the addon's object is in dictionary mode, and K.* is read on every call.
export const K: Record<string, number> = { ...native.constants };
