// How a pool comes to be and where it lives: its files, their loop devices, zeroed metadata, the thin-pool
// table made from them (create), found again from the live device (open) or from the files and the metadata
// superblock (attach), and grown. ThinPool (pool.ts) is built from what these return; the change protocol
// (changes.ts) then runs over it.
import fs from 'node:fs';
import path from 'node:path';
import { Block, formatDev, nodeOfDevice } from '../dm/block';
import { DeviceMapper, isDeviceMapper } from '../dm/device-mapper';
import { Loop, LoopDevice } from '../dm/loop';
import type { DevNumber } from '../core/binding';
import { dmError } from '../core/errors';
import { Bytes, Sectors, byteSize, bytesToSectors, sectors } from '../core/units';
import { checkBoolean, checkInteger, checkName, checkOptions, checkPath, optBoolean, show } from '../core/validate';
import { Op, Steps, local, sleep, step, twin } from '../core/steps';
import { line, parseThinPoolStatus, thinPool, ThinPoolFeatures, ThinPoolParams, checkBlockSize, MAX_METADATA_SECTORS } from '../targets';
import { pokeEvents } from './events';
import { IncompleteMarker, configOf, markerOwnerAlive, readMarker, readPoolConfig, readSuperblock, removeMarker, removePoolFiles, writeMarker, writePoolConfig } from './pool-files';
import { LmdbRegistry, RegistryStore } from './registry';
import { ReconcileOptions, checkReconcileOptions } from './check';
import { PoolLock } from './lock';
import { ThinPoolHooks, isLvmUuid, poolUuid, removeDevice } from './changes';
import { poolStateError } from './pool-mode';
import { MinFreeSpace, checkMinFreeSpace } from './free-space';

/** Options of {@link ThinPool.open}, and those create() and attach() share; unknown keys are refused (ERR_DM_INVALID_ARGUMENT). */
export interface ThinPoolOptions {
  /** The DeviceMapper to use (the caller closes it); by default the pool makes its own and closes it with itself. */
  dm?: DeviceMapper;
  /** Where the registry lives. Default for file-backed pools: `<data file>.registry` beside the data file. */
  registryDir?: string;
  /** Another store behind the RegistryStore interface. */
  registry?: RegistryStore;
  /** Test hooks called at points of the change protocol (crash tests). */
  hooks?: ThinPoolHooks;
  /** open() and attach(): compare the registry with the pool's metadata and live devices (default true); see ThinPool.drift. */
  check?: boolean;
  /** open() and attach(): also reconcile() when check() finds drift (see ThinPool.reconcile). */
  reconcile?: ReconcileOptions;
  /**
   * The free space createVolume and snapshot leave (else ERR_DM_POOL_FULL): '10%', bytes, or per space
   * `{ data, metadata }`; null turns it off. Saved beside the registry for every process (ThinPool.setMinFreeSpace).
   */
  minFreeSpace?: MinFreeSpace | null;
  /**
   * Run the promise API's volume changes on the process's offload worker thread (default true). false keeps
   * them on the calling thread: a little less latency per change, more event-loop lag while one runs.
   */
  offload?: boolean;
}

/**
 * Options of {@link ThinPool.create}: a name, and either two block devices or a data file (and a metadata
 * file) to make; plus the table's features. Unknown keys are refused (ERR_DM_INVALID_ARGUMENT).
 */
export interface ThinPoolCreateOptions extends ThinPoolOptions, ThinPoolFeatures {
  /** The pool device's name (`/dev/mapper/<name>`). */
  name: string;
  /** Block devices to build on... */
  metadataDevice?: string;
  /** The data block device (with metadataDevice and registryDir). */
  dataDevice?: string;
  /** ...or sparse files to create and attach to loop devices (autoclear). */
  dataFile?: string;
  /** Default: `<dataFile>.meta`. */
  metadataFile?: string;
  /** Bytes (or '10G') for files. */
  dataSize?: Bytes | number | string;
  /** Bytes (or '1G') for the metadata file; default {@link defaultMetadataSize}. */
  metadataSize?: Bytes | number | string;
  /** Data block size in sectors (default 128 = 64 KiB). */
  blockSize?: number;
  /** Free data blocks at which the pool raises an event (default: 10% of the data blocks). */
  lowWaterMark?: number;
}

/** Options of {@link ThinPool.attach}: the pool's name and its files or block devices, as create() had them. */
export interface ThinPoolAttachOptions extends ThinPoolOptions {
  /** The pool device's name. */
  name: string;
  /** The pool's files... */
  dataFile?: string;
  /** Default: `<dataFile>.meta`, as create() names it. */
  metadataFile?: string;
  /** ...or its block devices (with registryDir). */
  dataDevice?: string;
  /** The metadata block device, with dataDevice. */
  metadataDevice?: string;
}


/**
 * The metadata size of a file-backed pool unless given: 2 % of the data (Docker's 2 GiB for 100 GiB), at least
 * 32 MiB (room for thousands of volumes and snapshots: each costs a few 4 KiB metadata blocks before it maps
 * anything), at least the kernel docs' 48 bytes per data block doubled for
 * snapshots, in whole MiB, at most the kernel's ~15.88 GiB. The file is sparse: unused metadata costs no disk.
 */
export function defaultMetadataSize(dataSize: Bytes, blockSize: Sectors): Bytes {
  const blocks = Math.ceil(dataSize / (blockSize * 512));
  const mib = 2 ** 20;
  const want = Math.ceil(Math.max(32 * mib, dataSize / 50, blocks * 48 * 2) / mib) * mib;
  return Math.min(want, MAX_METADATA_SECTORS * 512) as Bytes;
}

/**
 * The backing file of a loop device this library attached for a pool. Ours are the autoclear ones (they go
 * with the pool); a loop someone else set up is theirs, and so is its file: we neither detach nor delete it.
 */
export function ownLoopBackingFile(dev: string): string | undefined {
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
export function lifecycleLock(name: string): PoolLock {
  let lock = lifecycleLocks.get(name);
  if (!lock) {
    fs.mkdirSync(LIFECYCLE_DIR, { recursive: true, mode: 0o700 });
    lifecycleLocks.set(name, lock = new PoolLock(path.join(LIFECYCLE_DIR, `${name}.lock`)));
  }
  return lock;
}

/** `body` run under the lifecycle lock of the pool `name` (checked by the caller). */
export function* underLifecycleLock<T>(name: string, body: () => Steps<T>): Steps<T> {
  return yield* step(lifecycleLock(name).op(body, name));
}

/**
 * What a create or attach is built on: files (the metadata file defaulting to `<dataFile>.meta`, as create
 * names it), or block devices, both given. The paths are checked (checkPoolOptions).
 */
function backingOf(name: string, o: { dataFile?: string; metadataFile?: string; dataDevice?: string; metadataDevice?: string }):
  { onFiles: boolean; dataFile?: string; metaFile?: string } {
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

// Under the pool name's lifecycle lock: no other create, attach or destroy of this name runs meanwhile, so a
// half-made pool device or marked files seen here are a dead process's.
// `o` has passed checkCreateOptions.
export function* provisionPool(o: ThinPoolCreateOptions): Steps<PoolParts> {
  const name = o.name;
  const blockSize = (o.blockSize ?? 128) as Sectors;
  const { onFiles, dataFile, metaFile } = backingOf(name, o);
  let dataSize: Bytes | undefined, metaSize: Bytes | undefined;
  if (onFiles) {
    dataSize = byteSize(o.dataSize, 'dataSize', name);
    metaSize = o.metadataSize !== undefined ? byteSize(o.metadataSize, 'metadataSize', name) : defaultMetadataSize(dataSize, blockSize);
  }
  const registryDir = o.registry ? o.registryDir : registryDirFor(name, o, dataFile);
  const dm = o.dm ?? new DeviceMapper();
  const undo: Op<unknown>[] = [];
  const held: LoopDevice[] = [];
  let registry: RegistryStore | undefined;
  let marked = false, madeRegistryDir = false;
  try {
    // A device of this name that a killed create or attach left without a live table is ours to clear.
    yield* clearHalfMadePool(dm, name);
    if (onFiles) {
      const leftovers = yield* claimFiles(name, dataFile!, metaFile!);
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

    const params = yield* poolParams(name, dataPath, metaPath, blockSize, o.lowWaterMark, o);
    const info = yield* step(twin(dm, 'createDevice', name, [line(thinPool, 0, params.length, params.params)], { uuid: poolUuid(name) }));
    undo.push(twin(dm, 'remove', name));
    for (const l of held) l.release();  // the pool holds the loops now; autoclear detaches them with it

    if (registryDir) writePoolConfig(registryDir, configOf(params.params));
    if (marked) removeMarker(dataFile!);
    return { name, dev: info.dev, params: thinPool.parse(thinPool.format(params.params)), files: { data: dataFile, metadata: metaFile },
      registryDir, registry, dm, ownsDm: !o.dm, lvmOwned: false, noOffload: o.offload === false };
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
export function* poolParams(name: string, dataPath: string, metaPath: string, blockSize: Sectors, lowWaterMark: number | undefined,
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
export function* clearHalfMadePool(dm: DeviceMapper, name: string): Steps<void> {
  const info = yield* step(twin(dm, 'infoIfExists', name));
  if (!info) return;
  if (info.uuid !== poolUuid(name) || info.liveTable)
    throw dmError('ERR_DM_POOL_EXISTS', 'a dm device of that name exists; open the pool instead', name);
  yield* removeDevice(dm, name, {});
}

/**
 * Whether a file pool's files may be made: they must not exist, unless a create or destroy that was killed
 * left them (its marker names a dead process): then they are leftovers, to be removed (returns true). Files
 * a loop device still serves are never taken.
 */
export function* claimFiles(name: string, dataFile: string, metaFile: string): Steps<boolean> {
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

/**
 * Loads the pool's table from its files or devices (unless it is active already), then runs `open` with the
 * DeviceMapper made here (undefined when the caller gave one), which the opened pool then owns. If `open`
 * fails, what was made here is undone.
 */
export function* attachDevices<T>(o: ThinPoolAttachOptions, open: (made: DeviceMapper | undefined) => Steps<T>): Steps<T> {
  const name = checkName(o.name, 'pool name');
  const { onFiles, dataFile, metaFile } = backingOf(name, o);
  const metaPath = metaFile ?? o.metadataDevice!;
  const registryDir = o.registry ? o.registryDir : registryDirFor(name, o, dataFile);
  const dm = o.dm ?? new DeviceMapper();
  const undo: Op<unknown>[] = [];
  const held: LoopDevice[] = [];
  try {
    let existing = yield* step(twin(dm, 'infoIfExists', name));
    if (existing?.liveTable && existing.uuid === poolUuid(name) && (yield* isInterruptedRepair(dm, name))) {
      yield* removeDevice(dm, name, {});  // set up again below, from its files or devices
      existing = undefined;
    }
    if (existing?.liveTable) {
      const [t] = yield* step(twin(dm, 'table', name));
      const dataDev = t?.type === 'thin-pool' ? thinPool.parse(t.params).dataDev : undefined;
      const same = onFiles ? dataDev !== undefined && ownLoopBackingFile(dataDev) === dataFile
        : dataDev === formatDev(yield* step(twin(Block, 'deviceNumber', o.dataDevice!)));
      if (!same) throw dmError('ERR_DM_POOL_EXISTS', `a dm device of that name exists, and it is not a pool on ${dataFile ?? o.dataDevice}`, name);
    } else {
      yield* clearHalfMadePool(dm, name);
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
      const p = yield* poolParams(name, dataPath, metaDevPath, sectors(sb.blockSize), config?.lowWaterMark, config?.features ?? {});
      yield* step(twin(dm, 'createDevice', name, [line(thinPool, 0, p.length, p.params)], { uuid: poolUuid(name) }));
      undo.push(twin(dm, 'remove', name));
      for (const l of held) l.release();
      if (registryDir && !config) writePoolConfig(registryDir, configOf(p.params));
    }
    return yield* open(o.dm ? undefined : dm);
  } catch (e) {
    for (const u of undo.reverse()) { try { yield* step(u); } catch { /* keep the first error */ } }
    if (!o.dm) dm.close();
    throw e;
  }
}

// Extends the pool's own backing file to `size` (only ever grows) and updates its loop, then hands the
// device's size in sectors (at most `max`) to `apply`. If that fails, the file is shrunk back: the pool's
// table still has the old length. Without a size, the device must have grown already.
export function* growDevice<P extends ProvisionedPool>(pool: P, dev: string, file: string | undefined, size: unknown, max: number | undefined,
apply: (this: P, deviceSectors: Sectors) => Steps<void>): Steps<void> {
  const node = nodeOfDevice(dev);
  let had: number | undefined;
  if (size !== undefined) {
    if (!file) throw dmError('ERR_DM_INVALID_ARGUMENT', 'this pool is on block devices: grow the device, then call without a size', pool.name);
    const want = byteSize(size, 'size', pool.name);
    had = fs.statSync(file).size;
    bytesToSectors(want);
    if (max !== undefined && want > max * 512) throw dmError('ERR_DM_INVALID_SIZE', `at most ${max} sectors`, pool.name);
    if (want < had) throw dmError('ERR_DM_INVALID_SIZE', `${file} is already ${had} bytes; pools only grow`, pool.name);
    // Equal: a growth killed after extending the file is finished by asking for the same size again.
    if (want > had) fs.truncateSync(file, want);
    else had = undefined;
  }
  try {
    if (size !== undefined) yield* step(twin(Loop, 'setCapacity', node));
    const s = bytesToSectors(yield* step(twin(Block, 'size', node)));
    yield* apply.call(pool, sectors(max !== undefined ? Math.min(s, max) : s));
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
export function* reloadPool(pool: ProvisionedPool, params: ThinPoolParams, length?: Sectors): Steps<void> {
  length ??= (yield* step(twin(pool.dm, 'table', pool.name)))[0].length;
  try {
    yield* step(twin(pool.dm, 'load', pool.name, [line(thinPool, 0, length, params)]));
  } catch (e) {
    throw yield* failedPoolError(pool, e);  // a failed pool refuses a new table (EINVAL)
  }
  try {
    yield* step(twin(pool.dm, 'suspend', pool.name));
  } catch (e) {
    try { yield* step(twin(pool.dm, 'clear', pool.name)); } catch { /* keep the first error */ }
    throw yield* failedPoolError(pool, e);
  }
  try {
    yield* step(twin(pool.dm, 'resume', pool.name));
  } catch (e) {
    throw yield* failedPoolError(pool, e);
  }
  Object.assign(pool.params, thinPool.parse(thinPool.format(params)));
  pokeEvents(pool);
  // attach() loads the table from these settings: keep them as the pool has them now.
  if (pool.registryDir) writePoolConfig(pool.registryDir, configOf(pool.params));
}

// `e`, or ERR_DM_POOL_STATE naming the mode when the pool has failed.
function* failedPoolError(pool: ProvisionedPool, e: unknown): Steps<unknown> {
  try {
    const [t] = yield* step(twin(pool.dm, 'status', pool.name, { noflush: true }));
    const s = parseThinPoolStatus(t.params);
    return s.state === 'ok' ? e : poolStateError(pool.name, 'reloading the pool\'s table', s, e);
  } catch {
    return e;
  }
}

/** What a pool is made of, as create, open and attach find or make it. */
export interface PoolParts {
  name: string;
  dev: DevNumber;
  params: ThinPoolParams;
  files: { data?: string; metadata?: string };
  registryDir: string | undefined;
  registry: RegistryStore;
  dm: DeviceMapper;
  /** The DeviceMapper was made here (closed with the pool), not passed in. */
  ownsDm: boolean;
  /** LVM made the pool (its dm uuid starts with LVM-). */
  lvmOwned: boolean;
  /** The caller turned the offload worker off (ThinPoolOptions.offload). */
  noOffload?: boolean;
}

/** What growth and reloads need of a pool. */
export interface ProvisionedPool {
  readonly name: string;
  readonly dm: DeviceMapper;
  readonly params: ThinPoolParams;
  readonly registryDir: string | undefined;
  readonly blockSize: Sectors;
}

/** Whether the pool device `name` holds the `error` table a repair swaps in (repair.ts): one killed half-way. */
function* isInterruptedRepair(dm: DeviceMapper, name: string): Steps<boolean> {
  const table = yield* step(twin(dm, 'table', name));
  return table.length === 1 && table[0].type === 'error';
}

/** The parts of the active pool `name`: its table, its own loops' files, its registry (opened). */
export function* discoverPool(name: string, o: ThinPoolOptions, dm: DeviceMapper, ownsDm: boolean): Steps<PoolParts> {
  const info = yield* step(twin(dm, 'info', name));
  if (!info.liveTable) {
    throw dmError('ERR_DM_POOL_STATE', info.uuid === poolUuid(name)
      ? 'a create or attach of this pool was interrupted before its table was live: create or attach it again'
      : 'the device has no live table', name);
  }
  if (info.uuid === poolUuid(name) && (yield* isInterruptedRepair(dm, name)))
    throw dmError('ERR_DM_POOL_STATE', 'a repair of this pool was interrupted (its table is error): attach() it with its files or devices to set it up again, then repair() it', name);
  const table = yield* step(twin(dm, 'table', name));
  if (table.length !== 1 || table[0].type !== 'thin-pool')
    throw dmError('ERR_DM_NOT_A_THIN_POOL', `its table is ${table.map((t) => t.type).join(', ') || 'empty'}`, name);
  const params = thinPool.parse(table[0].params);
  const dataFile = ownLoopBackingFile(params.dataDev);
  const metaFile = ownLoopBackingFile(params.metadataDev);
  const registryDir = o.registry ? o.registryDir : registryDirFor(name, o, dataFile);
  const registry = o.registry ?? LmdbRegistry.open(registryDir!);
  return { name, dev: info.dev, params, files: { data: dataFile, metadata: metaFile }, registryDir, registry, dm, ownsDm, lvmOwned: isLvmUuid(info.uuid), noOffload: o.offload === false };
}

/**
 * After open: the settings saved beside the registry are brought in line with the live table (attach() loads
 * the table from them, and a reload killed before it saved them left old ones), and the marker of a create
 * that got as far as a live pool is dropped.
 */
export function settleOpened(parts: PoolParts): void {
  const { registryDir, params } = parts;
  if (registryDir) {
    let saved: ReturnType<typeof readPoolConfig>;
    try { saved = readPoolConfig(registryDir); } catch { saved = undefined; /* not ours to trust: rewritten */ }
    const live = configOf(params);
    const on = (f: ThinPoolFeatures) => Object.keys(f).filter((k) => f[k as keyof ThinPoolFeatures]).sort().join();
    if (!saved || saved.blockSize !== live.blockSize || saved.lowWaterMark !== live.lowWaterMark || on(saved.features) !== on(live.features))
      writePoolConfig(registryDir, live);
  }
  const dataFile = parts.files.data;
  const m = dataFile ? readMarker(dataFile) : undefined;
  if (m?.op === 'create' && !markerOwnerAlive(m)) removeMarker(dataFile!);
}

/** The lock file of a pool's change protocol: beside its registry, or in /run. */
export function poolLockFile(name: string, registryDir: string | undefined): string {
  return path.join(registryDir ?? '/run', registryDir ? 'lock' : `devmapper-${name}.lock`);
}

/** Removes the files a pool's create made (and its registry), marked while it runs. */
export function deletePoolFiles(files: { data?: string; metadata?: string }, registryDir: string | undefined): void {
  const data = files.data;
  if (data) writeMarker(data, 'destroy');
  removePoolFiles(data, files.metadata, registryDir);
  if (data) removeMarker(data);
}

// ---- option checks: before anything is touched --------------------------------------------------------

const POOL_KEYS = ['dm', 'registryDir', 'registry', 'hooks', 'check', 'reconcile', 'minFreeSpace', 'offload'] as const;
const FEATURE_KEYS = ['skipBlockZeroing', 'ignoreDiscard', 'noDiscardPassdown', 'readOnly', 'errorIfNoSpace'] as const;
const BACKING_KEYS = ['name', 'dataFile', 'metadataFile', 'dataDevice', 'metadataDevice'] as const;
const REGISTRY_METHODS = ['get', 'list', 'children', 'count', 'pending', 'intend', 'commit', 'refresh', 'close', 'metadataSnapshot', 'setMetadataSnapshot'];

/** ThinPoolOptions (and `extra` keys), each value of the right kind. */
export function checkPoolOptions<T extends ThinPoolOptions>(options: unknown, extra: readonly string[], name?: string): T {
  const o = checkOptions<T>(options, [...POOL_KEYS, ...extra] as (keyof T & string)[], 'pool options');
  if (o.dm !== undefined && !isDeviceMapper(o.dm)) throw dmError('ERR_DM_INVALID_ARGUMENT', `dm must be a DeviceMapper, got ${show(o.dm)}`, name);
  if (o.registryDir !== undefined) checkPath(o.registryDir, 'registryDir');
  optBoolean(o.check, 'check');
  optBoolean(o.offload, 'offload');
  if (o.reconcile !== undefined) checkReconcileOptions(o.reconcile, name ?? 'pool');
  checkMinFreeSpace(o.minFreeSpace, name);
  if (o.registry !== undefined) {
    const r = o.registry as unknown as Record<string, unknown>;
    if (r === null || typeof r !== 'object' || REGISTRY_METHODS.some((m) => typeof r[m] !== 'function'))
      throw dmError('ERR_DM_INVALID_ARGUMENT', `registry must be a RegistryStore (${REGISTRY_METHODS.join(', ')})`, name);
  }
  if (o.hooks !== undefined) {
    const h = checkOptions<ThinPoolHooks>(o.hooks, ['step'], 'hooks');
    if (h.step !== undefined && typeof h.step !== 'function') throw dmError('ERR_DM_INVALID_ARGUMENT', 'hooks.step must be a function', name);
  }
  for (const k of BACKING_KEYS) {
    const v = (o as Record<string, unknown>)[k];
    if (k !== 'name' && v !== undefined) checkPath(v, k);
  }
  return o;
}

/** Pool features: known keys, booleans. */
export function checkFeatures(features: unknown, name?: string): ThinPoolFeatures {
  if (features === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'features must be an object', name);
  const f = checkOptions<ThinPoolFeatures>(features, [...FEATURE_KEYS], 'features');
  for (const k of FEATURE_KEYS) optBoolean(f[k], k);
  return f;
}

export function checkCreateOptions(options: unknown): ThinPoolCreateOptions {
  if (options === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'ThinPool.create needs options ({ name, dataFile, dataSize } or { name, dataDevice, metadataDevice })');
  const o = checkPoolOptions<ThinPoolCreateOptions>(options, [...BACKING_KEYS, ...FEATURE_KEYS, 'dataSize', 'metadataSize', 'blockSize', 'lowWaterMark']);
  const name = checkName(o.name, 'pool name');
  for (const k of FEATURE_KEYS) if (o[k] !== undefined) checkBoolean(o[k], k);
  const sized = (k: 'dataSize' | 'metadataSize') => {
    const n = byteSize(o[k], k, name);
    if (n % 512 !== 0) throw dmError('ERR_DM_INVALID_SIZE', `${k} ${n} is not a multiple of 512 bytes`, name);
  };
  if (o.dataSize !== undefined) sized('dataSize');
  if (o.metadataSize !== undefined) sized('metadataSize');
  if (o.blockSize !== undefined) checkBlockSize(o.blockSize);
  if (o.lowWaterMark !== undefined) checkInteger(o.lowWaterMark, 'lowWaterMark');
  // What needs no lock and no file: refused before the lifecycle lock is taken.
  if (o.readOnly) throw dmError('ERR_DM_INVALID_ARGUMENT', 'a new pool cannot be read_only (the kernel refuses it at creation)', name);
  const { onFiles, dataFile } = backingOf(name, o);
  if (onFiles && o.dataSize === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'dataSize is needed for a file-backed pool', name);
  if (onFiles && byteSize(o.dataSize, 'dataSize', name) < (o.blockSize ?? 128) * 512)
    throw dmError('ERR_DM_INVALID_SIZE', 'the data file must hold at least one block', name);
  if (!o.registry) registryDirFor(name, o, dataFile);
  return o;
}

export function checkAttachOptions(options: unknown): ThinPoolAttachOptions {
  if (options === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'ThinPool.attach needs options ({ name, dataFile } or { name, dataDevice, metadataDevice, registryDir })');
  const o = checkPoolOptions<ThinPoolAttachOptions>(options, BACKING_KEYS);
  const name = checkName(o.name, 'pool name');
  const { dataFile } = backingOf(name, o);
  if (!o.registry) registryDirFor(name, o, dataFile);
  return o;
}
