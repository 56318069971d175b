// ThinPool: a thin-pool device, from two block devices or from two sparse files on loop devices, with a
// durable registry of its volumes. This file is the public API: each method checks its arguments and runs a
// body of steps (core/steps.ts) as a promise or, in its ...Sync twin, with sync calls. How a pool is made,
// found and grown lives in provisioning.ts; every change to its metadata follows the protocol in changes.ts.
import path from 'node:path';
import { DeviceMapper } from '../dm/device-mapper';
import { formatDev } from '../dm/block';
import type { DevNumber } from '../core/binding';
import { dmError, DevmapperError, DeviceHolders, systemError } from '../core/errors';
import { describeHolders, readHolders } from '../dm/holders';
import { Bytes, Sectors, sectors } from '../core/units';
import { checkInteger, checkName, checkThinId, checkOptions, optBoolean, optSignal, show } from '../core/validate';
import { Steps, mapErrors, runAsync, runSync, step, twin } from '../core/steps';
import { ThinPoolFeatures, ThinPoolParams, ThinPoolStatus, ThinPoolStatusOk, MAX_METADATA_SECTORS } from '../targets';
import { LmdbRegistry, RegistryStore, VolumeRecord } from './registry';
import { PoolLock, WorkerLock } from './lock';
import { RemotePool, ShadowSpec, offloaded } from './offload';
import { PoolChanges, ThinPoolHooks, checkDeleteOptions, deleteWaitsLong, removeDevice } from './changes';
import { DiffOptions, DiffRange, PoolMetadata, PoolUsage } from './metadata';
import { MetadataReadOptions, PoolMetadataReader } from './metadata-snapshot';
import { AdoptOptions, DockerImport, checkAdoptOptions, readDockerRecords } from './adopt';
import { PoolCheck, ReconcileOptions, ReconcilePlan, checkReconcileOptions, checkSteps, reconcileSteps } from './check';
import {
  PoolParts, ThinPoolAttachOptions, ThinPoolCreateOptions, ThinPoolOptions, attachDevices, checkAttachOptions, checkCreateOptions,
  checkFeatures, checkPoolOptions, deletePoolFiles, discoverPool, growDevice, lifecycleLock, poolLockFile, provisionPool, reloadPool,
  settleOpened, underLifecycleLock,
} from './provisioning';
import { DeleteVolumeOptions, ThinVolume } from './volume';
import {
  CollectOptions, CollectReport, CreateVolumeOptions, SnapshotOptions, VolumeLease, checkCreateVolumeOptions, collectSteps, renewLeaseSteps,
  takeLease,
} from './leases';
import { MinFreeSpace, checkMinFreeSpace, minFreeSpaceOption } from './free-space';
import type { PendingChange } from './registry';
import { PoolEvent, PoolEventsOptions, PoolEventType, closeEvents, eventEmitter, iterateEvents, watchLowWater } from './events';
import { AutoextendOptions, autoextend } from './autoextend';
import { RepairOptions, RepairResult, checkRepairOptions, repairSteps } from './repair';

export type { Step, ThinPoolHooks } from './changes';
export type { ThinPoolOptions, ThinPoolCreateOptions, ThinPoolAttachOptions } from './provisioning';
export type { MinFreeSpace, FreeSpaceLimit } from './free-space';
export type { RepairOptions, RepairResult } from './repair';

/** A change left unfinished that open() could not finish: the pool's mode refused it (see ThinPool.deferredRecovery). */
export interface DeferredRecovery {
  /** The unfinished change, as recorded. */
  change: PendingChange;
  /** The refusal that deferred it (ERR_DM_POOL_STATE). */
  error: DevmapperError;
}
export { defaultMetadataSize } from './provisioning';

/** A volume as {@link ThinPool.list} gives it: its record and whether it is active. */
export interface VolumeListEntry extends VolumeRecord {
  /** A dm device of the volume's name exists now. */
  active: boolean;
}
/** Options of {@link ThinPool.status}. */
export interface StatusOptions {
  /** Do not let a thin-pool commit its metadata for this status. */
  noflush?: boolean;
}
/** Options of {@link ThinPool.destroy}. */
export interface DestroyOptions {
  /** Also remove the files create() made, and the registry. */
  deleteFiles?: boolean;
}
/** Options of {@link ThinPool.watchLowWater}. */
export interface WatchLowWaterOptions {
  /** Ends the watch (required). */
  signal: AbortSignal;
}

// Node's own fs errors met on the way (a missing folder, a read-only filesystem) become DevmapperErrors with
// their code, the operation and the path.
const fsErrors = <T>(operation: string, body: Steps<T>): Steps<T> => mapErrors(body, (e) => systemError(e, operation));

let makeShadow: (spec: ShadowSpec, lock: WorkerLock) => ThinPool;

/** The offload worker's pool for a pool of another thread (offload.ts): made from its parts, on the same
 * registry and lock file, its lock set for each call. */
export function shadowPool(spec: ShadowSpec): { pool: ThinPool; lock: WorkerLock } {
  const lock = new WorkerLock(poolLockFile(spec.name, spec.registryDir));
  return { pool: makeShadow(spec, lock), lock };
}

/**
 * A thin-pool device and the registry of its volumes. Made by the static create(), open(), attach() and
 * adopt(); each method checks its arguments before it changes anything (bad input: an `ERR_DM_*`
 * {@link DevmapperError}) and comes as a promise and a sync twin (events, watchLowWater and autoextend are
 * promise only). Sizes are bytes: a number (a multiple of 512) or text such as '10G'. Every change to
 * the pool's metadata runs under the pool's lock and survives a crash at any point: the next open finishes or
 * undoes it. close() when done.
 */
export class ThinPool {
  /** The pool device's name (`/dev/mapper/<name>`). */
  readonly name: string;
  /** The pool device's number. */
  readonly dev: DevNumber;
  /** The pool's table as loaded: its devices, block size, low water mark and features. */
  readonly params: ThinPoolParams;
  /** The backing files of the pool's own loop devices (absent for block devices or loops it did not make). */
  readonly files: {
    /** The data file. */
    data?: string;
    /** The metadata file. */
    metadata?: string;
  };
  /** Where the registry and the pool's saved settings live; undefined with a caller's own registry and no registryDir. */
  readonly registryDir: string | undefined;
  /** The registry of the pool's volumes. */
  readonly registry: RegistryStore;
  /** The DeviceMapper the pool uses. */
  readonly dm: DeviceMapper;
  private readonly ownsDm: boolean;
  /** LVM made this pool (its dm uuid starts with LVM-): it can be read, never changed (ERR_DM_LVM_POOL). */
  readonly lvmOwned: boolean;
  private readonly changes: PoolChanges;
  private readonly reader: PoolMetadataReader;
  #drift: PoolCheck | null = null;
  #reconciled: ReconcilePlan | null = null;
  #docker: DockerImport | null = null;
  #driftError: DevmapperError | undefined;
  #deferredRecovery: DeferredRecovery | null = null;

  private constructor(parts: PoolParts, hooks: ThinPoolHooks, lock?: PoolLock) {
    this.name = parts.name;
    this.dev = parts.dev;
    this.params = parts.params;
    this.files = parts.files;
    this.registryDir = parts.registryDir;
    this.registry = parts.registry;
    this.dm = parts.dm;
    this.ownsDm = parts.ownsDm;
    this.lvmOwned = parts.lvmOwned;
    this.changes = new PoolChanges(this, lock ?? new PoolLock(poolLockFile(this.name, this.registryDir)), hooks);
    this.reader = new PoolMetadataReader(this, this.changes);
    // The promise API's changes run on the offload worker when the worker can make the same pool: the
    // library's own DeviceMapper and registry, no hooks.
    if (!lock && !parts.noOffload && parts.ownsDm && parts.registry instanceof LmdbRegistry && parts.registryDir !== undefined && !parts.lvmOwned && !hooks.step)
      this.changes.remote = new RemotePool({ name: this.name, dev: this.dev, params: this.params, registryDir: path.resolve(this.registryDir!) });
  }

  static {
    makeShadow = (spec, lock) => new ThinPool({
      ...spec, files: {}, registry: LmdbRegistry.open(spec.registryDir), dm: new DeviceMapper(), ownsDm: true, lvmOwned: false,
    }, {}, lock);
  }

  // A pool opened by the promise API will likely change by it: its offload worker starts now, beside the caller.
  private static warmed(pool: ThinPool): ThinPool {
    pool.changes.remote?.warm();
    return pool;
  }

  /** `major:minor` of the pool device, as thin tables name it. */
  get devSpec(): string { return formatDev(this.dev); }
  /** The data block size, in sectors. */
  get blockSize(): Sectors { return this.params.blockSize; }

  /** Creates the pool. Everything done is undone if a later step fails. */
  static create(o: ThinPoolCreateOptions): Promise<ThinPool> { return runAsync(fsErrors('create pool', ThinPool.createSteps(o))).then(ThinPool.warmed); }
  /** The sync twin of create(). */
  static createSync(o: ThinPoolCreateOptions): ThinPool { return runSync(fsErrors('create pool', ThinPool.createSteps(o))); }

  private static *createSteps(options: ThinPoolCreateOptions): Steps<ThinPool> {
    const o = checkCreateOptions(options);
    return yield* underLifecycleLock(o.name, function* (): Steps<ThinPool> {
      const pool = new ThinPool(yield* provisionPool(o), o.hooks ?? {});
      if (o.minFreeSpace !== undefined) pool.changes.guard.set(checkMinFreeSpace(o.minFreeSpace, o.name));
      return pool;
    });
  }

  /** Opens an active pool: finds its devices, loop backing files and registry, and finishes an interrupted change. */
  static open(name: string, o: ThinPoolOptions = {}): Promise<ThinPool> { return runAsync(fsErrors(`open pool ${show(name)}`, ThinPool.openSteps(name, o))).then(ThinPool.warmed); }
  /** The sync twin of open(). */
  static openSync(name: string, o: ThinPoolOptions = {}): ThinPool { return runSync(fsErrors(`open pool ${show(name)}`, ThinPool.openSteps(name, o))); }

  // `made`: a DeviceMapper the caller made (attach), which the pool then owns; the caller closes it on failure.
  private static *openSteps(name: string, options: ThinPoolOptions | undefined, made?: DeviceMapper): Steps<ThinPool> {
    checkName(name, 'pool name');
    const o = checkPoolOptions(options, [], name);
    const dm = o.dm ?? made ?? new DeviceMapper();
    let parts: PoolParts | undefined;
    try {
      parts = yield* discoverPool(name, o, dm, !o.dm);
      const pool = new ThinPool(parts, o.hooks ?? {});
      // LVM's pool is LVM's to repair: nothing of it is touched.
      if (!pool.lvmOwned) yield* pool.changes.locked(function* (this: PoolChanges): Steps<void> {
        yield* this.repairPoolDevice();
        yield* this.repairDevices();
        const change = this.registry.pending();
        const refused = yield* this.recoverOrDefer();
        if (refused && change) pool.#deferredRecovery = { change, error: refused };
        if (o.minFreeSpace !== undefined) this.guard.set(checkMinFreeSpace(o.minFreeSpace, name));
      });
      settleOpened(parts);
      if (o.check !== false) {
        // The pool opens whatever the check finds, and even if it cannot run (a failed pool, another tool's
        // metadata snapshot held): its result or its error is kept for the caller to see.
        try {
          pool.#drift = yield* checkSteps(pool, pool.changes, pool.reader, undefined);
        } catch (e) {
          if (!(e instanceof DevmapperError)) throw e;
          pool.#driftError = e;
        }
        if (o.reconcile && pool.#drift && !pool.#drift.clean && !pool.lvmOwned)
          pool.#reconciled = yield* reconcileSteps(pool, pool.changes, pool.reader, checkReconcileOptions(o.reconcile, name));
      }
      return pool;
    } catch (e) {
      if (parts && !o.registry) parts.registry.close();
      if (!o.dm && !made) dm.close();
      throw e;
    }
  }

  /**
   * Takes over an active pool another tool made (dmsetup, a script, Docker's devicemapper driver): every thin
   * id in its metadata becomes a volume of a registry in `registryDir`. With `docker` (Docker's devicemapper
   * folder), Docker's records name and size the devices they describe (each checked against the pool's
   * metadata; see `adoption`); the others are named after a live device that maps them, else `thin-<id>`,
   * and sized from its table, else from their highest mapped block (see `reconciled`). A pool LVM owns is
   * refused (ERR_DM_LVM_POOL). Adopting again adds what is not recorded yet.
   */
  static adopt(name: string, o: AdoptOptions): Promise<ThinPool> { return runAsync(fsErrors(`adopt pool ${show(name)}`, ThinPool.adoptSteps(name, o))).then(ThinPool.warmed); }
  /** The sync twin of adopt(). */
  static adoptSync(name: string, o: AdoptOptions): ThinPool { return runSync(fsErrors(`adopt pool ${show(name)}`, ThinPool.adoptSteps(name, o))); }

  private static *adoptSteps(name: string, options: AdoptOptions): Steps<ThinPool> {
    checkName(name, 'pool name');
    const o = checkAdoptOptions(options, name);
    const pool = yield* ThinPool.openSteps(name, { registryDir: o.registryDir, check: false });
    try {
      pool.changes.refuseIfLvm('adopt');
      if (o.docker !== undefined) {
        const md = yield* pool.reader.metadataSteps(undefined);
        const imported = readDockerRecords(o.docker, new Set(md.devices.map((d) => d.id)), pool.blockSize);
        const registry = pool.registry;
        yield* pool.changes.locked(function* (): Steps<void> {
          registry.refresh();
          const ids = new Set(registry.list().map((r) => r.id));
          const put = imported.records.filter((r) => !registry.get(r.name) && !ids.has(r.id));
          if (put.length) registry.commit({ put, takeIds: put.map((r) => r.id) });
        });
        pool.#docker = imported;
      }
      pool.#reconciled = yield* reconcileSteps(pool, pool.changes, pool.reader, { dryRun: false, orphans: 'adopt' });
      pool.#drift = yield* checkSteps(pool, pool.changes, pool.reader, undefined);
      return pool;
    } catch (e) {
      yield* pool.closeSteps();
      throw e;
    }
  }

  /** What adopt({ docker }) imported from Docker's records, and which it skipped and why; null otherwise. */
  get adoption(): DockerImport | null { return this.#docker; }

  /**
   * Brings back a pool that is not active (after a reboot, or a destroy() that kept its files): attaches its
   * files to loop devices (or takes its block devices), loads the same table (the block size from its
   * metadata, the rest from the settings saved beside the registry), and opens it as open() does. A pool
   * already active on the same files or devices is simply opened. Files that an interrupted create or destroy
   * left are refused (create the pool again over them).
   */
  static attach(o: ThinPoolAttachOptions): Promise<ThinPool> { return runAsync(fsErrors('attach pool', ThinPool.attachSteps(o))).then(ThinPool.warmed); }
  /** The sync twin of attach(). */
  static attachSync(o: ThinPoolAttachOptions): ThinPool { return runSync(fsErrors('attach pool', ThinPool.attachSteps(o))); }

  private static *attachSteps(options: ThinPoolAttachOptions): Steps<ThinPool> {
    const o = checkAttachOptions(options);
    const poolOptions: ThinPoolOptions = { dm: o.dm, registryDir: o.registryDir, registry: o.registry, hooks: o.hooks, minFreeSpace: o.minFreeSpace, offload: o.offload };
    return yield* underLifecycleLock(o.name, () => attachDevices(o, (made) => ThinPool.openSteps(o.name, poolOptions, made)));
  }

  // ---- status and settings -------------------------------------------------------------------------

  /**
   * The pool's status: data blocks (of blockSize sectors) and 4 KiB metadata blocks used and total, and its mode
   * ('out_of_data_space': growData; 'ro' with metadata full: growMetadata). Keep both with room (README,
   * "Sizing a pool"; minFreeSpace refuses new volumes below a limit).
   */
  status(o: StatusOptions = {}): Promise<ThinPoolStatus> { return runAsync(this.statusSteps(o)); }
  /** The sync twin of status(). */
  statusSync(o: StatusOptions = {}): ThinPoolStatus { return runSync(this.statusSteps(o)); }

  private *statusSteps(options: StatusOptions | undefined): Steps<ThinPoolStatus> {
    const o = checkOptions<StatusOptions>(options, ['noflush'], 'status options');
    optBoolean(o.noflush, 'noflush');
    return yield* this.changes.statusSteps(o);
  }

  /**
   * The free space createVolume and snapshot must leave, else they are refused (ERR_DM_POOL_FULL, naming the
   * space and its free bytes) before any change: '10%', bytes ('1G' or a number), per space
   * (`{ data: '10%', metadata: '10%' }`), or null for none. Saved beside the registry, so every process
   * opening the pool applies it. Writes to existing volumes are not limited by it.
   */
  setMinFreeSpace(limit: MinFreeSpace | null): Promise<void> { return runAsync(fsErrors(`set the minimum free space of pool ${this.name}`, this.setMinFreeSpaceSteps(limit))); }
  /** The sync twin of setMinFreeSpace(). */
  setMinFreeSpaceSync(limit: MinFreeSpace | null): void { runSync(fsErrors(`set the minimum free space of pool ${this.name}`, this.setMinFreeSpaceSteps(limit))); }

  private *setMinFreeSpaceSteps(limit: MinFreeSpace | null): Steps<void> {
    if (limit === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'setMinFreeSpace needs a limit, or null for none', this.name);
    const s = checkMinFreeSpace(limit, this.name);
    yield* this.locked(function* (this: ThinPool): Steps<void> { this.changes.guard.set(s); });
  }

  /** The pool's minimum free space as saved now (undefined: none). */
  get minFreeSpace(): {
    /** The data space's limit: bytes, or a percentage ('10%'). */
    data?: string | number;
    /** The metadata space's limit. */
    metadata?: string | number;
  } | undefined {
 return minFreeSpaceOption(this.changes.guard.setting); }

  /**
   * The change a process left unfinished that open() or attach() could not finish, because the pool's mode
   * refused it (read-only: its metadata full; failed), with that refusal; null if none. It stays recorded:
   * the next change or open finishes it once the pool takes changes again (after growMetadata, say).
   */
  get deferredRecovery(): DeferredRecovery | null { return this.#deferredRecovery; }

  /** The pool's metadata transaction id, from its status; each change of this library commits a new one. ERR_DM_POOL_STATE on a failed pool. */
  transactionId(): Promise<number> { return runAsync(this.changes.transactionIdSteps()); }
  /** The sync twin of transactionId(). */
  transactionIdSync(): number { return runSync(this.changes.transactionIdSteps()); }

  /**
   * Calls `onLow(status)` while the pool's free data blocks are at or below its low water mark: once at the
   * start if they already are, then at each event of the pool's (the kernel raises one when free blocks fall to
   * the mark, and on running out of space, a mode change or a resume) that finds them so. Growing the pool
   * (growData) ends it. Rides the pool's shared event wait (events()); resolves when `signal` aborts or the
   * pool closes. Promise only: it waits for events.
   */
  watchLowWater(onLow: (status: ThinPoolStatusOk) => void | Promise<void>, options: WatchLowWaterOptions): Promise<void> {
    try {
      if (typeof onLow !== 'function') throw dmError('ERR_DM_INVALID_ARGUMENT', `onLow must be a function, got ${show(onLow)}`, this.name);
      const o = checkOptions<WatchLowWaterOptions>(options, ['signal'], 'watchLowWater options');
      if (!optSignal(o.signal)) throw dmError('ERR_DM_INVALID_ARGUMENT', 'watchLowWater needs a signal to end it', this.name);
      return watchLowWater(this, onLow, o.signal);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ---- events (events.ts, autoextend.ts): promise only ------------------------------------------------

  /**
   * The pool's events (lowWater, metadataLow, mode, needsCheck, resized, extended, extendLimit, error), each
   * with the status that caused it, from one wait shared by every subscriber of this object. Buffered: a slow
   * consumer loses none. `break` or the signal ends it; an `error` event is the last.
   */
  events(o?: PoolEventsOptions): AsyncIterableIterator<PoolEvent> { return iterateEvents(this, o); }
  /** The same events as an EventEmitter: the wait runs (and keeps the process alive) while there is a listener. */
  on<T extends PoolEventType>(type: T, listener: (e: Extract<PoolEvent, { type: T }>) => void): this { eventEmitter(this).listen(type, listener, 'on'); return this; }
  /** As on(), for one event. */
  once<T extends PoolEventType>(type: T, listener: (e: Extract<PoolEvent, { type: T }>) => void): this { eventEmitter(this).listen(type, listener, 'once'); return this; }
  /** Removes a listener on() or once() added; the wait stops with the last one. */
  off<T extends PoolEventType>(type: T, listener: (e: Extract<PoolEvent, { type: T }>) => void): this { eventEmitter(this).off(type, listener); return this; }

  /** Grows the pool as it fills (LVM's autoextend threshold/percent) until `signal` aborts; see autoextend.ts. */
  autoextend(o: AutoextendOptions): Promise<void> { return autoextend(this, o); }

  /** Reloads the pool table with new features (discard support cannot change after creation). */
  setFeatures(features: ThinPoolFeatures): Promise<void> { return runAsync(fsErrors(`set the features of pool ${this.name}`, this.setFeaturesSteps(features))); }
  /** The sync twin of setFeatures(). */
  setFeaturesSync(features: ThinPoolFeatures): void { runSync(fsErrors(`set the features of pool ${this.name}`, this.setFeaturesSteps(features))); }

  /** Reloads the pool table with a new low water mark, in free data blocks (see events' `lowWater`). */
  setLowWaterMark(blocks: number): Promise<void> {
 return runAsync(fsErrors(`set the low water mark of pool ${this.name}`, this.setLowWaterMarkSteps(blocks))); }
  /** The sync twin of setLowWaterMark(). */
  setLowWaterMarkSync(blocks: number): void { runSync(fsErrors(`set the low water mark of pool ${this.name}`, this.setLowWaterMarkSteps(blocks))); }

  private *setFeaturesSteps(features: ThinPoolFeatures): Steps<void> {
    this.changes.refuseIfLvm('change the features');
    const f = checkFeatures(features, this.name);
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      yield* reloadPool(this, { ...this.params, features: { ...this.params.features, ...f } });
    });
  }

  private *setLowWaterMarkSteps(blocks: number): Steps<void> {
    this.changes.refuseIfLvm('set the low water mark');
    checkInteger(blocks, 'low water mark (data blocks)');
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      yield* reloadPool(this, { ...this.params, lowWaterMark: blocks });
    });
  }

  /**
   * Grows the pool's data device. For a pool on its own sparse file: the file is extended to `size` and its
   * loop told (LOOP_SET_CAPACITY). For a pool on block devices, grow the device first and call this without a
   * size. Then the table is reloaded with the new length (whole blocks). Volumes stay active throughout.
   */
  growData(size?: Bytes | number | string): Promise<void> { return runAsync(fsErrors(`grow the data of pool ${this.name}`, this.growDataSteps(size))); }
  /** The sync twin of growData(). */
  growDataSync(size?: Bytes | number | string): void { runSync(fsErrors(`grow the data of pool ${this.name}`, this.growDataSteps(size))); }

  private *growDataSteps(size: Bytes | number | string | undefined): Steps<void> {
    this.changes.refuseIfLvm('grow the data');
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      const [current] = yield* step(twin(this.dm, 'table', this.name));
      yield* growDevice(this, this.params.dataDev, this.files.data, size, undefined, function* (this: ThinPool, deviceSectors: Sectors): Steps<void> {
        const length = sectors(Math.floor(deviceSectors / this.blockSize) * this.blockSize);
        if (length <= current.length) throw dmError('ERR_DM_INVALID_SIZE', `the data device holds ${length} sectors of whole blocks; the pool has ${current.length} already`, this.name);
        yield* reloadPool(this, this.params, length);
      });
    });
  }

  /**
   * Grows the pool's metadata device (at most the kernel's ~15.88 GiB), the same way as growData(); the pool
   * takes up the new size when it resumes.
   */
  growMetadata(size?: Bytes | number | string): Promise<void> { return runAsync(fsErrors(`grow the metadata of pool ${this.name}`, this.growMetadataSteps(size))); }
  /** The sync twin of growMetadata(). */
  growMetadataSync(size?: Bytes | number | string): void { runSync(fsErrors(`grow the metadata of pool ${this.name}`, this.growMetadataSteps(size))); }

  private *growMetadataSteps(size: Bytes | number | string | undefined): Steps<void> {
    this.changes.refuseIfLvm('grow the metadata');
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      const before = yield* this.changes.statusSteps({});
      yield* growDevice(this, this.params.metadataDev, this.files.metadata, size, MAX_METADATA_SECTORS, function* (this: ThinPool, deviceSectors: Sectors): Steps<void> {
        const blocks = Math.floor(deviceSectors / 8);  // 4 KiB metadata blocks
        if (before.state === 'ok' && blocks <= before.metadata.total)
          throw dmError('ERR_DM_INVALID_SIZE', `the metadata device holds ${blocks} blocks; the pool has ${before.metadata.total} already`, this.name);
        yield* reloadPool(this, this.params);
      });
    });
  }

  /**
   * Brings back a pool that a faulty device made read-only with needs_check, or failed, once the fault is
   * gone: its volumes must be inactive (or `deactivate: true`: deactivated and activated again after), the
   * kernel lets go of the pool, the whole metadata is verified in-process, needs_check is cleared only if it
   * verifies (else ERR_DM_METADATA, nothing written: use thin_repair), and the pool is loaded again. A
   * writable pool without needs_check is left as it is. See README, "Faults and recovery".
   */
  repair(o?: RepairOptions): Promise<RepairResult> { return runAsync(fsErrors(`repair pool ${this.name}`, this.repairSteps(o))); }
  /** The sync twin of repair(). */
  repairSync(o?: RepairOptions): RepairResult { return runSync(fsErrors(`repair pool ${this.name}`, this.repairSteps(o))); }

  private *repairSteps(o: RepairOptions | undefined): Steps<RepairResult> {
    return yield* repairSteps(this, this.changes, checkRepairOptions(o));
  }

  // ---- the pool's own metadata -------------------------------------------------------------------------

  /**
   * The registry compared with the pool's metadata and with the live dm devices that map this pool's thin
   * ids, as of one instant: records whose id is not in the pool (lost), ids with no record (orphans), live
   * devices with no record or a table that disagrees with their record, an unfinished change, the pool's
   * mode and needs_check. Changes nothing.
   */
  check(o?: MetadataReadOptions): Promise<PoolCheck> { return runAsync(checkSteps(this, this.changes, this.reader, o)); }
  /** The sync twin of check(). */
  checkSync(o?: MetadataReadOptions): PoolCheck { return runSync(checkSteps(this, this.changes, this.reader, o)); }

  /**
   * Brings the registry in line with the pool (check() first): finishes an unfinished change, drops lost
   * records (never one whose device is live), and adopts orphan ids as volumes (named after a live device
   * that maps them, else `thin-<id>`; sized from its table, else from the highest mapped block), or deletes
   * them through the change protocol (`orphans: 'delete'`), or keeps them (`'keep'`). Returns the plan;
   * `dryRun` only computes it. Nothing with data is deleted unless asked.
   */
  reconcile(o?: ReconcileOptions): Promise<ReconcilePlan> { return runAsync(this.reconcileSteps(o)); }
  /** The sync twin of reconcile(). */
  reconcileSync(o?: ReconcileOptions): ReconcilePlan { return runSync(this.reconcileSteps(o)); }

  private *reconcileSteps(o: ReconcileOptions | undefined): Steps<ReconcilePlan> {
    return yield* reconcileSteps(this, this.changes, this.reader, checkReconcileOptions(o, this.name));
  }

  /** What open({ reconcile }) did about the drift it found, or null. */
  get reconciled(): ReconcilePlan | null { return this.#reconciled; }

  /** What check() found when open() or attach() ran it (null if it did not run, or failed: see driftError). */
  get drift(): PoolCheck | null { return this.#drift; }
  /** Why open()'s check could not run (a failed pool, another tool's metadata snapshot held), if it could not. */
  get driftError(): DevmapperError | undefined { return this.#driftError; }

  /**
   * What the pool's on-disk metadata holds: the superblock's facts and every thin device that really exists
   * (id, mapped blocks, transaction id, creation and snapshot times), read in-process through a metadata
   * snapshot reserved for the read and released after it, whatever happens.
   */
  metadata(o?: MetadataReadOptions): Promise<PoolMetadata> { return runAsync(this.reader.metadataSteps(o)); }
  /** The sync twin of metadata(). */
  metadataSync(o?: MetadataReadOptions): PoolMetadata { return runSync(this.reader.metadataSteps(o)); }

  /**
   * Per thin id: mapped, exclusive and shared data blocks (thin_ls's MAPPED, EXCLUSIVE, SHARED), named by the
   * registry where it has a record. Exclusive blocks are what deleting the volume gives back.
   */
  usage(o?: MetadataReadOptions): Promise<PoolUsage> { return runAsync(this.reader.usageSteps(o)); }
  /** The sync twin of usage(). */
  usageSync(o?: MetadataReadOptions): PoolUsage { return runSync(this.reader.usageSteps(o)); }

  /**
   * The ranges of virtual blocks whose mapping differs between two thin devices (each a volume name, a
   * ThinVolume of this pool, or a thin id), ascending: mapped on the left only, on the right only, or to
   * different data blocks (thin_delta's left_only, right_only, different). Read chunk by chunk through one
   * metadata snapshot, held until the iteration ends (finish it, or break out of it).
   */
  diff(a: string | number | ThinVolume, b: string | number | ThinVolume, o?: MetadataReadOptions & DiffOptions): AsyncGenerator<DiffRange, void, undefined> {
    let left: number, right: number;
    try {
      [left, right] = [this.thinIdOf(a, 'left'), this.thinIdOf(b, 'right')];
    } catch (e) {
      return (async function* (): AsyncGenerator<DiffRange, void, undefined> { throw e; })();
    }
    return this.reader.diffStream(left, right, o);
  }
  /** All of diff()'s ranges at once. */
  diffSync(a: string | number | ThinVolume, b: string | number | ThinVolume, o?: MetadataReadOptions & DiffOptions): DiffRange[] {
    return runSync(this.reader.diffSteps(this.thinIdOf(a, 'left'), this.thinIdOf(b, 'right'), o));
  }

  // A volume name (through the registry), a ThinVolume of this very pool, or a thin id.
  private thinIdOf(v: unknown, side: string): number {
    if (typeof v === 'number') return checkThinId(v, `${side} thin id`);
    if (typeof v === 'string') {
      const rec = this.registry.get(checkName(v, `${side} volume name`));
      if (!rec) throw dmError('ERR_DM_NO_SUCH_VOLUME', `'${v}' is not a volume of pool ${this.name}`, v);
      return rec.id;
    }
    const rec = ThinVolume.recordOf(v);
    if (!rec) throw dmError('ERR_DM_INVALID_ARGUMENT', `${side} must be a volume name, a ThinVolume of this pool or a thin id, got ${show(v)}`, this.name);
    if ((v as ThinVolume).pool !== this) throw dmError('ERR_DM_INVALID_ARGUMENT', `the ${side} volume belongs to pool ${(v as ThinVolume).pool.name}, not ${this.name}`, this.name);
    return rec.id;
  }

  // ---- volumes ---------------------------------------------------------------------------------------

  /**
   * A new thin volume of `size` bytes (a multiple of 512; '1G' works too). Not activated. With `lease`, it
   * belongs to an owner (a process, a TTL, or both) and collect() deletes it once the owner is gone.
   */
  createVolume(name: string, size: Bytes | number | string, o?: CreateVolumeOptions): Promise<ThinVolume<ThinPool>> {
    return offloaded(this.changes, () => this.createVolumeSteps(name, size, o), { method: 'createVolume', args: [name, size, o] }, this.volumeOf);
  }
  /** The sync twin of createVolume(). */
  createVolumeSync(name: string, size: Bytes | number | string, o?: CreateVolumeOptions): ThinVolume<ThinPool> { return runSync(this.createVolumeSteps(name, size, o)); }

  private *createVolumeSteps(name: string, size: Bytes | number | string, o: CreateVolumeOptions | undefined): Steps<ThinVolume<ThinPool>> {
    const lease = takeLease(checkCreateVolumeOptions(o, 'createVolume').lease, name);
    return new ThinVolume(this, yield* this.changes.createVolumeSteps(name, size, lease));
  }

  /**
   * A snapshot of `origin` named `name`. An active origin is suspended for the create_snap message and
   * resumed whatever happens: suspend, create_snap and resume go in one native call, after the registry's
   * write, so the origin's I/O waits for the kernel's work alone.
   */
  snapshot(origin: string | ThinVolume, name: string, o?: SnapshotOptions): Promise<ThinVolume<ThinPool>> {
    // The origin goes by name, once the body's checks here have found it a volume of this pool.
    const originName = typeof origin === 'string' ? origin : ThinVolume.recordOf(origin)?.name;
    return offloaded(this.changes, () => this.snapshotSteps(origin, name, o), { method: 'snapshot', args: [originName, name, o] }, this.volumeOf);
  }
  /** The sync twin of snapshot(). */
  snapshotSync(origin: string | ThinVolume, name: string, o?: SnapshotOptions): ThinVolume<ThinPool> { return runSync(this.snapshotSteps(origin, name, o)); }

  private *snapshotSteps(origin: string | ThinVolume, name: string, o: SnapshotOptions | undefined): Steps<ThinVolume<ThinPool>> {
    const options = checkCreateVolumeOptions(o, 'snapshot');
    // A volume object is taken only from this very pool: never resolved by name here.
    let originName: string;
    if (typeof origin === 'string') {
      originName = checkName(origin, 'origin name');
    } else {
      const rec = ThinVolume.recordOf(origin);
      if (!rec) throw dmError('ERR_DM_INVALID_ARGUMENT', `origin must be a volume name or a ThinVolume of this pool, got ${show(origin)}`, this.name);
      if (origin.pool !== this) throw dmError('ERR_DM_INVALID_ARGUMENT', `the origin is a volume of pool ${origin.pool.name}, not of ${this.name}`, this.name);
      originName = rec.name;
    }
    return new ThinVolume(this, yield* this.changes.snapshotSteps(originName, name, takeLease(options.lease, name)));
  }

  /**
   * The volume's lease runs `ttlMs` (by default its own ttlMs) from now; returns the lease. A volume with no
   * lease, or whose lease has no TTL and no ttlMs is given, is refused.
   */
  renewLease(name: string, ttlMs?: number): Promise<VolumeLease> { return runAsync(this.renewLeaseSteps(name, ttlMs)); }
  /** The sync twin of renewLease(). */
  renewLeaseSync(name: string, ttlMs?: number): VolumeLease { return runSync(this.renewLeaseSteps(name, ttlMs)); }

  private *renewLeaseSteps(name: string, ttlMs: number | undefined): Steps<VolumeLease> {
    return (yield* renewLeaseSteps(this, name, ttlMs)).lease!;
  }

  /**
   * Deactivates and deletes every volume whose lease has ended (its process exited, its pid now names another
   * process, or its TTL ran out), through the normal delete; a volume busy or failing is skipped and reported.
   * A volume with a live lease, or none, is never touched. An origin is deleted like any volume: its snapshots
   * keep their data. `dryRun` only reports.
   */
  collect(o?: CollectOptions): Promise<CollectReport> { return runAsync(collectSteps(this, o)); }
  /** The sync twin of collect(). */
  collectSync(o?: CollectOptions): CollectReport { return runSync(collectSteps(this, o)); }

  /** A volume by name, or undefined. */
  volume(name: string): ThinVolume<ThinPool> | undefined {
    checkName(name, 'volume name');
    const rec = this.registry.get(name);
    return rec && new ThinVolume(this, rec);
  }

  /** All volumes, with whether each is active now. */
  list(): Promise<VolumeListEntry[]> { return runAsync(this.listSteps()); }
  /** The sync twin of list(). */
  listSync(): VolumeListEntry[] { return runSync(this.listSteps()); }

  private *listSteps(): Steps<VolumeListEntry[]> {
    const active = new Set((yield* step(twin(this.dm, 'list', { uuids: false }))).map((d) => d.name));
    return this.registry.list().map((r) => ({ ...r, active: active.has(r.name) }));
  }

  /** The layer tree, one line per volume, children indented under their parent. */
  tree(describe?: (v: VolumeListEntry) => string): Promise<string> { return runAsync(this.treeSteps(describe)); }
  /** The sync twin of tree(). */
  treeSync(describe?: (v: VolumeListEntry) => string): string { return runSync(this.treeSteps(describe)); }

  private *treeSteps(describe: (v: VolumeListEntry) => string = (v) => `${v.name} (id ${v.id})`): Steps<string> {
    if (typeof describe !== 'function') throw dmError('ERR_DM_INVALID_ARGUMENT', `describe must be a function, got ${show(describe)}`, this.name);
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
  deleteVolume(name: string, o: DeleteVolumeOptions = {}): Promise<void> {
    return offloaded(this.changes, () => this.deleteVolumeSteps(name, o), { method: 'deleteVolume', args: [name, o], here: deleteWaitsLong(o) }, () => undefined);
  }
  /** The sync twin of deleteVolume(). */
  deleteVolumeSync(name: string, o: DeleteVolumeOptions = {}): void { runSync(this.deleteVolumeSteps(name, o)); }

  private *deleteVolumeSteps(name: string, o: DeleteVolumeOptions | undefined): Steps<void> {
    checkName(name, 'volume name');
    yield* this.changes.deleteVolumeSteps(name, checkDeleteOptions(o));
  }

  /** Resizes (grows) a volume: records the size, then reloads its table if it is active. */
  resizeVolume(name: string, size: Bytes | number | string): Promise<VolumeRecord> {
    return offloaded(this.changes, () => this.changes.resizeVolumeSteps(name, size), { method: 'resizeVolume', args: [name, size] }, (r) => r as VolumeRecord);
  }
  /** The sync twin of resizeVolume(). */
  resizeVolumeSync(name: string, size: Bytes | number | string): VolumeRecord { return runSync(this.changes.resizeVolumeSteps(name, size)); }

  /** Whether a dm device of this name is active with a thin table for this pool and id. */
  isActiveThin(name: string, id: number): Promise<boolean> { return runAsync(this.isActiveThinSteps(name, id)); }
  /** The sync twin of isActiveThin(). */
  isActiveThinSync(name: string, id: number): boolean { return runSync(this.isActiveThinSteps(name, id)); }

  private *isActiveThinSteps(name: string, id: number): Steps<boolean> {
    checkName(name, 'volume name');
    checkThinId(id);
    return yield* this.changes.isActiveThinSteps(name, id);
  }

  /**
   * Removes the pool: every volume of its registry that is active, then the pool device (its own loop devices,
   * autoclear, detach with it), and closes the registry. Touches nothing the registry does not own: if
   * another device uses the pool, or a volume is open, it removes nothing and says which (ERR_DM_BUSY). With
   * deleteFiles, also removes the backing files it created and the registry; a destroy killed while deleting
   * them leaves files that a new create() over them clears. Without it, attach() brings the pool back.
   */
  destroy(o: DestroyOptions = {}): Promise<void> { return runAsync(fsErrors(`destroy pool ${this.name}`, this.destroySteps(o))); }
  /** The sync twin of destroy(). */
  destroySync(o: DestroyOptions = {}): void { runSync(fsErrors(`destroy pool ${this.name}`, this.destroySteps(o))); }

  private *destroySteps(options: DestroyOptions | undefined): Steps<void> {
    this.changes.refuseIfLvm('destroy');
    const o = checkOptions<DestroyOptions>(options, ['deleteFiles'], 'destroy options');
    optBoolean(o.deleteFiles, 'deleteFiles');
    yield* step(lifecycleLock(this.name).op(() => this.destroyUnderLock(o), this.name));
  }

  private *destroyUnderLock(o: DestroyOptions): Steps<void> {
    yield* this.locked(function* (this: ThinPool): Steps<void> {
      const ours: string[] = [], busy: { name: string; holders: DeviceHolders }[] = [], foreign: string[] = [];
      for (const d of yield* step(twin(this.dm, 'list', { uuids: true }))) {
        if (d.name === this.name) continue;
        const info = yield* step(twin(this.dm, 'infoIfExists', d.name));
        if (!info) continue;
        let deps: DevNumber[] = [];
        if (info.liveTable) { try { deps = yield* step(twin(this.dm, 'deps', d.name)); } catch { /* gone meanwhile */ } }
        const usesPool = deps.some((x) => x.major === this.dev.major && x.minor === this.dev.minor);
        const rec = this.registry.get(d.name);
        const ownUuid = this.changes.thinIdOfUuid(d.uuid) !== undefined;
        const mine = ownUuid || (usesPool && rec !== undefined && (yield* this.changes.mapsThinNow(d.name, rec.id, info)));
        if (mine) {
          ours.push(d.name);
          if (info.openCount > 0) busy.push({ name: d.name, holders: readHolders(info.dev, info.openCount) });
        } else if (usesPool) {
          foreign.push(d.name);
        }
      }
      if (foreign.length || busy.length) {
        // `holders`: the first busy volume's, else the pool's own (its sysfs holders name the foreign devices).
        const info = busy.length ? undefined : yield* step(twin(this.dm, 'infoIfExists', this.name));
        const holders = busy[0]?.holders ?? (info && readHolders(info.dev, info.openCount));
        throw dmError('ERR_DM_BUSY', [busy.length ? `volumes in use: ${busy.map((b) => `${b.name} (${describeHolders(b.holders)})`).join(', ')}` : '',
          foreign.length ? `devices the registry does not own use the pool: ${foreign.join(', ')}` : ''].filter(Boolean).join('; ') +
          '; nothing was removed', this.name, { holders });
      }
      for (const n of ours) yield* removeDevice(this.dm, n, {});
      closeEvents(this);  // the pool goes: its wait ends here, not with an error
      yield* removeDevice(this.dm, this.name, {});  // our loops are autoclear: they go with the pool
    });
    yield* this.closeSteps();
    if (o.deleteFiles) deletePoolFiles(this.files, this.registryDir);
  }

  /** Closes the registry (and the DeviceMapper, if the pool made its own). */
  close(): Promise<void> { return runAsync(this.closeSteps()); }
  /** The sync twin of close(). */
  closeSync(): void { runSync(this.closeSteps()); }

  private *closeSteps(): Steps<void> {
    closeEvents(this);
    yield* this.locked(function* (this: ThinPool): Steps<void> { this.changes.clearCommitted(); });
    try {
      if (this.ownsDm) this.dm.close();
      this.registry.close();
    } finally {
      this.changes.remote?.drop();
    }
  }

  // A volume record the offload worker made, as this pool's volume.
  private readonly volumeOf = (rec: unknown): ThinVolume<ThinPool> => new ThinVolume(this, rec as VolumeRecord);

  /** `body` under the pool's lock, with this pool as `this`. */
  private locked<T>(body: (this: ThinPool) => Steps<T>): Steps<T> {
    return this.changes.locked(body, this);
  }
}
