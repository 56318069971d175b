// autoextend: LVM's thin_pool_autoextend_threshold/percent for a devmapper pool. Driven by the pool's events:
// at each wake of the shared wait (and once at the start), when used data or metadata is at or above
// `threshold` % of its total, that space grows by `percent` % (a file-backed pool extends its sparse file;
// a pool on block devices calls the `extend` hook, then takes up the device's new size), never beyond its
// maximum. The pool's low water mark is set (and kept, after each growth) at the threshold, so the kernel
// wakes the wait when writes cross it. Metadata has no settable mark: it is checked at every wake.
import fs from 'node:fs';
import { dmError } from '../core/errors';
import { Bytes, byteSize, METADATA_BLOCK_SIZE, SECTOR_SIZE } from '../core/units';
import { checkOptions, optInteger, optSignal, show } from '../core/validate';
import { MAX_METADATA_SECTORS, ThinPoolStatus, ThinPoolStatusOk } from '../targets';
import { EventPool, PoolSpace, eventSource } from './events';

/** What autoextend asks {@link AutoextendOptions.extend} to do: grow one device of a pool on block devices. */
export interface ExtendRequest {
  /** Which device: the pool's data or its metadata. */
  space: PoolSpace;
  /** The size in bytes the data or metadata device should have (a whole number of the space's blocks). */
  size: Bytes;
}

/** Options of {@link ThinPool.autoextend}; each checked before anything runs (ERR_DM_INVALID_ARGUMENT, ERR_DM_INVALID_SIZE). */
export interface AutoextendOptions {

  /** Grow when used blocks reach this % of the total: an integer 1..99 (LVM's thin_pool_autoextend_threshold). Default 80. */
  threshold?: number;
  /** Grow by this % of the current size: an integer 1..1000 (LVM's thin_pool_autoextend_percent). Default 20. */
  percent?: number;
  /** The data size (bytes, or '10G') never to grow beyond. Required. */
  maxDataSize: Bytes | number | string;
  /** The metadata size never to grow beyond; default the kernel's maximum (~15.88 GiB). */
  maxMetadataSize?: Bytes | number | string;
  /**
   * For a pool on block devices (required then): makes the device `size` bytes (e.g. lvextend); the pool then
   * takes up the device's size (growData()/growMetadata() with no size). Not called for a file-backed space.
   */
  extend?: (request: ExtendRequest) => void | Promise<void>;
  /** Ends autoextend (required); the promise resolves once a growth under way has finished. */
  signal: AbortSignal;
}

interface Checked {
  threshold: number;
  percent: number;
  max: Record<PoolSpace, number>;
  extend: ((request: ExtendRequest) => void | Promise<void>) | undefined;
  signal: AbortSignal;
}

/** What autoextend needs of a pool (ThinPool has it). */
export interface AutoextendPool extends EventPool {
  readonly lvmOwned: boolean;
  readonly files: { data?: string; metadata?: string };
  status(o: { noflush?: boolean }): Promise<ThinPoolStatus>;
  growData(size?: number): Promise<void>;
  growMetadata(size?: number): Promise<void>;
  setLowWaterMark(blocks: number): Promise<void>;
}

const MAX_METADATA_BYTES = MAX_METADATA_SECTORS * SECTOR_SIZE;

/** Every option checked before anything runs. */
export function checkAutoextendOptions(pool: AutoextendPool, options: unknown): Checked {
  const o = checkOptions<AutoextendOptions>(options, ['threshold', 'percent', 'maxDataSize', 'maxMetadataSize', 'extend', 'signal'], 'autoextend options');
  const threshold = optInteger(o.threshold, 'threshold (%)', 1, 99) ?? 80;
  const percent = optInteger(o.percent, 'percent', 1, 1000) ?? 20;
  if (o.maxDataSize === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'autoextend needs maxDataSize: the size never to grow beyond', pool.name);
  const maxData = byteSize(o.maxDataSize, 'maxDataSize', pool.name);
  const maxMetadata = o.maxMetadataSize === undefined ? MAX_METADATA_BYTES : byteSize(o.maxMetadataSize, 'maxMetadataSize', pool.name);
  if (o.extend !== undefined && typeof o.extend !== 'function') throw dmError('ERR_DM_INVALID_ARGUMENT', `extend must be a function, got ${show(o.extend)}`, pool.name);
  const signal = optSignal(o.signal);
  if (!signal) throw dmError('ERR_DM_INVALID_ARGUMENT', 'autoextend needs a signal to end it', pool.name);
  if (pool.lvmOwned) throw dmError('ERR_DM_LVM_POOL', 'autoextend refused: grow an LVM pool with lvextend (or LVM\'s own autoextend)', pool.name);
  const onDevice = (['data', 'metadata'] as const).filter((s) => pool.files[s] === undefined);
  if (onDevice.length && !o.extend)
    throw dmError('ERR_DM_INVALID_ARGUMENT', `the pool's ${onDevice.join(' and ')} ${onDevice.length > 1 ? 'are block devices' : 'is a block device'}: autoextend needs an extend hook to grow ${onDevice.length > 1 ? 'them' : 'it'}`, pool.name);
  return { threshold, percent, max: { data: Math.min(maxData, Number.MAX_SAFE_INTEGER), metadata: Math.min(maxMetadata, MAX_METADATA_BYTES) }, extend: o.extend, signal };
}

/** The low water mark (free data blocks) at which used blocks reach `threshold` % of `total`. */
export function lowWaterMarkFor(total: number, threshold: number): number {
  return total - Math.ceil((total * threshold) / 100);
}

/** Runs autoextend until the signal aborts; rejects with the first failure (of a wait, a growth, the hook). */
export function autoextend(pool: AutoextendPool, options: AutoextendOptions): Promise<void> {
  let o: Checked;
  try {
    o = checkAutoextendOptions(pool, options);
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise<void>((resolve, reject) => {
    if (o.signal.aborted) { resolve(); return; }
    const source = eventSource(pool);
    const limited: Record<PoolSpace, number | undefined> = { data: undefined, metadata: undefined };
    let running: Promise<void> | null = null;
    let again = false;
    let settled = false;

    const settle = (e?: unknown) => {
      if (settled) return;
      settled = true;
      o.signal.removeEventListener('abort', onAbort);
      unsubscribe();
      // A growth under way is let finish: the pool is never left half-grown by an abort.
      const finished = running ?? Promise.resolve();
      if (e !== undefined) finished.then(() => reject(e), () => reject(e));
      else finished.then(() => resolve(), reject);
    };
    const onAbort = () => settle();

    // One check at a time; wakes during a check make one more check after it.
    const kick = () => {
      if (settled) return;
      if (running) { again = true; return; }
      running = (async () => {
        do {
          again = false;
          await checkOnce();
        } while (again && !settled);
      })().then(() => { running = null; }, (e) => { running = null; settle(e); });
    };

    const checkOnce = async () => {
      for (;;) {
        const s = await pool.status({ noflush: true });
        if (s.state !== 'ok' || settled) return;
        const grew = (await growIfFull(s, 'data')) || (await growIfFull(s, 'metadata'));
        if (!grew) break;
      }
      const s = await pool.status({ noflush: true });
      if (s.state !== 'ok' || settled) return;
      const mark = lowWaterMarkFor(s.data.total, o.threshold);
      if (pool.params.lowWaterMark !== mark) await pool.setLowWaterMark(mark);
    };

    // Grows `space` if it is at the threshold; true if it grew.
    const growIfFull = async (s: ThinPoolStatusOk, space: PoolSpace): Promise<boolean> => {
      const { used, total } = s[space];
      if (used * 100 < total * o.threshold) return false;
      const unit = space === 'data' ? pool.params.blockSize * SECTOR_SIZE : METADATA_BLOCK_SIZE;
      const from = total * unit;
      const max = Math.floor(o.max[space] / unit) * unit;
      let size = Math.max(from + unit, Math.ceil((from * (100 + o.percent)) / 100 / unit) * unit);
      const file = pool.files[space];
      // A file already longer (a growth cut short) is taken as it is: pools only grow.
      if (file !== undefined) size = Math.max(size, fs.statSync(file).size);
      size = Math.min(size, max);
      if (size <= from) {
        if (limited[space] !== from) {
          limited[space] = from;
          source.publish({ type: 'extendLimit', space, size: from, max: o.max[space], status: s });
        }
        return false;
      }
      const grow = space === 'data' ? (n?: number) => pool.growData(n) : (n?: number) => pool.growMetadata(n);
      if (file !== undefined) {
        await grow(size);
      } else {
        await o.extend!({ space, size: size as Bytes });
        await grow();
      }
      const after = await pool.status({ noflush: true });
      const to = after.state === 'ok' ? after[space].total * unit : size;
      source.publish({ type: 'extended', space, from, to, status: after });
      return to > from;
    };

    let unsubscribe: () => void = () => undefined;
    try {
      unsubscribe = source.subscribe({
        status: kick,
        event: (e) => { if (e.type === 'error') settle(e.error); },
        end: () => settle(),
      });
    } catch (e) {
      reject(e);
      return;
    }
    o.signal.addEventListener('abort', onAbort, { once: true });
  });
}
