// ThinVolume: one thin device of a pool, activated as /dev/mapper/<name>. Each operation is one body of steps
// (core/steps.ts) with a promise form and a sync twin. What changes the pool goes through the pool's change
// protocol (changes.ts), reached with changesOf(): a volume never calls into pool.ts.
import { DeviceMapper } from '../dm/device-mapper';
import { mapperPath } from '../dm/dev-nodes';
import { dmError } from '../core/errors';
import { Bytes, Sectors, dataBlocksToSectors } from '../core/units';
import { checkOptions, optBoolean } from '../core/validate';
import { Steps, runAsync, runSync, step, twin } from '../core/steps';
import { parseThinStatus, ThinStatus } from '../targets';
import type { VolumeRecord } from './registry';
import { metadataReaderOf } from './metadata-snapshot';
import { OffloadCall, offloaded } from './offload';
import { VolumeLease, renewLeaseSteps } from './leases';
import { DEACTIVATE_KEYS, DeactivateOptions, PoolChanges, changesOf, checkDeactivateOptions, checkDeactivateValues, removeDevice, waitsLong } from './changes';

export type { DeactivateOptions, DeleteVolumeOptions } from './changes';

/** What a volume shows of its pool (ThinPool is one); its changes go through the pool's protocol. */
export interface VolumePool {
  /** The pool device's name. */
  readonly name: string;
  /** The DeviceMapper the pool uses. */
  readonly dm: DeviceMapper;
  /** `major:minor` of the pool device. */
  readonly devSpec: string;
}

/** A volume's space in the pool ({@link ThinVolume.usage}), in sectors and in bytes, whole data blocks. */
export interface VolumeUsage {
  /** Mapped space. */
  mappedSectors: Sectors;
  /** Mapped space, in bytes. */
  mappedBytes: Bytes;
  /** Mapped space no other volume of the pool maps: what deleting this volume gives back. */
  exclusiveSectors: Sectors;
  /** The same, in bytes. */
  exclusiveBytes: Bytes;
  /** Mapped space other volumes (snapshots, origins) map too. */
  sharedSectors: Sectors;
  /** The same, in bytes. */
  sharedBytes: Bytes;
  /** The last sector of the highest mapped data block; null when nothing is mapped. */
  highestMappedSector: Sectors | null;
  /** The volume's size, in sectors. */
  size: Sectors;
}
/** Options of {@link ThinVolume.activate}. */
export interface ActivateOptions {
  /** Activate the device read-only. */
  readOnly?: boolean;
}
/** Options of {@link ThinVolume.delete}: how to deactivate it first, and whether to discard it. */
export type VolumeDeleteOptions = DeactivateOptions & {
  /** Discard the whole volume first, giving its unshared blocks back to the data device. */
  discard?: boolean;
};

/**
 * A thin volume of a pool: a record of the pool's registry (name, thin id, size, parent), activated as
 * `/dev/mapper/<name>`. Each method comes as a promise and a sync twin; its changes go through the pool's
 * change protocol and lock. The getters show the record as it was when the object was made.
 */
export class ThinVolume<P extends VolumePool = VolumePool> {
  /** Made by its pool (createVolume, snapshot, volume). */
  #rec: VolumeRecord;

  /**
   * Made by its pool (createVolume, snapshot, volume); not meant to be called directly.
   * @param pool The pool the volume belongs to.
   * @param rec Its registry record.
   */
  constructor(readonly pool: P, rec: VolumeRecord) { this.#rec = rec; }

  /** The record of a volume a pool made, or undefined for anything else (a forged or copied object). */
  static recordOf(v: unknown): VolumeRecord | undefined {
    return typeof v === 'object' && v !== null && #rec in v ? (v as ThinVolume).#rec : undefined;
  }

  /** Its name, and its dm device's. */
  get name(): string { return this.#rec.name; }
  /** Its thin device id in the pool. */
  get id(): number { return this.#rec.id; }
  /** Its size, in sectors. */
  get size(): Sectors { return this.#rec.size; }
  /** The volume it is a snapshot of, by name; null for one that is no snapshot. */

  get parent(): string | null { return this.#rec.parent; }
  /** When it was made. */
  get created(): Date { return new Date(this.#rec.created); }
  /** Its owner, if it was made with a lease (as recorded when the volume object was made or last renewed). */
  get lease(): VolumeLease | undefined { return this.#rec.lease && { ...this.#rec.lease }; }
  /** `/dev/mapper/<name>`; exists while active. */
  get path(): string { return mapperPath(this.#rec.name); }

  /** Whether its dm device exists with a thin table for this pool and id. */
  isActive(): Promise<boolean> { return runAsync(this.isActiveSteps()); }
  /** The sync twin of isActive(). */
  isActiveSync(): boolean { return runSync(this.isActiveSteps()); }

  private isActiveSteps(): Steps<boolean> { return changesOf(this.pool, this.name).isActiveThinSteps(this.name, this.id); }

  /**
   * CREATE + LOAD + RESUME (removed again if a step fails); a no-op when already active. Runs under the
   * pool's lock, so that open() in another process never takes a half-made device for a leftover.
   */
  activate(o: ActivateOptions = {}): Promise<this> {
    return this.offloaded(() => this.activateSteps(o), { method: 'activate', args: [this.#rec, o] }, () => this);
  }
  /** The sync twin of activate(). */
  activateSync(o: ActivateOptions = {}): this { return runSync(this.activateSteps(o)); }

  private *activateSteps(options: ActivateOptions | undefined): Steps<this> {
    const o = checkOptions<ActivateOptions>(options, ['readOnly'], 'activate options');
    optBoolean(o.readOnly, 'readOnly');
    yield* changesOf(this.pool, this.name).activateVolumeSteps(this.name, this.id, this.size, !!o.readOnly);
    return this;
  }

  /** REMOVE, retried while busy (bounded), or deferred to last close. */
  deactivate(o: DeactivateOptions = {}): Promise<void> {
    return this.offloaded(() => this.deactivateSteps(o), { method: 'deactivate', args: [this.#rec, o], here: waitsLong(o) }, () => undefined, false);
  }
  /** The sync twin of deactivate(). */
  deactivateSync(o: DeactivateOptions = {}): void { runSync(this.deactivateSteps(o)); }

  private *deactivateSteps(options: DeactivateOptions | undefined): Steps<void> {
    yield* removeDevice(this.pool.dm, this.name, checkDeactivateOptions(options));
  }

  /** Cancels a deferred remove that has not happened yet. */
  cancelDeferredRemove(): Promise<void> { return runAsync(this.cancelSteps()); }
  /** The sync twin of cancelDeferredRemove(). */
  cancelDeferredRemoveSync(): void { runSync(this.cancelSteps()); }

  private *cancelSteps(): Steps<void> { yield* step(twin(this.pool.dm, 'message', this.name, 0, '@cancel_deferred_remove')); }

  /**
   * Deactivates, then deletes the thin device from the pool and the registry. Its snapshots keep their data.
   * With `discard`, first discards the whole volume (activating it for that if needed), as Docker's
   * dm.blkdiscard did: the pool passes the discard down to its data device for blocks no snapshot shares, so a
   * sparse data file gets that space back. Deleting alone frees the blocks in the pool only. The delete is
   * recorded before the discard: once the discard has begun, the delete is finished, even by the next open()
   * after a crash. An open volume is not discarded (ERR_DM_BUSY).
   */
  delete(o: VolumeDeleteOptions = {}): Promise<void> {
    return this.offloaded(() => this.deleteSteps(o), { method: 'delete', args: [this.#rec, o], here: waitsLong(o) }, () => undefined);
  }
  /** The sync twin of delete(). */
  deleteSync(o: VolumeDeleteOptions = {}): void { runSync(this.deleteSteps(o)); }

  private *deleteSteps(options: VolumeDeleteOptions | undefined): Steps<void> {
    const o = checkOptions<VolumeDeleteOptions>(options, [...DEACTIVATE_KEYS, 'discard'], 'delete options');
    const { discard, ...deactivate } = checkDeactivateValues(o);
    yield* changesOf(this.pool, this.name).deleteVolumeSteps(this.name, { deactivate, discard: optBoolean(discard, 'discard') });
  }

  /** Grows the volume (and its live table when active). */
  resize(size: Bytes | number | string): Promise<void> {
    return this.offloaded(() => this.resizeSteps(size), { method: 'resize', args: [this.#rec, size] }, (rec) => { this.#rec = rec as VolumeRecord; });
  }

  // A change through the pool's offload worker when it has one (offload.ts); a pool not of this library rejects.
  private offloaded<T>(body: () => Steps<T>, call: OffloadCall, result: (value: unknown) => T, locked = true): Promise<T> {
    let changes: PoolChanges;
    try {
      changes = changesOf(this.pool, this.name);
    } catch (e) {
      return Promise.reject(e);
    }
    return offloaded(changes, body, call, result, locked);
  }
  /** The sync twin of resize(). */
  resizeSync(size: Bytes | number | string): void { runSync(this.resizeSteps(size)); }

  private *resizeSteps(size: Bytes | number | string): Steps<void> {
    this.#rec = yield* changesOf(this.pool, this.name).resizeVolumeSteps(this.name, size);
  }

  /** Renews the volume's lease: its TTL runs `ttlMs` (by default its own ttlMs) from now. Returns the lease. */
  renewLease(ttlMs?: number): Promise<VolumeLease> { return runAsync(this.renewLeaseSteps(ttlMs)); }
  /** The sync twin of renewLease(). */
  renewLeaseSync(ttlMs?: number): VolumeLease { return runSync(this.renewLeaseSteps(ttlMs)); }

  private *renewLeaseSteps(ttlMs: number | undefined): Steps<VolumeLease> {
    this.#rec = yield* renewLeaseSteps(this.pool, this.name, ttlMs);
    return { ...this.#rec.lease! };
  }

  /** Its thin status line (mapped sectors, highest mapped sector); ENXIO if it is not active. */
  status(): Promise<ThinStatus> {
 return runAsync(this.statusSteps()); }
  /** The sync twin of status(). */
  statusSync(): ThinStatus { return runSync(this.statusSteps()); }

  private *statusSteps(): Steps<ThinStatus> {
    const [t] = yield* step(twin(this.pool.dm, 'status', this.name));
    return parseThinStatus(t.params);
  }

  /**
   * Space the volume uses in the pool, from the pool's metadata (active or not): mapped, exclusive to it, and
   * shared with other volumes. Exclusive space depends on every volume, so this reads the whole pool's
   * mappings, as ThinPool.usage() does (which answers for all volumes at once).
   */
  usage(): Promise<VolumeUsage> { return runAsync(this.usageSteps()); }
  /** The sync twin of usage(). */
  usageSync(): VolumeUsage { return runSync(this.usageSteps()); }

  private *usageSteps(): Steps<VolumeUsage> {
    const all = yield* metadataReaderOf(this.pool, this.name).usageSteps(undefined);
    const u = all.devices.find((d) => d.id === this.id);
    if (!u) throw dmError('ERR_DM_NO_SUCH_VOLUME', `thin id ${this.id} is not in the pool's metadata`, this.name);
    const bs = all.dataBlockSize;
    return {
      mappedSectors: dataBlocksToSectors(u.mapped, bs), mappedBytes: u.mappedBytes,
      exclusiveSectors: dataBlocksToSectors(u.exclusive, bs), exclusiveBytes: u.exclusiveBytes,
      sharedSectors: dataBlocksToSectors(u.shared, bs), sharedBytes: u.sharedBytes,
      highestMappedSector: u.highestMappedBlock === null ? null : ((u.highestMappedBlock + 1) * bs - 1) as Sectors,
      size: this.size,
    };
  }
}
