// ThinVolume: one thin device of a pool, activated as /dev/mapper/<name>.
import { DeviceMapper, Target } from '../device-mapper';
import { Block } from '../block';
import { dmError, DevmapperError } from '../errors';
import { mapperPath } from '../dev-nodes';
import { Bytes, Sectors, sectorsToBytes } from '../units';
import { line, parseThinStatus, thin, ThinStatus } from '../targets';
import type { ThinPool } from './pool';
import type { VolumeRecord } from './registry';
import { retryWhileBusy } from './busy';

export interface DeactivateOptions {
  /** Remove at last close if busy, instead of retrying. */
  deferred?: boolean;
  /** EBUSY retries (udev and other short-lived openers): default 20, every 50 ms. */
  retries?: number;
  retryDelayMs?: number;
}

export interface VolumeUsage { mappedSectors: Sectors; mappedBytes: Bytes; highestMappedSector: Sectors | null; size: Sectors }

export class ThinVolume {
  constructor(readonly pool: ThinPool, private rec: VolumeRecord) {}

  get name(): string { return this.rec.name; }
  get id(): number { return this.rec.id; }
  get size(): Sectors { return this.rec.size; }
  get parent(): string | null { return this.rec.parent; }
  get created(): Date { return new Date(this.rec.created); }
  /** /dev/mapper/<name>; exists while active. */
  get path(): string { return mapperPath(this.rec.name); }

  static table(pool: ThinPool, id: number, size: Sectors): Target {
    return line(thin, 0, size, { pool: pool.devSpec, deviceId: id });
  }

  isActive(): Promise<boolean> { return this.pool.isActiveThin(this.name, this.id); }

  /** CREATE + LOAD + RESUME (removed again if a step fails); a no-op when already active. */
  async activate(o: { readOnly?: boolean } = {}): Promise<this> {
    try {
      await this.pool.dm.createDevice(this.name, [ThinVolume.table(this.pool, this.id, this.size)],
        { uuid: `DEVMAPPER-THIN-${this.pool.name}-${this.id}`, readOnly: o.readOnly });
    } catch (e) {
      // EBUSY from CREATE: the name is taken; fine if it is this volume, already active.
      if ((e as DevmapperError).code !== 'EBUSY' || (e as DevmapperError).command !== 'DM_DEV_CREATE' || !(await this.isActive())) throw e;
    }
    return this;
  }

  /** REMOVE, retried while busy (bounded), or deferred to last close. */
  async deactivate(o: DeactivateOptions = {}): Promise<void> {
    await ThinVolume.removeWithRetry(this.pool.dm, this.name, o);
  }

  /** Cancels a deferred remove that has not happened yet. */
  async cancelDeferredRemove(): Promise<void> {
    await this.pool.dm.message(this.name, 0, '@cancel_deferred_remove');
  }

  /**
   * Deactivates, then deletes the thin device from the pool and the registry. Its snapshots keep their data.
   * With `discard`, first discards the whole volume (activating it for that if needed), as Docker's
   * dm.blkdiscard did: the pool passes the discard down to its data device for blocks no snapshot shares, so a
   * sparse data file gets that space back. Deleting alone frees the blocks in the pool only.
   */
  async delete(o: DeactivateOptions & { discard?: boolean } = {}): Promise<void> {
    const { discard, ...deactivate } = o;
    if (discard) {
      const wasActive = await this.isActive();
      if (!wasActive) await this.activate();
      try {
        await Block.discard(this.path, 0, sectorsToBytes(this.size));
      } catch (e) {
        if (!wasActive) await this.deactivate().catch(() => undefined);  // as it was
        throw e;
      }
    }
    await this.pool.deleteVolume(this.name, { deactivate });
  }

  /** Grows the volume (and its live table when active). */
  async resize(size: Bytes | number | string): Promise<void> {
    this.rec = await this.pool.resizeVolume(this.name, size);
  }

  async status(): Promise<ThinStatus> {
    const [t] = await this.pool.dm.status(this.name);
    return parseThinStatus(t.params);
  }

  /** Space the volume uses in the pool (it must be active). */
  async usage(): Promise<VolumeUsage> {
    const s = await this.status();
    if (s.state !== 'ok') throw dmError('ERR_DM_POOL_STATE', `thin status is ${s.state}`, this.name);
    return { mappedSectors: s.mappedSectors, mappedBytes: sectorsToBytes(s.mappedSectors), highestMappedSector: s.highestMappedSector, size: this.size };
  }

  static async removeWithRetry(dm: DeviceMapper, name: string, o: DeactivateOptions): Promise<void> {
    await retryWhileBusy(async () => {
      try {
        await dm.remove(name, { deferred: o.deferred });
      } catch (e) {
        if ((e as DevmapperError).code !== 'ENXIO') throw e;  // ENXIO: not active
      }
    }, { retries: o.deferred ? 0 : o.retries ?? 20, delayMs: o.retryDelayMs ?? 50 });
  }
}
