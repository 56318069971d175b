// ThinPool: a thin-pool device, from two block devices or from two sparse files on loop devices, with a
// durable registry of its volumes. Every change to the pool's metadata follows one protocol, Docker's, with
// its registry update folded into the first write:
//   1. record the intended change (pending, with the pool's transaction id before and after), and in the same
//      atomic write its effect on the volume records (the new record; or the deleted one gone, its id freed)
//   2. send the pool message (create_thin / create_snap / delete)
//   3. commit: set_transaction_id <before> <after>.
// Until the commit the records say what the change will make them; the pending record and the pool's
// transaction id say whether it happened. The pending record then stays until the next change replaces it
// (the pool's transaction id equal to its "after" proves it committed) or close() clears it. So a change
// costs one durable write (one LMDB commit), not two. A process
// killed anywhere leaves a pending record that open() (or the next change) completes or rolls back by
// comparing it with the pool's transaction id. `hooks.step` marks each step for crash tests. What a kill
// leaves around the protocol (a device half-made, suspended or mis-sized; a node missing) open() puts right
// from the uuids the library gives its devices (repairPoolDevice, repairDevices).
// Each operation is written once, as a generator of its blocking steps (./twin.ts): `createVolume()` drives it
// with promises, `createVolumeSync()` with the sync twins of the same calls.
import fs from 'node:fs';
import path from 'node:path';
import { Block, formatDev } from '../dm/block';
import { DeviceMapper } from '../dm/device-mapper';
import type { Target } from '../dm/types';
import { dmError, DevmapperError } from '../core/errors';
import { Loop, LoopDevice } from '../dm/loop';
import { DevNumber } from '../core/binding';
import { Bytes, Sectors, bytes, bytesToSectors, parseSize, sectors, sectorsToBytes } from '../core/units';
import { MAPPER_DIR, mapperPath } from '../dm/dev-nodes';
import { checkName } from '../core/validate';
import { line, parseThinPoolStatus, thinPool, ThinPoolFeatures, ThinPoolParams, ThinPoolStatus, ThinPoolStatusOk, checkBlockSize, MAX_METADATA_SECTORS } from '../targets';
import { IncompleteMarker, markerOwnerAlive, readMarker, readPoolConfig, readSuperblock, removeMarker, removePoolFiles, writeMarker, writePoolConfig } from './pool-files';
import { IntendedChange, LmdbRegistry, PendingChange, RegistryStore, RegistryWrite, VolumeRecord, sameChange } from './registry';
import { retryWhileBusy } from './busy';
import { PoolLock } from './lock';
import { DeleteVolumeOptions, ThinVolume } from './volume';
import { Op, Steps, both, local, op, runAsync, runSync, sleep, start, step, sub, twin } from '../core/steps';

export type Step = 'intent' | 'message' | 'commit';

export interface ThinPoolHooks {
  /** Called after each step of a change; a crash test can kill the process here. */
  step?(step: Step, change: PendingChange): void;
}

export interface ThinPoolOptions {
  dm?: DeviceMapper;
  /** Where the registry lives. Default for file-backed pools: `<data file>.registry` beside the data file. */
  registryDir?: string;
  /** Another store behind the RegistryStore interface. */
  registry?: RegistryStore;
  hooks?: ThinPoolHooks;
}

export interface ThinPoolCreateOptions extends ThinPoolOptions, ThinPoolFeatures {
  name: string;
  /** Block devices to build on... */
  metadataDevice?: string;
  dataDevice?: string;
  /** ...or sparse files to create and attach to loop devices (autoclear). */
  dataFile?: string;
  metadataFile?: string;
  /** Bytes (or '10G') for files. */
  dataSize?: Bytes | number | string;
  metadataSize?: Bytes | number | string;
  /** Data block size in sectors (default 128 = 64 KiB). */
  blockSize?: number;
  /** Free data blocks at which the pool raises an event (default: 10% of the data blocks). */
  lowWaterMark?: number;
}

export interface ThinPoolAttachOptions extends ThinPoolOptions {
  name: string;
  /** The pool's files... */
  dataFile?: string;
  /** Default: `<dataFile>.meta`, as create() names it. */
  metadataFile?: string;
  /** ...or its block devices (with registryDir). */
  dataDevice?: string;
  metadataDevice?: string;
}

/** The dm uuid of a pool device this library makes: how a half-made one is recognised as ours. */
export const poolUuid = (name: string): string => `DEVMAPPER-POOL-${name}`;
const THIN_UUID = 'DEVMAPPER-THIN-';
/** The dm uuid of a volume's device: its pool's name and its thin id. */
export const thinUuid = (pool: string, id: number): string => `${THIN_UUID}${pool}-${id}`;

export interface VolumeListEntry extends VolumeRecord { active: boolean }

const toBytes = (v: Bytes | number | string): Bytes => (typeof v === 'string' ? parseSize(v) : bytes(v));

/** A sensible metadata size: the kernel docs' 48 bytes per data block, doubled for snapshots, >= 2 MiB, capped. */
export function defaultMetadataSize(dataSize: Bytes, blockSize: Sectors): Bytes {
  const blocks = Math.ceil(dataSize / (blockSize * 512));
  const mib = 2 ** 20;
  const want = Math.max(2 * mib, Math.ceil((blocks * 48 * 2) / mib) * mib);
  return Math.min(want, MAX_METADATA_SECTORS * 512) as Bytes;
}

/**
 * The backing file of a loop device this library attached for a pool. Ours are the autoclear ones (they go
 * with the pool); a loop someone else set up is theirs, and so is its file: we neither detach nor delete it.
 */
function ownLoopBackingFile(dev: string): string | undefined {
  try {
    if (fs.readFileSync(`/sys/dev/block/${dev}/loop/autoclear`, 'utf8').trim() !== '1') return undefined;
    return fs.readFileSync(`/sys/dev/block/${dev}/loop/backing_file`, 'utf8').trimEnd();
  } catch {
    return undefined;
  }
}

/** The incomplete marker beside `dataFile` that a dead process left, if any; one of a live process is refused. */
function deadMarker(name: string, dataFile: string): IncompleteMarker | undefined {
  const m = readMarker(dataFile);
  if (m && markerOwnerAlive(m))
    throw dmError('ERR_DM_IN_PROGRESS', `process ${m.pid} is ${m.op === 'create' ? 'creating' : 'destroying'} a pool on ${dataFile}`, name);
  return m;
}

// One lock per pool name for its create, attach and destroy (dm names are host-wide): a flock on a file in
// /run, which goes with a reboot, and a queue inside this process.
const LIFECYCLE_DIR = '/run/devmapper';
const lifecycleLocks = new Map<string, PoolLock>();
function lifecycleLock(name: string): PoolLock {
  let lock = lifecycleLocks.get(name);
  if (!lock) {
    fs.mkdirSync(LIFECYCLE_DIR, { recursive: true, mode: 0o700 });
    lifecycleLocks.set(name, lock = new PoolLock(path.join(LIFECYCLE_DIR, `${name}.lock`)));
  }
  return lock;
}

/** The pool `name` of a create or attach, checked, with `body` run under that name's lifecycle lock. */
function* underLifecycleLock<T>(o: { name: string } | undefined, body: () => Steps<T>): Steps<T> {
  const name = checkName(o?.name, 'pool name');
  return yield* step(lifecycleLock(name).op(body, name));
}

/**
 * What a create or attach is built on: files (the metadata file defaulting to `<dataFile>.meta`, as create
 * names it), or block devices, both given. Each path a non-empty string with no NUL.
 */
function backingOf(name: string, o: { dataFile?: string; metadataFile?: string; dataDevice?: string; metadataDevice?: string }):
  { onFiles: boolean; dataFile?: string; metaFile?: string } {
  for (const [k, v] of Object.entries({ dataFile: o.dataFile, metadataFile: o.metadataFile, dataDevice: o.dataDevice, metadataDevice: o.metadataDevice }))
    if (v !== undefined && (typeof v !== 'string' || v === '' || v.includes('\0'))) throw dmError('ERR_DM_INVALID_ARGUMENT', `${k} must be a path`, name);
  const onFiles = o.dataFile !== undefined || o.metadataFile !== undefined;
  if (onFiles === (o.dataDevice !== undefined || o.metadataDevice !== undefined))
    throw dmError('ERR_DM_INVALID_ARGUMENT', 'give either dataFile (+ metadataFile) or dataDevice + metadataDevice', name);
  if (!onFiles) {
    if (!o.dataDevice || !o.metadataDevice) throw dmError('ERR_DM_INVALID_ARGUMENT', 'both dataDevice and metadataDevice are needed', name);
    return { onFiles };
  }
  if (o.dataFile === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'dataFile is needed with metadataFile', name);
  const dataFile = path.resolve(o.dataFile);
  return { onFiles, dataFile, metaFile: o.metadataFile !== undefined ? path.resolve(o.metadataFile) : `${dataFile}.meta` };
}

function registryDirFor(name: string, o: ThinPoolOptions, dataFile: string | undefined): string {
  if (o.registryDir) return o.registryDir;
  if (dataFile) return `${dataFile}.registry`;
  throw dmError('ERR_DM_INVALID_ARGUMENT', 'a pool on block devices needs registryDir (or registry)', name);
}

export class ThinPool {
  readonly dm: DeviceMapper;
  private readonly lock: PoolLock;
  private readonly ownsDm: boolean;
  private committed?: PendingChange;

  private constructor(
    readonly name: string,
    readonly dev: DevNumber,
    readonly params: ThinPoolParams,
    readonly files: { data?: string; metadata?: string },
    readonly registryDir: string | undefined,
    readonly registry: RegistryStore,
    dm: DeviceMapper,
    ownsDm: boolean,
    private readonly hooks: ThinPoolHooks,
  ) {
    this.ownsDm = ownsDm;
    this.dm = dm;
    this.lock = new PoolLock(path.join(registryDir ?? '/run', registryDir ? 'lock' : `devmapper-${name}.lock`));
  }

  /** `major:minor` of the pool device, as thin tables name it. */
  get devSpec(): string { return formatDev(this.dev); }
  get blockSize(): Sectors { return this.params.blockSize; }

  /** Creates the pool. Everything done is undone if a later step fails. */
  static create(o: ThinPoolCreateOptions): Promise<ThinPool> { return runAsync(ThinPool.createSteps(o)); }
  static createSync(o: ThinPoolCreateOptions): ThinPool { return runSync(ThinPool.createSteps(o)); }

  private static createSteps(o: ThinPoolCreateOptions): Steps<ThinPool> {
    return underLifecycleLock(o, () => ThinPool.createUnderLock(o));
  }

  // Under the pool name's lifecycle lock: no other create, attach or destroy of this name runs meanwhile, so a
  // half-made pool device or marked files seen here are a dead process's.
  private static *createUnderLock(o: ThinPoolCreateOptions): Steps<ThinPool> {
    const name = checkName(o.name, 'pool name');
    const blockSize = checkBlockSize(o.blockSize ?? 128);
    if (o.readOnly) throw dmError('ERR_DM_INVALID_ARGUMENT', 'a new pool cannot be read_only (the kernel refuses it at creation)', name);
    const { onFiles, dataFile, metaFile } = backingOf(name, o);
    let dataSize: Bytes | undefined, metaSize: Bytes | undefined;
    if (onFiles) {
      if (o.dataSize === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'dataSize is needed for a file-backed pool', name);
      dataSize = toBytes(o.dataSize);
      bytesToSectors(dataSize);
      if (dataSize < blockSize * 512) throw dmError('ERR_DM_INVALID_SIZE', 'the data file must hold at least one block', name);
      metaSize = o.metadataSize !== undefined ? toBytes(o.metadataSize) : defaultMetadataSize(dataSize, blockSize);
      bytesToSectors(metaSize);
    }
    const registryDir = o.registry ? o.registryDir : registryDirFor(name, o, dataFile);
    const dm = o.dm ?? new DeviceMapper();
    const undo: Op<unknown>[] = [];
    const held: LoopDevice[] = [];
    let registry: RegistryStore | undefined;
    let marked = false, madeRegistryDir = false;
    try {
      // A device of this name that a killed create or attach left without a live table is ours to clear.
      yield* ThinPool.clearHalfMadePool(dm, name);
      if (onFiles) {
        const leftovers = yield* ThinPool.claimFiles(name, dataFile!, metaFile!);
        writeMarker(dataFile!, 'create');
        marked = true;
        if (leftovers) removePoolFiles(dataFile, metaFile, registryDir);
      }
      // Before the pool exists: once it is live, another process may open it and record volumes.
      madeRegistryDir = !o.registry && !fs.existsSync(registryDir!);
      registry = o.registry ?? LmdbRegistry.open(registryDir!);
      if (registry.count() > 0 || registry.pending())
        throw dmError('ERR_DM_POOL_STATE', `the registry at ${registryDir} holds volumes of an older pool; remove it first`, name);
      let metaPath = o.metadataDevice!, dataPath = o.dataDevice!;
      if (onFiles) {
        for (const [f, size] of [[dataFile!, dataSize!], [metaFile!, metaSize!]] as const) {
          fs.writeFileSync(f, '', { flag: 'wx' });
          undo.push(local(() => fs.rmSync(f, { force: true })));
          fs.truncateSync(f, size);
        }
        const data = yield* step(twin(Loop, 'attach', dataFile!, { autoclear: true }));
        held.push(data);
        undo.push(local(() => data.release()));
        const meta = yield* step(twin(Loop, 'attach', metaFile!, { autoclear: true }));
        held.push(meta);
        undo.push(local(() => meta.release()));
        dataPath = data.path;
        metaPath = meta.path;
      }
      // A new pool needs zeroed metadata: the kernel formats it only when the superblock is blank.
      const fd = fs.openSync(metaPath, 'r+');
      try { fs.writeSync(fd, Buffer.alloc(4096), 0, 4096, 0); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }

      const params = yield* ThinPool.poolParams(name, dataPath, metaPath, blockSize, o.lowWaterMark, o);
      const info = yield* step(twin(dm, 'createDevice', name, [line(thinPool, 0, params.length, params.params)], { uuid: poolUuid(name) }));
      undo.push(twin(dm, 'remove', name));
      for (const l of held) l.release();  // the pool holds the loops now; autoclear detaches them with it

      if (registryDir) writePoolConfig(registryDir, { blockSize, lowWaterMark: params.params.lowWaterMark, features: params.params.features ?? {} });
      if (marked) removeMarker(dataFile!);
      return new ThinPool(name, info.dev, thinPool.parse(thinPool.format(params.params)), { data: dataFile, metadata: metaFile },
        registryDir, registry, dm, !o.dm, o.hooks ?? {});
    } catch (e) {
      if (registry && !o.registry) registry.close();
      for (const u of undo.reverse()) { try { yield* step(u); } catch { /* keep the first error */ } }
      if (madeRegistryDir) removePoolFiles(undefined, undefined, registryDir);
      if (marked) removeMarker(dataFile!);
      if (!o.dm) dm.close();
      throw e;
    }
  }

  // The thin-pool table of a new or re-attached pool: whole blocks of the data device.
  private static *poolParams(name: string, dataPath: string, metaPath: string, blockSize: Sectors, lowWaterMark: number | undefined,
    features: ThinPoolFeatures): Steps<{ length: Sectors; params: ThinPoolParams }> {
    const dataSectors = bytesToSectors(yield* step(twin(Block, 'size', dataPath)));
    const length = sectors(Math.floor(dataSectors / blockSize) * blockSize);
    if (length === 0) throw dmError('ERR_DM_INVALID_SIZE', 'the data device is smaller than one block', name);
    const metaDev = formatDev(yield* step(twin(Block, 'deviceNumber', metaPath)));
    const dataDev = formatDev(yield* step(twin(Block, 'deviceNumber', dataPath)));
    return {
      length,
      params: {
        metadataDev: metaDev, dataDev, blockSize,
        lowWaterMark: lowWaterMark ?? Math.floor(length / blockSize / 10),
        features: { skipBlockZeroing: features.skipBlockZeroing, ignoreDiscard: features.ignoreDiscard, noDiscardPassdown: features.noDiscardPassdown, errorIfNoSpace: features.errorIfNoSpace, readOnly: features.readOnly },
      },
    };
  }

  /**
   * A dm device named `name` that a killed create or attach left (our pool uuid, no live table) is removed;
   * any other device of that name is an error: the name is taken.
   */
  private static *clearHalfMadePool(dm: DeviceMapper, name: string): Steps<void> {
    const info = yield* step(twin(dm, 'infoIfExists', name));
    if (!info) return;
    if (info.uuid !== poolUuid(name) || info.liveTable)
      throw dmError('ERR_DM_POOL_EXISTS', 'a dm device of that name exists; open the pool instead', name);
    yield* ThinVolume.removeWithRetry(dm, name, {});
  }

  /**
   * Whether a file pool's files may be made: they must not exist, unless a create or destroy that was killed
   * left them (its marker names a dead process): then they are leftovers, to be removed (returns true). Files
   * a loop device still serves are never taken.
   */
  private static *claimFiles(name: string, dataFile: string, metaFile: string): Steps<boolean> {
    const m = deadMarker(name, dataFile);
    if (!m) {
      for (const f of [dataFile, metaFile]) {
        if (fs.existsSync(f)) throw dmError('ERR_DM_POOL_EXISTS', `${f} exists; attach or open the pool instead, or remove it`, name);
      }
      return false;
    }
    for (const f of [dataFile, metaFile]) {
      if (!fs.existsSync(f)) continue;
      // An autoclear loop detaches just after its last user went; give it that moment.
      for (let i = 0; ; i++) {
        const loops = yield* step(twin(Loop, 'find', f));
        if (loops.length === 0) break;
        if (i >= 50) throw dmError('ERR_DM_POOL_EXISTS', `${f} is in use by ${loops.join(', ')}`, name);
        yield* step(sleep(20));
      }
    }
    return true;
  }

  /** Opens an active pool: finds its devices, loop backing files and registry, and finishes an interrupted change. */
  static open(name: string, o: ThinPoolOptions = {}): Promise<ThinPool> { return runAsync(ThinPool.openSteps(name, o)); }
  static openSync(name: string, o: ThinPoolOptions = {}): ThinPool { return runSync(ThinPool.openSteps(name, o)); }

  // `made`: a DeviceMapper the caller made (attach), which the pool then owns; the caller closes it on failure.
  private static *openSteps(name: string, o: ThinPoolOptions, made?: DeviceMapper): Steps<ThinPool> {
    checkName(name, 'pool name');
    const dm = o.dm ?? made ?? new DeviceMapper();
    let registry: RegistryStore | undefined;
    try {
      const info = yield* step(twin(dm, 'info', name));
      if (!info.liveTable) {
        throw dmError('ERR_DM_POOL_STATE', info.uuid === poolUuid(name)
          ? 'a create or attach of this pool was interrupted before its table was live: create or attach it again'
          : 'the device has no live table', name);
      }
      const table = yield* step(twin(dm, 'table', name));
      if (table.length !== 1 || table[0].type !== 'thin-pool')
        throw dmError('ERR_DM_NOT_A_THIN_POOL', `its table is ${table.map((t) => t.type).join(', ') || 'empty'}`, name);
      const params = thinPool.parse(table[0].params);
      const dataFile = ownLoopBackingFile(params.dataDev);
      const metaFile = ownLoopBackingFile(params.metadataDev);
      const registryDir = o.registry ? o.registryDir : registryDirFor(name, o, dataFile);
      registry = o.registry ?? LmdbRegistry.open(registryDir!);
      const pool = new ThinPool(name, info.dev, params, { data: dataFile, metadata: metaFile }, registryDir, registry, dm, !o.dm, o.hooks ?? {});
      yield* pool.locked(function* (this: ThinPool): Steps<void> {
        yield* this.repairPoolDevice();
        yield* this.repairDevices();
        yield* this.recover();
      });
      // attach() loads the table from the saved settings: a reload killed before it saved them left old ones.
      if (registryDir) {
        let saved: ReturnType<typeof readPoolConfig>;
        try { saved = readPoolConfig(registryDir); } catch { saved = undefined; /* not ours to trust: rewritten */ }
        const live = { blockSize: params.blockSize, lowWaterMark: params.lowWaterMark, features: params.features ?? {} };
        const on = (f: ThinPoolFeatures) => Object.keys(f).filter((k) => f[k as keyof ThinPoolFeatures]).sort().join();
        if (!saved || saved.blockSize !== live.blockSize || saved.lowWaterMark !== live.lowWaterMark || on(saved.features) !== on(live.features))
          writePoolConfig(registryDir, live);
      }
      // The pool is live, so a create that was killed after making it got that far: its marker is stale.
      const m = dataFile ? readMarker(dataFile) : undefined;
      if (m?.op === 'create' && !markerOwnerAlive(m)) removeMarker(dataFile!);
      return pool;
    } catch (e) {
      if (registry && !o.registry) registry.close();
      if (!o.dm && !made) dm.close();
      throw e;
    }
  }

  /**
   * Brings back a pool that is not active (after a reboot, or a destroy() that kept its files): attaches its
   * files to loop devices (or takes its block devices), loads the same table (the block size from its
   * metadata, the rest from the settings saved beside the registry), and opens it as open() does. A pool
   * already active on the same files or devices is simply opened. Files that an interrupted create or destroy
   * left are refused (create the pool again over them).
   */
  static attach(o: ThinPoolAttachOptions): Promise<ThinPool> { return runAsync(ThinPool.attachSteps(o)); }
  static attachSync(o: ThinPoolAttachOptions): ThinPool { return runSync(ThinPool.attachSteps(o)); }

  private static attachSteps(o: ThinPoolAttachOptions): Steps<ThinPool> {
    return underLifecycleLock(o, () => ThinPool.attachUnderLock(o));
  }

  private static *attachUnderLock(o: ThinPoolAttachOptions): Steps<ThinPool> {
    const name = checkName(o.name, 'pool name');
    const { onFiles, dataFile, metaFile } = backingOf(name, o);
    const metaPath = metaFile ?? o.metadataDevice!;
    const registryDir = o.registry ? o.registryDir : registryDirFor(name, o, dataFile);
    const dm = o.dm ?? new DeviceMapper();
    const undo: Op<unknown>[] = [];
    const held: LoopDevice[] = [];
    try {
      const existing = yield* step(twin(dm, 'infoIfExists', name));
      if (existing?.liveTable) {
        const [t] = yield* step(twin(dm, 'table', name));
        const dataDev = t?.type === 'thin-pool' ? thinPool.parse(t.params).dataDev : undefined;
        const same = onFiles ? dataDev !== undefined && ownLoopBackingFile(dataDev) === dataFile
          : dataDev === formatDev(yield* step(twin(Block, 'deviceNumber', o.dataDevice!)));
        if (!same) throw dmError('ERR_DM_POOL_EXISTS', `a dm device of that name exists, and it is not a pool on ${dataFile ?? o.dataDevice}`, name);
      } else {
        yield* ThinPool.clearHalfMadePool(dm, name);
        let dataPath = o.dataDevice!;
        if (onFiles) {
          const m = deadMarker(name, dataFile!);
          if (m) throw dmError('ERR_DM_POOL_STATE', `a ${m.op} of a pool on ${dataFile} was interrupted: these files are no whole pool; create the pool again over them`, name);
          for (const f of [dataFile!, metaPath]) if (!fs.existsSync(f)) throw dmError('ERR_DM_INVALID_ARGUMENT', `${f} does not exist`, name);
        } else {
          // The device's page cache may predate what the pool wrote (through its own buffers): drop it first.
          yield* step(twin(Block, 'flush', metaPath));
        }
        const sb = readSuperblock(metaPath);
        if (!sb.formatted) throw dmError('ERR_DM_POOL_STATE', `${metaPath} was never formatted by a pool: create the pool instead`, name);
        const config = registryDir ? readPoolConfig(registryDir) : undefined;
        if (config && config.blockSize !== sb.blockSize)
          throw dmError('ERR_DM_POOL_STATE', `the metadata says blocks of ${sb.blockSize} sectors, the saved settings ${config.blockSize}`, name);
        let metaDevPath = metaPath;
        if (onFiles) {
          const data = yield* step(twin(Loop, 'attach', dataFile!, { autoclear: true }));
          held.push(data);
          undo.push(local(() => data.release()));
          const meta = yield* step(twin(Loop, 'attach', metaPath, { autoclear: true }));
          held.push(meta);
          undo.push(local(() => meta.release()));
          dataPath = data.path;
          metaDevPath = meta.path;
        }
        const p = yield* ThinPool.poolParams(name, dataPath, metaDevPath, sectors(sb.blockSize), config?.lowWaterMark, config?.features ?? {});
        yield* step(twin(dm, 'createDevice', name, [line(thinPool, 0, p.length, p.params)], { uuid: poolUuid(name) }));
        undo.push(twin(dm, 'remove', name));
        for (const l of held) l.release();
        if (registryDir && !config) writePoolConfig(registryDir, { blockSize: sb.blockSize, lowWaterMark: p.params.lowWaterMark, features: p.params.features ?? {} });
      }
      return yield* ThinPool.openSteps(name, o, o.dm ? undefined : dm);
    } catch (e) {
      for (const u of undo.reverse()) { try { yield* step(u); } catch { /* keep the first error */ } }
      if (!o.dm) dm.close();
      throw e;
    }
  }

  // ---- status and settings -------------------------------------------------------------------------

  status(o: { noflush?: boolean } = {}): Promise<ThinPoolStatus> { return runAsync(this.statusSteps(o)); }
  statusSync(o: { noflush?: boolean } = {}): ThinPoolStatus { return runSync(this.statusSteps(o)); }

  transactionId(): Promise<number> { return runAsync(this.transactionIdSteps()); }
  transactionIdSync(): number { return runSync(this.transactionIdSteps()); }

  private *statusSteps(o: { noflush?: boolean }): Steps<ThinPoolStatus> {
    const [t] = yield* step(twin(this.dm, 'status', this.name, o));
    return parseThinPoolStatus(t.params);
  }

  private *transactionIdSteps(): Steps<number> {
    const s = yield* this.statusSteps({ noflush: true });
    if (s.state !== 'ok') throw dmError('ERR_DM_POOL_STATE', `the pool reports ${s.state}`, this.name);
    return s.transactionId;
  }

  /**
   * Calls `onLow(status)` while the pool's free data blocks are at or below its low water mark: once at the
   * start if they already are, then at each event of the pool's (the kernel raises one when free blocks fall to
   * the mark, and on running out of space, a mode change or a resume) that finds them so. Growing the pool
   * (growData) ends it. Waits with DM_DEV_WAIT on a thread of its own; resolves when `signal` aborts.
   * Promise only: it waits for events.
   */
  async watchLowWater(onLow: (status: ThinPoolStatusOk) => void | Promise<void>, o: { signal: AbortSignal }): Promise<void> {
    const low = (s: ThinPoolStatus): s is ThinPoolStatusOk => s.state === 'ok' && s.data.total - s.data.used <= this.params.lowWaterMark;
    let { eventNr } = await this.dm.info(this.name);
    let status = await this.status({ noflush: true });
    while (!o.signal.aborted) {
      if (low(status)) await onLow(status);
      try {
        const r = await this.dm.wait(this.name, eventNr, { signal: o.signal, noflush: true });
        eventNr = r.info.eventNr;
        status = parseThinPoolStatus(r.status[0].params);
      } catch (e) {
        if ((e as DevmapperError).code === 'ERR_DM_ABORTED') return;
        throw e;
      }
    }
  }

  /** Reloads the pool table with new features (discard support cannot change after creation). */
  setFeatures(features: ThinPoolFeatures): Promise<void> { return runAsync(this.setFeaturesSteps(features)); }
  setFeaturesSync(features: ThinPoolFeatures): void { runSync(this.setFeaturesSteps(features)); }

  setLowWaterMark(blocks: number): Promise<void> { return runAsync(this.setLowWaterMarkSteps(blocks)); }
  setLowWaterMarkSync(blocks: number): void { runSync(this.setLowWaterMarkSteps(blocks)); }

  private setFeaturesSteps(features: ThinPoolFeatures): Steps<void> {
    return this.locked(function* (this: ThinPool): Steps<void> {
      yield* this.reload({ ...this.params, features: { ...this.params.features, ...features } });
    });
  }

  private setLowWaterMarkSteps(blocks: number): Steps<void> {
    return this.locked(function* (this: ThinPool): Steps<void> {
      yield* this.reload({ ...this.params, lowWaterMark: blocks });
    });
  }

  /**
   * Grows the pool's data device. For a pool on its own sparse file: the file is extended to `size` and its
   * loop told (LOOP_SET_CAPACITY). For a pool on block devices, grow the device first and call this without a
   * size. Then the table is reloaded with the new length (whole blocks). Volumes stay active throughout.
   */
  growData(size?: Bytes | number | string): Promise<void> { return runAsync(this.growDataSteps(size)); }
  growDataSync(size?: Bytes | number | string): void { runSync(this.growDataSteps(size)); }

  private *growDataSteps(size: Bytes | number | string | undefined): Steps<void> {
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      const [current] = yield* step(twin(this.dm, 'table', this.name));
      yield* this.growDevice(this.params.dataDev, this.files.data, size, undefined, function* (this: ThinPool, deviceSectors: Sectors): Steps<void> {
        const length = sectors(Math.floor(deviceSectors / this.blockSize) * this.blockSize);
        if (length <= current.length) throw dmError('ERR_DM_INVALID_SIZE', `the data device holds ${length} sectors of whole blocks; the pool has ${current.length} already`, this.name);
        yield* this.reload(this.params, length);
      });
    });
  }

  /**
   * Grows the pool's metadata device (at most the kernel's ~15.88 GiB), the same way as growData(); the pool
   * takes up the new size when it resumes.
   */
  growMetadata(size?: Bytes | number | string): Promise<void> { return runAsync(this.growMetadataSteps(size)); }
  growMetadataSync(size?: Bytes | number | string): void { runSync(this.growMetadataSteps(size)); }

  private *growMetadataSteps(size: Bytes | number | string | undefined): Steps<void> {
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      const before = yield* this.statusSteps({});
      yield* this.growDevice(this.params.metadataDev, this.files.metadata, size, MAX_METADATA_SECTORS, function* (this: ThinPool, deviceSectors: Sectors): Steps<void> {
        const blocks = Math.floor(deviceSectors / 8);  // 4 KiB metadata blocks
        if (before.state === 'ok' && blocks <= before.metadata.total)
          throw dmError('ERR_DM_INVALID_SIZE', `the metadata device holds ${blocks} blocks; the pool has ${before.metadata.total} already`, this.name);
        yield* this.reload(this.params);
      });
    });
  }

  // Extends the pool's own backing file to `size` (only ever grows) and updates its loop, then hands the
  // device's size in sectors (at most `max`) to `apply`. If that fails, the file is shrunk back: the pool's
  // table still has the old length. Without a size, the device must have grown already.
  private *growDevice(dev: string, file: string | undefined, size: Bytes | number | string | undefined, max: number | undefined,
    apply: (this: ThinPool, deviceSectors: Sectors) => Steps<void>): Steps<void> {
    const node = `/dev/${path.basename(fs.readlinkSync(`/sys/dev/block/${dev}`))}`;
    let had: number | undefined;
    if (size !== undefined) {
      if (!file) throw dmError('ERR_DM_INVALID_ARGUMENT', 'this pool is on block devices: grow the device, then call without a size', this.name);
      const want = toBytes(size);
      had = fs.statSync(file).size;
      bytesToSectors(want);
      if (max !== undefined && want > max * 512) throw dmError('ERR_DM_INVALID_SIZE', `at most ${max} sectors`, this.name);
      if (want < had) throw dmError('ERR_DM_INVALID_SIZE', `${file} is already ${had} bytes; pools only grow`, this.name);
      // Equal: a growth killed after extending the file is finished by asking for the same size again.
      if (want > had) fs.truncateSync(file, want);
      else had = undefined;
    }
    try {
      if (size !== undefined) yield* step(twin(Loop, 'setCapacity', node));
      const s = bytesToSectors(yield* step(twin(Block, 'size', node)));
      yield* apply.call(this, sectors(max !== undefined ? Math.min(s, max) : s));
    } catch (e) {
      if (had !== undefined) {
        try {
          fs.truncateSync(file!, had);
          yield* step(twin(Loop, 'setCapacity', node));
        } catch { /* keep the first error */ }
      }
      throw e;
    }
  }

  // Load first, then suspend/resume: suspending a pool before loading has deadlocked under memory pressure.
  // `length` changes the pool's size; without it the table's current length is kept.
  private *reload(params: ThinPoolParams, length?: Sectors): Steps<void> {
    length ??= (yield* step(twin(this.dm, 'table', this.name)))[0].length;
    yield* step(twin(this.dm, 'load', this.name, [line(thinPool, 0, length, params)]));
    try {
      yield* step(twin(this.dm, 'suspend', this.name));
    } catch (e) {
      try { yield* step(twin(this.dm, 'clear', this.name)); } catch { /* keep the first error */ }
      throw e;
    }
    yield* step(twin(this.dm, 'resume', this.name));
    Object.assign(this.params, thinPool.parse(thinPool.format(params)));
    // attach() loads the table from these settings: keep them as the pool has them now.
    if (this.registryDir) writePoolConfig(this.registryDir, { blockSize: this.params.blockSize, lowWaterMark: this.params.lowWaterMark, features: this.params.features ?? {} });
  }

  // ---- volumes ---------------------------------------------------------------------------------------

  /** A new thin volume of `size` bytes (a multiple of 512; '1G' works too). Not activated. */
  createVolume(name: string, size: Bytes | number | string): Promise<ThinVolume<ThinPool>> { return runAsync(this.createVolumeSteps(name, size)); }
  createVolumeSync(name: string, size: Bytes | number | string): ThinVolume<ThinPool> { return runSync(this.createVolumeSteps(name, size)); }

  private *createVolumeSteps(name: string, size: Bytes | number | string): Steps<ThinVolume<ThinPool>> {
    checkName(name, 'volume name');
    const sz = bytesToSectors(toBytes(size));
    if (sz === 0) throw dmError('ERR_DM_INVALID_SIZE', 'a volume needs a size above 0', name);
    const rec = yield* this.locked(function* (this: ThinPool): Steps<VolumeRecord> {
      const [tid, recovered] = yield* step(both(sub(() => this.transactionIdSteps()), sub(() => this.checkNameFree(name))));
      const from = recovered ? yield* this.transactionIdSteps() : tid;
      return yield* this.createId('create', name, sz, null, from, (id) => `create_thin ${id}`);
    });
    return new ThinVolume(this, rec);
  }

  /**
   * A snapshot of `origin` named `name`. An active origin is suspended for the create_snap message and
   * resumed whatever happens: suspend, create_snap and resume go in one native call, after the registry's
   * write, so the origin's I/O waits for the kernel's work alone.
   */
  snapshot(origin: string | ThinVolume, name: string): Promise<ThinVolume<ThinPool>> { return runAsync(this.snapshotSteps(origin, name)); }
  snapshotSync(origin: string | ThinVolume, name: string): ThinVolume<ThinPool> { return runSync(this.snapshotSteps(origin, name)); }

  private *snapshotSteps(origin: string | ThinVolume, name: string): Steps<ThinVolume<ThinPool>> {
    const originName = typeof origin === 'string' ? origin : origin.name;
    checkName(name, 'snapshot name');
    const rec = yield* this.locked(function* (this: ThinPool): Steps<VolumeRecord> {
      const from = this.registry.get(originName);
      if (!from) throw dmError('ERR_DM_NO_SUCH_VOLUME', `origin '${originName}' is not a volume of pool ${this.name}`, originName);
      const [[tidRead, recovered], active] = yield* step(both(
        both(sub(() => this.transactionIdSteps()), sub(() => this.checkNameFree(name))),
        sub(() => this.isActiveThinSteps(originName, from.id))));
      const tid = recovered ? yield* this.transactionIdSteps() : tidRead;
      const message = (id: number) => `create_snap ${id} ${from.id}`;
      if (!active) return yield* this.createId('snapshot', name, from.size, from.name, tid, message);
      let resumeFailed = false;
      const batch = (text: string) => this.dm.batch().suspend(originName).message(this.name, 0, text).resume(originName);
      return yield* this.createId('snapshot', name, from.size, from.name, tid, message, function* (this: ThinPool, text: string): Steps<void> {
        try {
          yield* step(op(() => batch(text).runSync(), () => batch(text).run()));
        } catch (e) {
          const ran = (e as DevmapperError).completed ?? 0;
          if (ran === 1) yield* step(twin(this.dm, 'resume', originName));  // create_snap failed: resume, then report its error
          if (ran < 2) throw e;  // create_snap did not run
          resumeFailed = true;  // it ran; the resume failed: tried again after the message step
        }
      }, function* (this: ThinPool): Steps<void> {
        if (resumeFailed) yield* step(twin(this.dm, 'resume', originName));
      });
    });
    return new ThinVolume(this, rec);
  }

  /** A volume by name, or undefined. */
  volume(name: string): ThinVolume<ThinPool> | undefined {
    const rec = this.registry.get(name);
    return rec && new ThinVolume(this, rec);
  }

  /** All volumes, with whether each is active now. */
  list(): Promise<VolumeListEntry[]> { return runAsync(this.listSteps()); }
  listSync(): VolumeListEntry[] { return runSync(this.listSteps()); }

  private *listSteps(): Steps<VolumeListEntry[]> {
    const active = new Set((yield* step(twin(this.dm, 'list', { uuids: false }))).map((d) => d.name));
    return this.registry.list().map((r) => ({ ...r, active: active.has(r.name) }));
  }

  /** The layer tree, one line per volume, children indented under their parent. */
  tree(describe?: (v: VolumeListEntry) => string): Promise<string> { return runAsync(this.treeSteps(describe)); }
  treeSync(describe?: (v: VolumeListEntry) => string): string { return runSync(this.treeSteps(describe)); }

  private *treeSteps(describe: (v: VolumeListEntry) => string = (v) => `${v.name} (id ${v.id})`): Steps<string> {
    const all = yield* this.listSteps();
    const names = new Set(all.map((v) => v.name));
    const kids = new Map<string | null, VolumeListEntry[]>();
    for (const v of all) {
      const p = v.parent && names.has(v.parent) ? v.parent : null;
      kids.set(p, [...(kids.get(p) ?? []), v]);
    }
    const out: string[] = [];
    const walk = (p: string | null, indent: string) => {
      for (const v of (kids.get(p) ?? []).sort((a, b) => a.created - b.created || a.id - b.id)) {
        out.push(`${indent}${describe(v)}`);
        walk(v.name, indent + '  ');
      }
    };
    walk(null, '');
    return out.join('\n');
  }

  /**
   * Deletes a volume's thin device, which must be inactive. With `deactivate`, it deactivates the volume
   * first (ThinVolume.delete() does), while it reads the transaction id and records the intent: the REMOVE
   * waits in the kernel, the registry work need not wait for it. With `discard`, the volume (activated for it
   * if need be) is discarded after the intent is recorded, so a delete killed during the discard is finished
   * at the next open, never left as a volume whose data is gone. A volume open elsewhere is not discarded.
   */
  deleteVolume(name: string, o: DeleteVolumeOptions = {}): Promise<void> { return runAsync(this.deleteVolumeSteps(name, o)); }
  deleteVolumeSync(name: string, o: DeleteVolumeOptions = {}): void { runSync(this.deleteVolumeSteps(name, o)); }

  /** @internal ThinVolume.delete's body. */
  *deleteVolumeSteps(name: string, o: DeleteVolumeOptions): Steps<void> {
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      const discard = !!o.discard;
      const deactivate = o.deactivate ?? (discard ? {} : undefined);
      if (discard) {
        const info = yield* step(twin(this.dm, 'infoIfExists', name));
        if (info && info.openCount > 0) throw dmError('ERR_DM_BUSY', 'the volume is open; close it before discarding it', name);
      }
      // Without a discard, the REMOVE runs alongside the intent; with one, after the discard.
      const removing = deactivate && !discard && (yield* step(start(sub(() => ThinVolume.removeWithRetry(this.dm, name, deactivate)))));
      let change: PendingChange;
      let undo!: RegistryWrite;
      try {
        change = yield* this.intendChange(yield* this.transactionIdSteps(), (tid) => {
          const rec = this.registry.get(name);
          if (!rec) throw dmError('ERR_DM_NO_SUCH_VOLUME', `no volume '${name}' in pool ${this.name}`, name);
          // If nothing reaches the pool: the record back, its id taken again, its children under it again.
          undo = { put: [rec, ...this.registry.children(name)], takeIds: [rec.id], pending: null };
          return { op: 'delete', id: rec.id, name, size: rec.size, parent: rec.parent, fromTid: tid, toTid: tid + 1 };
        }, (id) => ({ remove: [name], freeIds: [id] }));  // its children keep their data
      } catch (e) {
        if (removing) { try { yield* step(removing); } catch { /* the first error is the one that matters */ } }
        throw e;
      }
      let discardError: unknown;
      try {
        if (removing) yield* step(removing);
        if (discard) discardError = yield* this.discardThin(name, change.id, change.size);
      } catch (e) {
        this.registry.commit(undo);  // nothing was discarded, nothing was sent to the pool
        throw e;
      }
      this.step('intent', change);
      // From here the delete is finished, now or by recover(): a discard may have run.
      if (discard) yield* ThinVolume.removeWithRetry(this.dm, name, deactivate!);
      try {
        yield* this.deleteThin(change.id, name);
      } catch (e) {
        if (!discard) this.registry.commit(undo);  // nothing changed in the pool
        throw e;
      }
      this.step('message', change);
      yield* this.commitDelete(change);
      if (discardError) throw discardError;
    });
  }

  // Activates the thin (if it is not) and discards all of it. Throws if the discard never started (nothing
  // lost: the device is as it was); returns the discard's own error if it failed part-way (the delete must
  // then go on: data may be gone).
  private *discardThin(name: string, id: number, size: Sectors): Steps<unknown> {
    const wasActive = yield* this.isActiveThinSteps(name, id);
    if (!wasActive) yield* this.activateThinSteps(name, id, size, false);
    try {
      yield* step(twin(Block, 'discard', mapperPath(name), 0, sectorsToBytes(size)));
      return undefined;
    } catch (e) {
      // Refused as a whole: the device did not open (no node, read-only), or the pool ignores discards.
      if ((e as DevmapperError).syscall === 'open' || (e as DevmapperError).code === 'EOPNOTSUPP') {
        if (!wasActive) { try { yield* ThinVolume.removeWithRetry(this.dm, name, {}); } catch { /* keep the first error */ } }
        throw e;
      }
      if (e instanceof DevmapperError) e.message = `the volume was deleted; its discard failed: ${e.message}`;
      return e;
    }
  }

  /** Resizes (grows) a volume: records the size, then reloads its table if it is active. */
  resizeVolume(name: string, size: Bytes | number | string): Promise<VolumeRecord> { return runAsync(this.resizeVolumeSteps(name, size)); }
  resizeVolumeSync(name: string, size: Bytes | number | string): VolumeRecord { return runSync(this.resizeVolumeSteps(name, size)); }

  /** @internal ThinVolume.resize's body. */
  *resizeVolumeSteps(name: string, size: Bytes | number | string): Steps<VolumeRecord> {
    const sz = bytesToSectors(toBytes(size));
    return yield* this.locked(function* (this: ThinPool): Steps<VolumeRecord> {
      const rec = this.registry.get(name);
      if (!rec) throw dmError('ERR_DM_NO_SUCH_VOLUME', `no volume '${name}' in pool ${this.name}`, name);
      if (sz < rec.size) throw dmError('ERR_DM_INVALID_SIZE', `thin volumes only grow here (${rec.size} -> ${sz} sectors)`, name);
      if (sz === rec.size) return rec;
      // The record first: a process killed before the table is reloaded leaves a live table smaller than its
      // record, which open() grows (repairDevices). Never a live table larger than the record.
      const next = { ...rec, size: sz };
      this.registry.commit({ put: [next] });
      const info = yield* step(twin(this.dm, 'infoIfExists', name));
      if (info && (yield* this.isActiveThinSteps(name, rec.id))) {
        try {
          yield* this.reloadThin(name, rec.id, sz, info.readOnly);
        } catch (e) {
          try {
            const [t] = yield* step(twin(this.dm, 'table', name));
            if (t.length === rec.size) this.registry.commit({ put: [rec] });
          } catch { /* open() puts it right */ }
          throw e;
        }
      }
      return next;
    });
  }

  // A live thin table swapped for one of `size`: load (read-only if the device is), suspend, resume.
  private *reloadThin(name: string, id: number, size: Sectors, readOnly: boolean): Steps<void> {
    yield* step(twin(this.dm, 'load', name, [ThinVolume.table(this, id, size)], { readOnly }));
    try {
      yield* step(twin(this.dm, 'suspend', name));
    } catch (e) {
      try { yield* step(twin(this.dm, 'clear', name)); } catch { /* keep the first error */ }
      throw e;
    }
    yield* step(twin(this.dm, 'resume', name));
  }

  /**
   * Removes the pool: every volume of its registry that is active, then the pool device (its own loop devices,
   * autoclear, detach with it), and closes the registry. Touches nothing the registry does not own: if
   * another device uses the pool, or a volume is open, it removes nothing and says which (ERR_DM_BUSY). With
   * deleteFiles, also removes the backing files it created and the registry; a destroy killed while deleting
   * them leaves files that a new create() over them clears. Without it, attach() brings the pool back.
   */
  destroy(o: { deleteFiles?: boolean } = {}): Promise<void> { return runAsync(this.destroySteps(o)); }
  destroySync(o: { deleteFiles?: boolean } = {}): void { runSync(this.destroySteps(o)); }

  private *destroySteps(o: { deleteFiles?: boolean }): Steps<void> {
    yield* step(lifecycleLock(this.name).op(() => this.destroyUnderLock(o), this.name));
  }

  private *destroyUnderLock(o: { deleteFiles?: boolean }): Steps<void> {
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      const ours: string[] = [], busy: string[] = [], foreign: string[] = [];
      for (const d of yield* step(twin(this.dm, 'list', { uuids: true }))) {
        if (d.name === this.name) continue;
        const info = yield* step(twin(this.dm, 'infoIfExists', d.name));
        if (!info) continue;
        let deps: DevNumber[] = [];
        if (info.liveTable) { try { deps = yield* step(twin(this.dm, 'deps', d.name)); } catch { /* gone meanwhile */ } }
        const usesPool = deps.some((x) => x.major === this.dev.major && x.minor === this.dev.minor);
        const rec = this.registry.get(d.name);
        const ownUuid = this.thinIdOfUuid(d.uuid) !== undefined;
        const mine = ownUuid || (usesPool && rec !== undefined && (yield* this.isActiveThinSteps(d.name, rec.id)));
        if (mine) {
          ours.push(d.name);
          if (info.openCount > 0) busy.push(d.name);
        } else if (usesPool) {
          foreign.push(d.name);
        }
      }
      if (foreign.length || busy.length) {
        throw dmError('ERR_DM_BUSY', [busy.length ? `volumes in use: ${busy.join(', ')}` : '',
          foreign.length ? `devices the registry does not own use the pool: ${foreign.join(', ')}` : ''].filter(Boolean).join('; ') +
          '; nothing was removed', this.name);
      }
      for (const n of ours) yield* ThinVolume.removeWithRetry(this.dm, n, {});
      yield* ThinVolume.removeWithRetry(this.dm, this.name, {});  // our loops are autoclear: they go with the pool
    });
    yield* this.closeSteps();
    if (o.deleteFiles) {
      const data = this.files.data;
      if (data) writeMarker(data, 'destroy');
      removePoolFiles(data, this.files.metadata, this.registryDir);
      if (data) removeMarker(data);
    }
  }

  /** Closes the registry (and the DeviceMapper, if the pool made its own). */
  close(): Promise<void> { return runAsync(this.closeSteps()); }
  closeSync(): void { runSync(this.closeSteps()); }

  private *closeSteps(): Steps<void> {
    yield* this.locked(function* (this: ThinPool): Steps<void> { this.clearCommitted(); });
    if (this.ownsDm) this.dm.close();
    this.registry.close();
  }

  // The last change this process committed stays recorded as pending until the next change replaces it (one
  // registry write fewer per change); on close it is cleared, if no other process has replaced it since.
  private clearCommitted(): void {
    const c = this.committed;
    this.committed = undefined;
    if (!c) return;
    if (sameChange(this.registry.pending(), c)) this.registry.commit({ pending: null });
  }

  // ---- the change protocol -------------------------------------------------------------------------

  /** `body` (called with this pool as `this`) under the pool's lock, reading what other processes committed
   * before it took the lock. Every read of the registry that decides a change runs in such a body. */
  private *locked<T>(body: (this: ThinPool) => Steps<T>): Steps<T> {
    return yield* step(this.lock.op(() => { this.registry.refresh(); return body.call(this); }, this.name));
  }

  private step(step: Step, change: PendingChange): void {
    this.hooks.step?.(step, change);
  }

  // A name recorded by a change a crashed process left is free again once that change is rolled back: then
  // it recovers first, and says so (the pool's transaction id may have moved).
  private *checkNameFree(name: string): Steps<boolean> {
    let taken = this.registry.get(name) !== undefined;
    const recover = taken && this.registry.pending()?.name === name;
    if (recover) {
      yield* this.recover();
      taken = this.registry.get(name) !== undefined;
    }
    if (taken) throw dmError('ERR_DM_VOLUME_EXISTS', `pool ${this.name} has a volume of that name`, name);
    if (name === this.name || (yield* step(twin(this.dm, 'exists', name)))) throw dmError('ERR_DM_VOLUME_EXISTS', 'a dm device of that name exists', name);
    return recover;
  }

  /**
   * Allocates an id and records the volume, sends the message, commits: steps 1-3 of the protocol. `tid` is
   * the pool's transaction id read under the lock; a change a crashed process left is finished first.
   * `send` sends the message (by default alone) and throws only if it did not run; `afterMessage` follows
   * the message step. Both are called with this pool as `this`.
   */
  private *createId(op: 'create' | 'snapshot', name: string, size: Sectors, parent: string | null, tid: number,
    message: (id: number) => string, send: (this: ThinPool, text: string) => Steps<void> = this.poolMessage,
    afterMessage?: (this: ThinPool) => Steps<void>): Steps<VolumeRecord> {
    for (;;) {
      let rec!: VolumeRecord;
      const change = yield* this.intendChange(tid, (t, afterFinish) => {
        // A finished change may have been a create of this very name.
        if (afterFinish && this.registry.get(name)) throw dmError('ERR_DM_VOLUME_EXISTS', `pool ${this.name} has a volume of that name`, name);
        return { op, name, size, parent, fromTid: t, toTid: t + 1 };
      }, (id) => {
        rec = { name, id, size, parent, state: 'ready', created: Date.now() };
        return { put: [rec] };
      });
      const id = change.id;
      tid = change.fromTid;
      this.step('intent', change);
      try {
        yield* send.call(this, message(id));  // throws only if the message did not run
      } catch (e) {
        if ((e as DevmapperError).code === 'EEXIST') {
          // The pool has this id though the registry thought it free: keep it taken, use the next one.
          this.registry.commit({ pending: null, remove: [name] });
          continue;
        }
        this.registry.commit({ pending: null, remove: [name], freeIds: [id] });  // a failed message changed nothing
        throw e;
      }
      this.step('message', change);
      if (afterMessage) yield* afterMessage.call(this);
      try {
        yield* this.setTransactionId(change);
      } catch (e) {
        try { yield* this.rollBackCreate(change); } catch { /* if this fails too, recover() finishes it later */ }
        throw e;
      }
      this.step('commit', change);
      this.committed = change;  // left pending: the next intend() replaces it, close() clears it
      return rec;
    }
  }

  private *poolMessage(text: string): Steps<void> {
    yield* step(twin(this.dm, 'message', this.name, 0, text));
  }

  // The commit point of every change.
  private setTransactionId(change: PendingChange): Steps<void> {
    return this.poolMessage(`set_transaction_id ${change.fromTid} ${change.toTid}`);
  }

  /**
   * Step 1: records the change `build` makes from the pool's transaction id, with its `effect` on the records.
   * A change another process left unfinished is finished first; the transaction id may then have moved, so
   * the change is built again.
   */
  private *intendChange(tid: number, build: (tid: number, afterFinish: boolean) => IntendedChange,
    effect: (id: number) => RegistryWrite): Steps<PendingChange> {
    for (let afterFinish = false; ; afterFinish = true) {
      const r = this.registry.intend(build(tid, afterFinish), this.committed, effect);
      if ('recorded' in r) return r.recorded;
      tid = yield* this.finish(r.unfinished, tid);
    }
  }

  private *rollBackCreate(change: PendingChange): Steps<void> {
    yield* this.deleteThin(change.id, change.name);
    const rec = this.registry.get(change.name);
    this.registry.commit({ remove: rec?.id === change.id ? [change.name] : [], freeIds: [change.id], pending: null });
  }

  // Step 3 of a delete: its records were updated with its intent.
  private *commitDelete(change: PendingChange): Steps<void> {
    yield* this.setTransactionId(change);
    this.step('commit', change);
    this.committed = change;
  }

  /**
   * A reload of the pool (growData, growMetadata, setFeatures) killed between its steps leaves a table loaded
   * but not live, or the pool suspended, which would hang every volume's I/O: the table is cleared (the pool
   * keeps its old one; growing again finishes a growth) and the pool resumed. Under the lock, at open.
   */
  private *repairPoolDevice(): Steps<void> {
    const info = yield* step(twin(this.dm, 'info', this.name));
    if (info.inactiveTable) yield* step(twin(this.dm, 'clear', this.name));
    if (info.suspended) yield* step(twin(this.dm, 'resume', this.name));
  }

  /**
   * Puts right the devices of this pool's volumes that a killed process left half-way, recognised by the uuid
   * the library gives them: one with no live table (an activate cut short) is removed; a table loaded but
   * not made live is cleared; a suspended one is resumed (a snapshot or resize cut short); a live table
   * smaller than its record is grown to it (a resize records its size first), and a record smaller than its
   * live table takes the table's size. Runs under the lock, at open.
   */
  private *repairDevices(): Steps<void> {
    const listed = yield* step(twin(this.dm, 'list', { uuids: true }));
    for (const d of listed) {
      const id = this.thinIdOfUuid(d.uuid);
      if (id !== undefined) yield* this.repairDevice(d.name, id);
    }
    // A node whose REMOVE ran but whose unlink did not: a volume's name under /dev/mapper with no device.
    const live = new Set(listed.map((d) => d.name));
    let entries: string[] = [];
    try { entries = fs.readdirSync(MAPPER_DIR); } catch { /* no /dev/mapper */ }
    for (const e of entries) if (!live.has(e) && this.registry.get(e)) this.dm.ensureNode(e, undefined);
  }

  /** The thin id in a dm uuid the library gave a volume of this pool, or undefined for any other uuid. */
  private thinIdOfUuid(uuid: string | undefined): number | undefined {
    const prefix = `${THIN_UUID}${this.name}-`;
    const rest = uuid?.startsWith(prefix) ? uuid.slice(prefix.length) : '';
    return /^\d+$/.test(rest) ? Number(rest) : undefined;
  }

  private *repairDevice(name: string, id: number): Steps<void> {
    const info = yield* step(twin(this.dm, 'infoIfExists', name));
    if (!info) return;
    if (!info.liveTable) {
      yield* ThinVolume.removeWithRetry(this.dm, name, {});
      return;
    }
    this.dm.ensureNode(name, info.dev);  // killed between RESUME and making the node
    if (info.inactiveTable) yield* step(twin(this.dm, 'clear', name));
    if (info.suspended) yield* step(twin(this.dm, 'resume', name));
    const rec = this.registry.get(name);
    if (!rec || rec.id !== id) return;  // not the registry's: left as it is
    const [t] = yield* step(twin(this.dm, 'table', name));
    if (!this.mapsThin(t, id)) return;
    if (t.length < rec.size) yield* this.reloadThin(name, id, rec.size, info.readOnly);
    else if (t.length > rec.size) this.registry.commit({ put: [{ ...rec, size: t.length }] });
  }

  /**
   * Completes or rolls back a change a crashed process left behind, and clears it. Runs under the lock, on
   * open and when a name is held by a pending change; every change also meets one through intend().
   */
  private *recover(): Steps<void> {
    const p = this.registry.pending();
    if (!p) return;
    yield* this.finish(p, yield* this.transactionIdSteps());
    this.clearCommitted();
  }

  /** Finishes the unfinished change `p`, given the pool's transaction id; returns the transaction id after. */
  private *finish(p: PendingChange, tid: number): Steps<number> {
    // A snapshot of an active origin suspends it: a process killed before its resume left it suspended.
    if (p.op === 'snapshot' && p.parent !== null) {
      const origin = yield* step(twin(this.dm, 'infoIfExists', p.parent));
      if (origin?.suspended && origin.liveTable) yield* step(twin(this.dm, 'resume', p.parent));
    }
    if (tid === p.toTid) {
      // Committed in the pool; the records were updated with the intent.
      this.registry.commit({ pending: null });
      return tid;
    }
    if (tid === p.fromTid) {
      if (p.op === 'delete') {
        // The user asked for the delete: finish it (deactivating first: the intent may predate the REMOVE).
        const info = yield* step(twin(this.dm, 'infoIfExists', p.name));
        if (info && (info.uuid === thinUuid(this.name, p.id) || (yield* this.isActiveThinSteps(p.name, p.id))))
          yield* ThinVolume.removeWithRetry(this.dm, p.name, {});
        yield* this.deleteThin(p.id, p.name);
        yield* this.commitDelete(p);
        return p.toTid;
      }
      yield* this.rollBackCreate(p);
      return tid;
    }
    throw dmError('ERR_DM_POOL_STATE',
      `the pool's transaction id is ${tid}, but the registry's unfinished ${p.op} of '${p.name}' expects ${p.fromTid} or ${p.toTid}; was the pool changed by another tool?`, this.name);
  }

  /**
   * `delete <id>`. ENODATA (no such thin) counts as done: never created, or deleted before a crash. EBUSY while
   * no device of this volume is active means its last device is still closing (a deferred remove runs in a
   * kernel workqueue, and the name goes before the table): retried, bounded.
   */
  private *deleteThin(id: number, name: string): Steps<void> {
    const pool = this;
    yield* retryWhileBusy(function* (): Steps<void> {
      try {
        yield* pool.poolMessage(`delete ${id}`);
      } catch (e) {
        if ((e as DevmapperError).code !== 'ENODATA') throw e;
      }
    }, { retries: 50, delayMs: 20, lasting: () => this.isActiveThinSteps(name, id) });
  }

  /**
   * @internal ThinVolume.activate's body, under the lock. CREATE + LOAD + RESUME; a device of the name that
   * a killed activate left with no live table (our uuid) is removed and the activation made again; this very
   * volume already active is fine.
   */
  *activateVolumeSteps(name: string, id: number, size: Sectors, readOnly: boolean): Steps<void> {
    yield* this.locked(function* (this: ThinPool): Steps<void> { yield* this.activateThinSteps(name, id, size, readOnly); });
  }

  private *activateThinSteps(name: string, id: number, size: Sectors, readOnly: boolean): Steps<void> {
    for (let cleared = false; ; cleared = true) {
      try {
        yield* step(twin(this.dm, 'createDevice', name, [ThinVolume.table(this, id, size)], { uuid: thinUuid(this.name, id), readOnly }));
        return;
      } catch (e) {
        if ((e as DevmapperError).code !== 'EBUSY' || (e as DevmapperError).command !== 'DM_DEV_CREATE') throw e;
        const info = yield* step(twin(this.dm, 'infoIfExists', name));
        if (!cleared && info && !info.liveTable && info.uuid === thinUuid(this.name, id)) {
          yield* ThinVolume.removeWithRetry(this.dm, name, {});
          continue;
        }
        if (!info?.liveTable || !(yield* this.isActiveThinSteps(name, id))) throw e;
        if (info.suspended) yield* step(twin(this.dm, 'resume', name));
        this.dm.ensureNode(name, info.dev);
        return;
      }
    }
  }

  /** Whether a dm device of this name is active with a thin table for this pool and id. */
  isActiveThin(name: string, id: number): Promise<boolean> { return runAsync(this.isActiveThinSteps(name, id)); }
  isActiveThinSync(name: string, id: number): boolean { return runSync(this.isActiveThinSteps(name, id)); }

  /** @internal */
  *isActiveThinSteps(name: string, id: number): Steps<boolean> {
    const info = yield* step(twin(this.dm, 'infoIfExists', name));
    if (!info?.liveTable) return false;
    const [t] = yield* step(twin(this.dm, 'table', name));
    return this.mapsThin(t, id);
  }

  // Whether a table line is a thin target of this pool for thin id `id`.
  private mapsThin(t: Target | undefined, id: number): boolean {
    return t?.type === 'thin' && t.params.split(' ')[0] === this.devSpec && Number(t.params.split(' ')[1]) === id;
  }
}
