// The durable record of a pool's volumes: name -> thin id, size, parent, state, created time; which ids are
// taken; and at most one pending change (the pool's transaction id is the commit point, see changes.ts).
// RegistryStore is the small interface a user can implement over another store; LmdbRegistry is ours.
import fs from 'node:fs';
import path from 'node:path';
import { dmError, withSystemErrors } from '../core/errors';
import { Sectors } from '../core/units';
import { MAX_THIN_ID, checkPath } from '../core/validate';
import { KvStore, native } from '../core/binding';

/** A volume record's state; every record written is 'ready'. */
export type VolumeState = 'ready';

/** A volume's lease as its record keeps it. */
export interface VolumeLease {
  /** The owning process, as its pid namespace numbers it. */
  pid?: number;
  /** The owner's start time (`/proc/<pid>/stat` field 22): a reused pid is not the owner. */
  pidStart?: string;
  /** The boot and pid namespace in which `pid` names the owner: elsewhere the pid says nothing. */
  bootId?: string;
  /** The pid namespace in which `pid` was given (the recording process's /proc/self/ns/pid). */
  pidNamespace?: string;
  /** The lease's time to live, in milliseconds: renewLease() runs it again from then. */
  ttlMs?: number;
  /** ms since the epoch (wall clock) at which the TTL runs out, unless renewed. */
  expiresAt?: number;
}

/** A volume as the registry records it. */
export interface VolumeRecord {
  /** The volume's name (and its dm device's). */
  name: string;
  /** Its thin device id in the pool. */
  id: number;
  /** Its size, in sectors. */
  size: Sectors;
  /** The volume this one is a snapshot of, when it was made (null for a base volume). */
  parent: string | null;
  /** Always 'ready'. */
  state: VolumeState;
  /** ms since the epoch */
  created: number;
  /** Its owner, if it was made with one (see leases.ts); absent in records of earlier versions. */
  lease?: VolumeLease;
}

/** A change sent or about to be sent to the pool, not yet committed by set_transaction_id. */
export interface PendingChange {
  /** What the change does: create_thin, create_snap or delete. */
  op: 'create' | 'snapshot' | 'delete';
  /** The thin id it makes or deletes. */
  id: number;
  /** The volume's name. */
  name: string;
  /** The volume's size, in sectors. */
  size: Sectors;
  /** The snapshot's origin; null otherwise. */
  parent: string | null;
  /** The pool's transaction id before the change, and after its commit. */
  fromTid: number;
  /** The pool's transaction id once the change committed. */
  toTid: number;
}

/**
 * A metadata snapshot this library reserved in the pool (the pool holds one at most): who holds it, so that
 * one whose holder died is released by the next reader, and one with no record is known to be another tool's.
 */
export interface MetadataSnapshotHold {
  /** 0: abandoned (its release failed); the next reader releases it. */
  pid: number;
  /** The holder's start time (`/proc/<pid>/stat` field 22): a reused pid is not the holder. */
  start: string;
  /** Which module instance (thread) of that process holds it. */
  token?: string;
  /** The pool's transaction id at the reserve (the held copy carries it): tells a hold killed before it
   * recorded its root from a snapshot another tool reserved since. */
  tid?: number;
  /** The held root once the reserve ran; absent between recording the hold and the reserve. */
  root?: number;
}

/** One atomic, durable write. */
export interface RegistryWrite {
  /** Records to write (by name: a record of the same name is replaced). */
  put?: VolumeRecord[];
  /** Volumes to forget. Their children are re-parented to the removed volume's parent (they keep their data). */
  remove?: string[];
  /** Mark ids in use (by a volume, or by something in the pool the registry did not know). */
  takeIds?: number[];
  /** Give ids back for reuse. */
  freeIds?: number[];
  /** Set (object) or clear (null) the pending change; undefined leaves it. */
  pending?: PendingChange | null;
}

/** The same change (pending records are compared by value: they round-trip through the store). */
export function sameChange(a: PendingChange | undefined, b: PendingChange | undefined): boolean {
  return !!a && !!b && a.op === b.op && a.id === b.id && a.name === b.name && a.fromTid === b.fromTid && a.toTid === b.toTid;
}

/** What intend() is asked to record: the change, with its id when it names an existing volume (delete). */
export type IntendedChange = Omit<PendingChange, 'id'> & {
  /** The existing volume's id (delete); absent: the next free id is taken. */
  id?: number;
};

/** What intend() did. */
export type IntendResult = {
  /** The change, recorded as pending with its id. */
  recorded: PendingChange;
} | {
  /** The other change left pending, unfinished: nothing was written. */
  unfinished: PendingChange;
};

/**
 * The store of a pool's volume records, its taken ids and its pending change: what a ThinPool needs of a
 * registry (LmdbRegistry is the library's own; pass another as ThinPoolOptions.registry). Synchronous, but for
 * the optional commitAsync and intendAsync; every write atomic and durable; the pool calls it under its
 * inter-process lock.
 */
export interface RegistryStore {
  /** The record of the volume `name`, or undefined. */
  get(name: string): VolumeRecord | undefined;
  /** Every record. */
  list(): VolumeRecord[];
  /** The volumes whose parent is `name`. */
  children(name: string): VolumeRecord[];
  /** How many records there are. */
  count(): number;
  /** The change recorded as pending, if any. */
  pending(): PendingChange | undefined;
  /** The id the next allocation gets: a freed id if any, else the lowest never used. O(log n). */
  nextFreeId(): number;
  /** Applies one {@link RegistryWrite}, atomically and durably. */
  commit(w: RegistryWrite): void;
  /**
   * commit() for the promise API: the same write, its durable commit off the main thread. Optional: a store
   * without it has commit() called instead.
   */
  commitAsync?(w: RegistryWrite): Promise<void>;
  /**
   * Step 1 of a change, in one atomic, durable write: takes the change's id (or the next free one, as
   * nextFreeId()), records the change as pending, and applies `effect(id)`, the change's own effect on the
   * records (as commit() would). A pending change that committed is simply replaced: the caller's own last
   * `committed` change, or one whose toTid is this change's fromTid (its set_transaction_id moved the pool
   * there). Any other pending change is unfinished: nothing is written and it comes back.
   */
  intend(change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite):
    IntendResult;
  /** intend() for the promise API, as commitAsync is commit()'s. Optional, likewise. */
  intendAsync?(change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite): Promise<IntendResult>;
  /** Called after the inter-process lock is taken: reads must see other processes' commits. */
  refresh(): void;
  /** The metadata snapshot this library holds in the pool, if any (see MetadataSnapshotHold). */
  metadataSnapshot(): MetadataSnapshotHold | undefined;
  /** Records (or, with null, clears) the hold; one durable write. */
  setMetadataSnapshot(hold: MetadataSnapshotHold | null): void;
  /**
   * The pool's minFreeSpace setting as last stored (JSON text), if any. Optional, with setMinFreeSpace: a store
   * without them has the setting kept in a file beside the registry (registryDir), or in the process.
   */
  minFreeSpace?(): string | undefined;
  /** Stores (or, with null, clears) the minFreeSpace setting; one durable write. */
  setMinFreeSpace?(json: string | null): void;
  /** Releases the store; later calls are not expected. */
  close(): void;
}

// Keys (names hold no '/'): 'vol/<name>' -> VolumeRecord as JSON; 'child/<parent>/<name>' -> '' (index for
// children()); 'free/<id, 8 hex digits>' -> '' (freed ids; fixed width, so the first key is the lowest id);
// 'next' -> the lowest never-used id; 'pending' -> PendingChange as JSON; 'metasnap' -> MetadataSnapshotHold;
// 'minfree' -> the pool's minFreeSpace setting (free-space.ts) as JSON.
const VOL = 'vol/', FREE = 'free/';
const childPrefix = (parent: string) => `child/${parent}/`;
const freeKey = (id: number) => FREE + id.toString(16).padStart(8, '0');
const parsed = <T>(v: string | undefined): T | undefined => (v === undefined ? undefined : JSON.parse(v) as T);

/**
 * What the registry's reads and writes go through: the store itself (reads outside a write, and the sync form's
 * write transaction), or a Batch (the promise form's writes, committed off the main thread).
 */
interface KvView {
  get(key: string): string | undefined;
  put(key: string, value: string): void;
  del(key: string): unknown;
  range(prefix: string, limit?: number): [string, string][];
  range(prefix: string, limit: number | undefined, keysOnly: true): string[];
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));  // LMDB's key order

/** Writes kept in memory over the store's last commit, read back by the same work; applied as one commit. */
class Batch implements KvView {
  readonly writes = new Map<string, string | null>();
  constructor(private readonly kv: KvStore) {}

  get(key: string): string | undefined {
    const w = this.writes.get(key);
    return w === undefined ? this.kv.get(key) : w ?? undefined;
  }

  put(key: string, value: string): void { this.writes.set(key, value); }
  del(key: string): void { this.writes.set(key, null); }

  range(prefix: string, limit?: number): [string, string][];
  range(prefix: string, limit: number | undefined, keysOnly: true): string[];
  range(prefix: string, limit?: number, keysOnly?: boolean): [string, string][] | string[] {
    const mine = [...this.writes].filter(([k]) => k.startsWith(prefix));
    if (mine.length === 0) return keysOnly ? this.kv.range(prefix, limit, true) : this.kv.range(prefix, limit);
    // Each write hides or adds at most one of the store's keys: as many more read cover every deletion.
    const more = limit === undefined ? undefined : limit + mine.length;
    const merged = new Map<string, string>(keysOnly ? this.kv.range(prefix, more, true).map((k) => [k, '']) : this.kv.range(prefix, more));
    for (const [k, v] of mine) if (v === null) merged.delete(k); else merged.set(k, v);
    const keys = [...merged.keys()].sort(byteOrder).slice(0, limit);
    return keysOnly ? keys : keys.map((k): [string, string] => [k, merged.get(k)!]);
  }
}

function getRecord(t: KvView, name: string): VolumeRecord | undefined {
  return parsed<VolumeRecord>(t.get(VOL + name));
}

function childrenOf(t: KvView, name: string): VolumeRecord[] {
  const prefix = childPrefix(name);
  return t.range(prefix, undefined, true).map((k) => getRecord(t, k.slice(prefix.length))!).filter(Boolean);
}

function nextId(t: KvView): number {
  return Number(t.get('next') ?? 0);
}

// The lowest freed id, else the lowest never used ('next').
function firstFreeId(t: KvView): { id: number; freed: boolean } {
  const [key] = t.range(FREE, 1, true);
  if (key !== undefined) return { id: parseInt(key.slice(FREE.length), 16), freed: true };
  const next = nextId(t);
  if (next > MAX_THIN_ID) throw dmError('ERR_DM_IDS_EXHAUSTED', `all ${MAX_THIN_ID + 1} thin ids are in use`);
  return { id: next, freed: false };
}

function putRecord(t: KvView, rec: VolumeRecord, oldParent?: string): void {
  if (oldParent !== undefined) t.del(childPrefix(oldParent) + rec.name);
  t.put(VOL + rec.name, JSON.stringify(rec));
  if (rec.parent != null) t.put(childPrefix(rec.parent) + rec.name, '');
}

// The body of one write transaction.
function write(t: KvView, w: RegistryWrite): void {
  if (w.takeIds?.length || w.freeIds?.length) {
    const before = nextId(t);
    let next = before;
    for (const id of w.takeIds ?? []) {
      if (id < next) {
        t.del(freeKey(id));
      } else {
        for (let gap = next; gap < id; gap++) t.put(freeKey(gap), '');
        next = id + 1;
      }
    }
    for (const id of w.freeIds ?? []) if (id < next) t.put(freeKey(id), '');
    if (next !== before) t.put('next', String(next));
  }
  for (const name of w.remove ?? []) {
    const gone = getRecord(t, name);
    for (const child of childrenOf(t, name)) putRecord(t, { ...child, parent: gone?.parent ?? null }, name);
    if (gone?.parent != null) t.del(childPrefix(gone.parent) + name);
    t.del(VOL + name);
  }
  for (const rec of w.put ?? []) putRecord(t, rec, getRecord(t, rec.name)?.parent ?? undefined);
  if (w.pending === null) t.del('pending');
  else if (w.pending) t.put('pending', JSON.stringify(w.pending));
}

// The body of intend()'s write transaction.
function intendIn(t: KvView, change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite): IntendResult {
  const unfinished = parsed<PendingChange>(t.get('pending'));
  if (unfinished && unfinished.toTid !== change.fromTid && !sameChange(unfinished, committed)) return { unfinished };
  let id = change.id;
  if (id === undefined) {
    const free = firstFreeId(t);
    id = free.id;
    if (free.freed) t.del(freeKey(id));
    else t.put('next', String(id + 1));
  }
  const recorded: PendingChange = { ...change, id };
  if (effect) write(t, effect(id));
  t.put('pending', JSON.stringify(recorded));
  return { recorded };
}

// One LMDB environment per file per process, shared by every registry opened on it: LMDB must not open a file
// twice in one process (the second open resets the first's reader slots and locks). Shared here, whole KvStore
// and all, not per environment in C: two write transactions of one thread on one environment would deadlock on
// its writer lock, where one shared KvStore refuses a second begin().
const stores = new Map<string, { kv: KvStore; refs: number }>();

/**
 * The registry in one LMDB file, `registry.mdb` in the pool's registry folder, through the addon's own LMDB
 * binding (native/kv_store.cc): one call into C per read or write, where lmdb-js's JS layer cost several
 * times what LMDB does. Every read outside a write sees every process's last commit. A registry written before
 * the addon moved to upstream LMDB (lmdb-js's format) is migrated at its first open, the old file kept as
 * `registry.mdb.lmdbjs-v2.bak` (native/kv_migrate.h).
 */
export class LmdbRegistry implements RegistryStore {
  private closed = false;

  private constructor(private readonly file: string, private readonly kv: KvStore) {}

  /**
   * Opens (making the folder and the file if need be) the registry in `dir`, shared with any other registry
   * of this process on the same file. A folder holding an earlier build's registry.lmdb is refused
   * (ERR_DM_POOL_STATE) rather than read as empty.
   */
  static open(dir: string): LmdbRegistry {

    checkPath(dir, 'registry folder');
    withSystemErrors('open the registry', dir, () => fs.mkdirSync(dir, { recursive: true }));
    const file = path.join(dir, 'registry.mdb');
    // Earlier builds kept the registry through lmdb-js, in another format: refuse rather than start empty.
    if (!fs.existsSync(file) && fs.existsSync(path.join(dir, 'registry.lmdb')))
      throw dmError('ERR_DM_POOL_STATE', `${dir} holds a registry in an earlier devmapper's format (registry.lmdb)`);
    const key = path.join(withSystemErrors('open the registry', dir, () => fs.realpathSync(dir)), 'registry.mdb');
    let shared = stores.get(key);
    if (!shared) stores.set(key, shared = { kv: new native.KvStore(file), refs: 0 });
    shared.refs++;
    return new LmdbRegistry(key, shared.kv);
  }

  get(name: string): VolumeRecord | undefined {
    return getRecord(this.kv, name);
  }

  list(): VolumeRecord[] {
    return this.kv.range(VOL).map(([, v]) => JSON.parse(v) as VolumeRecord);
  }

  children(name: string): VolumeRecord[] {
    return childrenOf(this.kv, name);
  }

  count(): number {
    return this.kv.count(VOL);
  }

  pending(): PendingChange | undefined {
    return parsed<PendingChange>(this.kv.get('pending'));
  }

  nextFreeId(): number {
    return firstFreeId(this.kv).id;
  }

  // One write transaction: all of fn's writes, or none.
  private transaction<T>(fn: (t: KvView) => T): T {
    this.kv.begin();
    try {
      const result = fn(this.kv);
      this.kv.commit();
      return result;
    } catch (e) {
      this.kv.abort();
      throw e;
    }
  }

  // The same, for the promise API: fn works out its writes from the last commit on the main thread, and they
  // are committed (fsync and all) on the libuv pool, unless another commit landed meanwhile: then fn runs again
  // on the newer state.
  private async batched<T>(fn: (t: KvView) => T): Promise<T> {
    for (;;) {
      const base = this.kv.lastTxn();
      const batch = new Batch(this.kv);
      const result = fn(batch);
      if (batch.writes.size === 0 || await this.kv.applyAsync(base, [...batch.writes.keys()], [...batch.writes.values()])) return result;
    }
  }

  commit(w: RegistryWrite): void {
    this.transaction((t) => write(t, w));
  }

  commitAsync(w: RegistryWrite): Promise<void> {
    return this.batched((t) => write(t, w));
  }

  intend(change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite):
    IntendResult {
    return this.transaction((t) => intendIn(t, change, committed, effect));
  }

  intendAsync(change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite): Promise<IntendResult> {
    return this.batched((t) => intendIn(t, change, committed, effect));
  }

  metadataSnapshot(): MetadataSnapshotHold | undefined {
    return parsed<MetadataSnapshotHold>(this.kv.get('metasnap'));
  }

  setMetadataSnapshot(hold: MetadataSnapshotHold | null): void {
    this.setKey('metasnap', hold ? JSON.stringify(hold) : null);
  }

  minFreeSpace(): string | undefined {
    return this.kv.get('minfree');
  }

  setMinFreeSpace(json: string | null): void {
    this.setKey('minfree', json);
  }

  // One key set (or, with null, deleted) in one durable write.
  private setKey(key: string, value: string | null): void {
    this.transaction((t) => {
      if (value === null) t.del(key);
      else t.put(key, value);
    });
  }

  // Nothing to do: every read renews its snapshot.
  refresh(): void {}

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const shared = stores.get(this.file);
    if (shared && --shared.refs === 0) {
      stores.delete(this.file);
      this.kv.close();
    }
  }
}
