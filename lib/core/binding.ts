// The raw native surface, declared once. The addon is loaded here and nowhere else; everything in lib/ that
// touches the kernel goes through `native`.
import path from 'node:path';

export interface DevNumber { major: number; minor: number }

export interface RawTarget { start: number; length: number; type: string; params: string }

export interface RawDmRequest {
  name?: string;
  uuid?: string;
  dev?: DevNumber;
  flags?: number;
  eventNr?: number;
  targets?: RawTarget[];
  message?: { sector: number; text: string };
  data?: string;
  /** K.DM_NODE_MAKE / K.DM_NODE_REMOVE: the addon makes or removes /dev/mapper/<name> right after the ioctl. */
  node?: number;
}

export interface RawDmResponse {
  version: [number, number, number];
  flags: number;
  openCount: number;
  eventNr: number;
  targetCount: number;
  dev: DevNumber;
  name: string;
  uuid: string;
  bufferSize: number;
  targets?: RawTarget[];
  deps?: DevNumber[];
  devices: { name: string; dev: DevNumber; eventNr?: number; uuid?: string }[];
  versions?: { name: string; version: [number, number, number] }[];
  output?: string;
}

/** The strings and payload of a reply ("name\0uuid" alone when the command returns no payload); see marshal.ts. */
export interface RawDmPayload {
  key: string;
  targets?: RawTarget[];
  deps?: DevNumber[];
  devices?: { name: string; dev: DevNumber; eventNr?: number; uuid?: string }[];
  versions?: { name: string; version: [number, number, number] }[];
  output?: string;
}
type RawDmReply = string | RawDmPayload;
export type RawDmStep = [cmd: number, head: Float64Array, name?: string, uuid?: string, data?: string, targets?: (number | string)[]];
export interface RawDmSeqResult { replies: RawDmReply[]; error?: Error }

/** What the addon hands the error factory; lib/core/errors.ts turns it into a DevmapperError. */
export interface RawSysError {
  errno: number;
  syscall: string;
  command: string;
  target: string;
  detail: string;
  strerror: string;
  /** Metadata verification failures: the block that failed and the check. */
  block?: number;
  check?: string;
}

/** How the metadata reader reads: through block 0, or through the held metadata snapshot (its root checked). */
export interface RawMetadataView { held?: boolean; heldRoot?: number; exclusive?: boolean }

export interface RawSuperblock {
  location: number;
  version: number;
  flags: number;
  time: number;
  transactionId: number;
  heldRoot: number;
  dataBlocks: number;
  dataBlocksUsed: number;
  metadataBlocks: number;
  metadataBlocksUsed: number;
  dataBlockSize: number;
  formattedMetadataBlocks: number;
  compatFlags: number;
  compatRoFlags: number;
}

/** The device facts in columns, ascending id; mapped/exclusive/highest only when usage was asked for. */
export interface RawMetadataReport {
  live: RawSuperblock;
  view: RawSuperblock;
  deviceBlocks: number;
  ids: Float64Array;
  mappedBlocks: Float64Array;
  transactionIds: Float64Array;
  creationTimes: Uint32Array;
  snapshottedTimes: Uint32Array;
  mapped?: Float64Array;
  exclusive?: Float64Array;
  highest?: Float64Array;
}

/** The full metadata check, then needs_check cleared if it was set (the superblock as checked: before). */
export interface RawNeedsCheckRepair { wasSet: boolean; live: RawSuperblock; devices: number }

export interface RawDiffArgs { a: number; b: number; from: number; maxRanges?: number; maxMappings?: number }
/** `ranges`: (kind 0 left only | 1 right only | 2 different, begin, length) triples. */
export interface RawDiffChunk {
  ranges: Float64Array; done: boolean; next: number;
  /** The pool's data block size in sectors, from the superblock of the view read. */
  dataBlockSize: number;
}

/** A call on a thread of its own; cancel(reason) ends it: 'timeout <ms>', 'abort' or 'close' become ERR_DM_TIMEOUT, ERR_DM_ABORTED, ERR_DM_CLOSED. */
export interface Cancellable<T> { promise: Promise<T>; cancel(reason?: string): boolean }

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

/** LMDB through the addon (native/kv_store.cc), for the registry: string keys and values, synchronous. */
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
