// Reading a live pool's metadata through a metadata snapshot: `reserve_metadata_snap`, read the held root,
// `release_metadata_snap`, released whatever fails. The pool holds one snapshot at most. The library records
// its own holds in the registry (holder pid and start time) before the reserve: a hold whose holder died is
// released by the next reader; a held snapshot with no record is another tool's (a backup, LVM), reported,
// never released. Reserve and release run under the pool's lock (short: a few ioctls); the walk does not.
import { randomBytes } from 'node:crypto';
import { dmError, DevmapperError } from '../core/errors';
import { RawDiffChunk } from '../core/binding';
import { Sectors } from '../core/units';
import { Steps, op, runAsync, sleep, step, twin } from '../core/steps';
import { checkInteger, checkOptions } from '../core/validate';
import { DeviceMapper } from '../dm/device-mapper';
import { nodeOfDevice } from '../dm/block';
import { ThinPoolParams, ThinPoolStatusOk } from '../targets';
import type { PoolChanges } from './changes';
import type { RegistryStore, MetadataSnapshotHold } from './registry';
import { processStart } from './pool-files';
import { poolStateError } from './pool-mode';
import {
  DiffOptions, DiffRange, MetadataSource, PoolMetadata, PoolUsage, allRangesSteps, checkDiffOptions, diffChunkSteps,
  readSteps, streamRanges, toMetadata, toUsage,
} from './metadata';

/** Options of the reads of a live pool's metadata: {@link ThinPool.metadata}, usage(), diff(), check(). */
export interface MetadataReadOptions {

  /**
   * 'reserve' (default): reserve the pool's metadata snapshot for this read. 'held': read through the snapshot
   * someone already holds (another tool's: consistent, but as of its reserve), without reserving or releasing.
   */
  snapshot?: 'reserve' | 'held';
  /** How long to wait while another call of this library holds the snapshot (default 30000 ms). */
  waitMs?: number;
}

/** What the reader needs of its pool. */
export interface MetadataPool {
  readonly name: string;
  readonly dm: DeviceMapper;
  readonly params: ThinPoolParams;
  readonly registry: RegistryStore;
}

const READ_KEYS = ['snapshot', 'waitMs'] as const;

function checkReadOptions(options: MetadataReadOptions | undefined, device: string): Required<MetadataReadOptions> {
  const o = checkOptions<MetadataReadOptions>(options, [...READ_KEYS], 'metadata options');
  const snapshot = o.snapshot ?? 'reserve';
  if (snapshot !== 'reserve' && snapshot !== 'held')
    throw dmError('ERR_DM_INVALID_ARGUMENT', `snapshot must be 'reserve' or 'held', got ${String(snapshot)}`, device);
  const waitMs = o.waitMs === undefined ? 30_000 : checkInteger(o.waitMs, 'waitMs', 0, 2 ** 31 - 1);
  return { snapshot, waitMs };
}

// Snapshots this module instance reserved and is reading through, by pool and root: a hold of its own that is
// not among them was left by a release that failed, and is released like a dead holder's. Worker threads
// load their own instance, with their own token: a hold of this pid with another token is another thread's.
const reading = new Set<string>();
const readKey = (pool: string, root: number | undefined) => `${pool}\0${root}`;
const TOKEN = randomBytes(8).toString('hex');

function holderLives(pool: string, h: MetadataSnapshotHold): boolean {
  if (h.pid === 0) return false;  // abandoned: its release failed
  if (h.pid === process.pid && h.token === TOKEN) return reading.has(readKey(pool, h.root));
  return processStart(h.pid) === h.start;
}

const readers = new WeakMap<object, PoolMetadataReader>();

/** The reader of a pool that ThinPool made (volumes reach their pool's metadata through it). */
export function metadataReaderOf(pool: unknown, device?: string): PoolMetadataReader {
  const r = typeof pool === 'object' && pool !== null ? readers.get(pool) : undefined;
  if (!r) throw dmError('ERR_DM_INVALID_ARGUMENT', 'the volume\'s pool is not a ThinPool', device);
  return r;
}

export class PoolMetadataReader {
  constructor(private readonly pool: MetadataPool, private readonly changes: PoolChanges) {
    readers.set(pool, this);
    changes.thinIdsInPool = () => this.thinIdsLocked();
  }

  private get path(): string { return nodeOfDevice(this.pool.params.metadataDev); }

  *metadataSteps(options: MetadataReadOptions | undefined): Steps<PoolMetadata> {
    const o = checkReadOptions(options, this.pool.name);
    return yield* this.withView(o, (src, other) => this.then(readSteps(src, false), (raw) => toMetadata(raw, other)));
  }

  *usageSteps(options: MetadataReadOptions | undefined): Steps<PoolUsage> {
    const o = checkReadOptions(options, this.pool.name);
    const raw = yield* this.withView(o, (src) => readSteps(src, true));
    const names = new Map<number, string>();
    for (const v of this.pool.registry.list()) names.set(v.id, v.name);
    return toUsage(raw, names);
  }

  *diffSteps(a: number, b: number, options: MetadataReadOptions & DiffOptions | undefined): Steps<DiffRange[]> {
    const { snapshot, waitMs, chunkRanges } = this.checkDiff(options);
    return yield* this.withView({ snapshot, waitMs }, (src) => allRangesSteps((from) => diffChunkSteps(src, a, b, from, chunkRanges)));
  }

  /** The ranges as an async iterator; the snapshot is held from the first chunk until the iteration ends. */
  diffStream(a: number, b: number, options: MetadataReadOptions & DiffOptions | undefined): AsyncGenerator<DiffRange, void, undefined> {
    const { snapshot, waitMs, chunkRanges } = this.checkDiff(options);
    let src: MetadataSource | undefined;
    let held: number | undefined;
    const read = (from: number): Promise<RawDiffChunk> => runAsync(diffChunkSteps(src!, a, b, from, chunkRanges));
    const stream = (async function* (this: PoolMetadataReader) {
      const opened = await runAsync(this.openView({ snapshot, waitMs }));
      src = opened.src;
      held = opened.reserved;
      yield* streamRanges(read, undefined, async () => {
        // A failed release leaves the hold marked abandoned (the next reader releases it), and never hides the
        // iteration's own error.
        if (held !== undefined) await runAsync(this.release(held)).catch(() => undefined);
        held = undefined;
      });
    }).call(this);
    return stream;
  }

  private checkDiff(options: MetadataReadOptions & DiffOptions | undefined) {
    const o = checkOptions<MetadataReadOptions & DiffOptions>(options, [...READ_KEYS, 'chunkRanges'], 'diff options');
    const { snapshot, waitMs } = checkReadOptions({ snapshot: o.snapshot, waitMs: o.waitMs }, this.pool.name);
    const { chunkRanges } = checkDiffOptions({ chunkRanges: o.chunkRanges });
    return { snapshot, waitMs, chunkRanges };
  }

  private *then<A, B>(s: Steps<A>, f: (a: A) => B): Steps<B> { return f(yield* s); }

  /**
   * `body` with a source to read from: the snapshot reserved for it (released after, whatever happens), or
   * the one already held ('held'), or block 0 of a read-only pool (its metadata does not change). `other`:
   * a snapshot another tool held at the time, or null.
   */
  private *withView<T>(o: Required<MetadataReadOptions>, body: (src: MetadataSource, other: number | null) => Steps<T>): Steps<T> {
    return yield* this.withSnapshot(o, undefined, (src, other) => body(src, other));
  }

  /**
   * `body` with a source to read from: the snapshot reserved for it (released after, whatever happens), or
   * the one already held ('held'), or block 0 of a read-only pool (its metadata does not change). `other`:
   * a snapshot another tool held at the time, or null. `atReserve` runs under the pool's lock right after the
   * reserve, so what it reads (the registry, the live devices) is of the same instant as the snapshot.
   */
  *withSnapshot<X, T>(options: MetadataReadOptions | undefined, atReserve: (() => Steps<X>) | undefined,
    body: (src: MetadataSource, other: number | null, at: X) => Steps<T>): Steps<T> {
    const o = checkReadOptions(options, this.pool.name);
    const { src, reserved, other, at } = yield* this.openView(o, atReserve);
    if (reserved === undefined) return yield* body(src, other, at as X);
    let result: T;
    try {
      result = yield* body(src, other, at as X);
    } catch (e) {
      try { yield* this.release(reserved); } catch { /* the read's error comes first; the next reader releases it */ }
      throw e;
    }
    // The read is done: a release that fails leaves the hold marked abandoned, which the next reader releases.
    try { yield* this.release(reserved); } catch { /* see above */ }
    return result;
  }

  private *openView<X>(o: Required<MetadataReadOptions>, atReserve?: () => Steps<X>):
    Steps<{ src: MetadataSource; reserved?: number; other: number | null; at?: X }> {
    const path = this.path;
    if (o.snapshot === 'held') {
      return yield* this.changes.locked(function* (this: PoolMetadataReader) {
        const s = yield* this.poolStatus();
        if (s.heldMetadataRoot === null) throw dmError('ERR_DM_POOL_STATE', 'no metadata snapshot is held in the pool', this.pool.name);
        const at = atReserve ? yield* atReserve() : undefined;
        return { src: { path, view: { held: true, heldRoot: s.heldMetadataRoot } }, other: s.heldMetadataRoot, at };
      }, this);
    }
    const deadline = Date.now() + o.waitMs;
    for (;;) {
      const r = yield* this.changes.locked(function* (this: PoolMetadataReader) {
        const got: ({ root: number } | { holder: number } | { readOnly: true; other: number | null }) & { at?: X } = yield* this.reserveLocked();
        if ('holder' in got || !atReserve) return got;
        try {
          return { ...got, at: yield* atReserve() };
        } catch (e) {
          if ('root' in got) try { yield* this.releaseLocked(got.root); } catch { /* the next reader releases it */ }
          throw e;
        }
      }, this);
      if ('root' in r) return { src: { path, view: { held: true, heldRoot: r.root } }, reserved: r.root, other: null, at: r.at };
      if ('readOnly' in r) return { src: { path, view: {} }, other: r.other, at: r.at };
      if (Date.now() >= deadline)
        throw dmError('ERR_DM_BUSY', `process ${r.holder} holds the pool's metadata snapshot (waited ${o.waitMs} ms)`, this.pool.name);
      // A read of this very process (a diff being iterated) ends only if the event loop runs: a sync call
      // cannot wait for it.
      const pause = sleep(20);
      yield* step(r.holder !== process.pid ? pause : op(() => {
        throw dmError('ERR_DM_IN_PROGRESS', 'a metadata read of this process holds the pool\'s metadata snapshot; a sync call cannot wait for it', this.pool.name);
      }, () => pause.async()));
    }
  }

  /**
   * The thin ids the pool holds now, read through a snapshot reserved and released here; the caller holds the
   * pool's lock. Undefined when a read of this process holds the snapshot (its copy may predate the question).
   */
  *thinIdsLocked(): Steps<Set<number> | undefined> {
    const got = yield* this.reserveLocked();
    if ('holder' in got) return undefined;
    const src: MetadataSource = 'root' in got ? { path: this.path, view: { held: true, heldRoot: got.root } } : { path: this.path, view: {} };
    try {
      return new Set((yield* readSteps(src, false)).ids);
    } finally {
      if ('root' in got) try { yield* this.releaseLocked(got.root); } catch { /* the next reader releases it */ }
    }
  }

  private *poolStatus(): Steps<ThinPoolStatusOk> {
    const s = yield* this.changes.statusSteps({ noflush: true });
    if (s.state !== 'ok') throw poolStateError(this.pool.name, 'a metadata read', s);
    return s;
  }

  private *message(text: string): Steps<void> {
    yield* step(twin(this.pool.dm, 'message', this.pool.name, 0, text));
  }

  // Under the lock: a snapshot for this reader (its root), or a live holder of ours to wait for, or a
  // read-only pool to read as it is (no reserve possible, nothing changes).
  private *reserveLocked(): Steps<{ root: number } | { holder: number } | { readOnly: true; other: number | null }> {
    const registry = this.pool.registry;
    const s = yield* this.poolStatus();
    const hold = registry.metadataSnapshot();
    const held = s.heldMetadataRoot;
    // A read-only pool refuses messages (EOPNOTSUPP) and commits nothing: block 0 is stable. A snapshot of
    // ours left held is released once the pool is writable again.
    if (s.mode === 'ro') return { readOnly: true, other: held !== null && hold?.root !== held ? held : null };
    if (held !== null) {
      // Ours if its record names that very root; or, for a hold recorded without one (its holder died
      // between the reserve and writing the root), if the held copy is of the transaction the record names.
      if (hold && hold.root === undefined && hold.tid !== undefined && !holderLives(this.pool.name, hold)) {
        const copy = yield* readSteps({ path: this.path, view: { held: true, heldRoot: held } }, false);
        if (copy.view.transactionId === hold.tid) registry.setMetadataSnapshot({ ...hold, root: held });
      }
      const ours = registry.metadataSnapshot();
      if (ours && ours.root === held) {
        if (holderLives(this.pool.name, ours)) return { holder: ours.pid };
        yield* this.message('release_metadata_snap');
        registry.setMetadataSnapshot(null);
      } else {
        if (hold) registry.setMetadataSnapshot(null);  // its snapshot is gone; the one now held is not ours
        throw dmError('ERR_DM_BUSY', `another tool holds the pool's metadata snapshot (block ${held}); read through it with { snapshot: 'held' }, or release it (dmsetup message ${this.pool.name} 0 release_metadata_snap) once that tool is done`, this.pool.name);
      }
    } else if (hold) {
      registry.setMetadataSnapshot(null);  // its holder died before its reserve or after its release
    }
    const start = processStart(process.pid) ?? '';
    registry.setMetadataSnapshot({ pid: process.pid, start, token: TOKEN, tid: s.transactionId });
    try {
      yield* this.message('reserve_metadata_snap');
    } catch (e) {
      registry.setMetadataSnapshot(null);
      if ((e as DevmapperError).code === 'EBUSY')
        throw dmError('ERR_DM_BUSY', 'another tool reserved the pool\'s metadata snapshot just now', this.pool.name);
      throw e;
    }
    const after = yield* this.poolStatus();
    if (after.heldMetadataRoot === null) throw dmError('ERR_DM_INTERNAL', 'reserve_metadata_snap left no held root', this.pool.name);
    registry.setMetadataSnapshot({ pid: process.pid, start, token: TOKEN, tid: s.transactionId, root: after.heldMetadataRoot });
    reading.add(readKey(this.pool.name, after.heldMetadataRoot));
    return { root: after.heldMetadataRoot };
  }

  /** Releases the snapshot this reader reserved at `root` (if it is still the one held) and its record. */
  private *release(root: number): Steps<void> {
    yield* this.changes.locked(() => this.releaseLocked(root));
  }

  private *releaseLocked(root: number): Steps<void> {
    reading.delete(readKey(this.pool.name, root));
    const registry = this.pool.registry;
    const hold = registry.metadataSnapshot();
    const mine = hold?.root === root && hold.pid === process.pid && hold.token === TOKEN;
    const s = yield* this.changes.statusSteps({ noflush: true });
    if (s.state === 'ok' && s.heldMetadataRoot !== root) {
      if (mine) registry.setMetadataSnapshot(null);  // released already (by hand)
      return;
    }
    try {
      if (s.state !== 'ok' || s.mode === 'ro') throw poolStateError(this.pool.name, 'releasing the metadata snapshot (it stays held until the pool is writable)', s);
      yield* this.message('release_metadata_snap');
    } catch (e) {
      // Left to the next reader, who releases an abandoned hold (pid 0) once the pool takes messages again.
      if (mine) registry.setMetadataSnapshot({ ...hold!, pid: 0 });
      throw e;
    }
    if (mine) registry.setMetadataSnapshot(null);
  }
}
