// ThinVolume: one thin device of a pool, activated as /dev/mapper/<name>. Each operation is one body of steps
// (./twin.ts) with a promise form and a sync twin.
import { DeviceMapper } from '../dm/device-mapper';
import type { Target } from '../dm/types';
import { dmError, DevmapperError } from '../core/errors';
import { mapperPath } from '../dm/dev-nodes';
import { Bytes, Sectors, sectorsToBytes } from '../core/units';
import { line, parseThinStatus, thin, ThinStatus } from '../targets';
import type { VolumeRecord } from './registry';
import { retryWhileBusy } from './busy';
import { Steps, runAsync, runSync, step, twin } from '../core/steps';

export interface DeactivateOptions {
  /** Remove at last close if busy, instead of retrying. */
  deferred?: boolean;
  /** EBUSY retries (udev and other short-lived openers): default 20, every 50 ms. */
  retries?: number;
  retryDelayMs?: number;
}

export interface DeleteVolumeOptions {
  /** Deactivate the volume first (ThinVolume.delete() does). */
  deactivate?: DeactivateOptions;
  /** Discard the whole volume first, giving its unshared blocks back to the data device. */
  discard?: boolean;
}

/**
 * What a volume needs of its pool (ThinPool is one). Declared here, not imported, so that the pool and its
 * volumes do not import each other; every volume the pool hands out is a ThinVolume<ThinPool>.
 */
export interface VolumePool {
  readonly name: string;
  readonly dm: DeviceMapper;
  /** `major:minor` of the pool device. */
  readonly devSpec: string;
  isActiveThin(name: string, id: number): Promise<boolean>;
  isActiveThinSync(name: string, id: number): boolean;
  activateVolumeSteps(name: string, id: number, size: Sectors, readOnly: boolean): Steps<void>;
  deleteVolumeSteps(name: string, o: DeleteVolumeOptions): Steps<void>;
  resizeVolumeSteps(name: string, size: Bytes | number | string): Steps<VolumeRecord>;
}

export interface VolumeUsage { mappedSectors: Sectors; mappedBytes: Bytes; highestMappedSector: Sectors | null; size: Sectors }

export class ThinVolume<P extends VolumePool = VolumePool> {
  constructor(readonly pool: P, private rec: VolumeRecord) {}

  get name(): string { return this.rec.name; }
  get id(): number { return this.rec.id; }
  get size(): Sectors { return this.rec.size; }
  get parent(): string | null { return this.rec.parent; }
  get created(): Date { return new Date(this.rec.created); }
  /** /dev/mapper/<name>; exists while active. */
  get path(): string { return mapperPath(this.rec.name); }

  static table(pool: { devSpec: string }, id: number, size: Sectors): Target {
    return line(thin, 0, size, { pool: pool.devSpec, deviceId: id });
  }

  isActive(): Promise<boolean> { return this.pool.isActiveThin(this.name, this.id); }
  isActiveSync(): boolean { return this.pool.isActiveThinSync(this.name, this.id); }

  /**
   * CREATE + LOAD + RESUME (removed again if a step fails); a no-op when already active. Runs under the
   * pool's lock, so that open() in another process never takes a half-made device for a leftover.
   */
  activate(o: { readOnly?: boolean } = {}): Promise<this> { return runAsync(this.activateSteps(o)); }
  activateSync(o: { readOnly?: boolean } = {}): this { return runSync(this.activateSteps(o)); }

  private *activateSteps(o: { readOnly?: boolean }): Steps<this> {
    yield* this.pool.activateVolumeSteps(this.name, this.id, this.size, !!o.readOnly);
    return this;
  }

  /** REMOVE, retried while busy (bounded), or deferred to last close. */
  deactivate(o: DeactivateOptions = {}): Promise<void> { return runAsync(ThinVolume.removeWithRetry(this.pool.dm, this.name, o)); }
  deactivateSync(o: DeactivateOptions = {}): void { runSync(ThinVolume.removeWithRetry(this.pool.dm, this.name, o)); }

  /** Cancels a deferred remove that has not happened yet. */
  async cancelDeferredRemove(): Promise<void> { await this.pool.dm.message(this.name, 0, '@cancel_deferred_remove'); }
  cancelDeferredRemoveSync(): void { this.pool.dm.messageSync(this.name, 0, '@cancel_deferred_remove'); }

  /**
   * Deactivates, then deletes the thin device from the pool and the registry. Its snapshots keep their data.
   * With `discard`, first discards the whole volume (activating it for that if needed), as Docker's
   * dm.blkdiscard did: the pool passes the discard down to its data device for blocks no snapshot shares, so a
   * sparse data file gets that space back. Deleting alone frees the blocks in the pool only. The delete is
   * recorded before the discard: once the discard has begun, the delete is finished, even by the next open()
   * after a crash. An open volume is not discarded (ERR_DM_BUSY).
   */
  delete(o: DeactivateOptions & { discard?: boolean } = {}): Promise<void> { return runAsync(this.deleteSteps(o)); }
  deleteSync(o: DeactivateOptions & { discard?: boolean } = {}): void { runSync(this.deleteSteps(o)); }

  private *deleteSteps(o: DeactivateOptions & { discard?: boolean }): Steps<void> {
    const { discard, ...deactivate } = o;
    yield* this.pool.deleteVolumeSteps(this.name, { deactivate, discard });
  }

  /** Grows the volume (and its live table when active). */
  async resize(size: Bytes | number | string): Promise<void> { this.rec = await runAsync(this.pool.resizeVolumeSteps(this.name, size)); }
  resizeSync(size: Bytes | number | string): void { this.rec = runSync(this.pool.resizeVolumeSteps(this.name, size)); }

  status(): Promise<ThinStatus> { return runAsync(this.statusSteps()); }
  statusSync(): ThinStatus { return runSync(this.statusSteps()); }

  private *statusSteps(): Steps<ThinStatus> {
    const [t] = yield* step(twin(this.pool.dm, 'status', this.name));
    return parseThinStatus(t.params);
  }

  /** Space the volume uses in the pool (it must be active). */
  usage(): Promise<VolumeUsage> { return runAsync(this.usageSteps()); }
  usageSync(): VolumeUsage { return runSync(this.usageSteps()); }

  private *usageSteps(): Steps<VolumeUsage> {
    const s = yield* this.statusSteps();
    if (s.state !== 'ok') throw dmError('ERR_DM_POOL_STATE', `thin status is ${s.state}`, this.name);
    return { mappedSectors: s.mappedSectors, mappedBytes: sectorsToBytes(s.mappedSectors), highestMappedSector: s.highestMappedSector, size: this.size };
  }

  /** @internal REMOVE, retried while busy; not active (ENXIO) counts as done. */
  static *removeWithRetry(dm: DeviceMapper, name: string, o: DeactivateOptions): Steps<void> {
    yield* retryWhileBusy(function* (): Steps<void> {
      try {
        yield* step(twin(dm, 'remove', name, { deferred: o.deferred }));
      } catch (e) {
        if ((e as DevmapperError).code !== 'ENXIO') throw e;  // ENXIO: not active
        dm.ensureNode(name, undefined);  // a node a killed REMOVE left behind
      }
    }, { retries: o.deferred ? 0 : o.retries ?? 20, delayMs: o.retryDelayMs ?? 50 });
  }
}
