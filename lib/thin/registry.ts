// The durable record of a pool's volumes: name -> thin id, size, parent, state, created time; which ids are
// taken; and at most one pending change (the pool's transaction id is the commit point, see changes.ts).
// RegistryStore is the small interface a user can implement over another store; LmdbRegistry is ours.
import fs from 'node:fs';
import path from 'node:path';
import { dmError, withSystemErrors } from '../core/errors';
import { Sectors } from '../core/units';
import { MAX_THIN_ID, checkPath } from '../core/validate';
import { KvStore, native } from '../core/binding';

export type VolumeState = 'ready';

/** A volume's lease as its record keeps it. */
export interface VolumeLease {
  pid?: number;
  /** The owner's start time (/proc/<pid>/stat field 22): a reused pid is not the owner. */
  pidStart?: string;
  /** The boot and pid namespace in which `pid` names the owner: elsewhere the pid says nothing. */
  bootId?: string;
  pidNamespace?: string;
  ttlMs?: number;
  /** ms since the epoch (wall clock) at which the TTL runs out, unless renewed. */
  expiresAt?: number;
}

export interface VolumeRecord {
  name: string;
  id: number;
  size: Sectors;
  /** The volume this one is a snapshot of, when it was made (null for a base volume). */
  parent: string | null;
  state: VolumeState;
  /** ms since the epoch */
  created: number;
  /** Its owner, if it was made with one (see leases.ts); absent in records of earlier versions. */
  lease?: VolumeLease;
}

/** A change sent or about to be sent to the pool, not yet committed by set_transaction_id. */
export interface PendingChange {
  op: 'create' | 'snapshot' | 'delete';
  id: number;
  name: string;
  size: Sectors;
  parent: string | null;
  /** The pool's transaction id before the change, and after its commit. */
  fromTid: number;
  toTid: number;
}

/**
 * A metadata snapshot this library reserved in the pool (the pool holds one at most): who holds it, so that
 * one whose holder died is released by the next reader, and one with no record is known to be another tool's.
 */
export interface MetadataSnapshotHold {
  /** 0: abandoned (its release failed); the next reader releases it. */
  pid: number;
  /** The holder's start time (/proc/<pid>/stat field 22): a reused pid is not the holder. */
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
export type IntendedChange = Omit<PendingChange, 'id'> & { id?: number };

export interface RegistryStore {
  get(name: string): VolumeRecord | undefined;
  list(): VolumeRecord[];
  /** The volumes whose parent is `name`. */
  children(name: string): VolumeRecord[];
  count(): number;
  pending(): PendingChange | undefined;
  /** The id the next allocation gets: a freed id if any, else the lowest never used. O(log n). */
  nextFreeId(): number;
  commit(w: RegistryWrite): void;
  /**
   * Step 1 of a change, in one atomic, durable write: takes the change's id (or the next free one, as
   * nextFreeId()), records the change as pending, and applies `effect(id)`, the change's own effect on the
   * records (as commit() would). A pending change that committed is simply replaced: the caller's own last
   * `committed` change, or one whose toTid is this change's fromTid (its set_transaction_id moved the pool
   * there). Any other pending change is unfinished: nothing is written and it comes back.
   */
  intend(change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite):
    { recorded: PendingChange } | { unfinished: PendingChange };
  /** Called after the inter-process lock is taken: reads must see other processes' commits. */
  refresh(): void;
  /** The metadata snapshot this library holds in the pool, if any (see MetadataSnapshotHold). */
  metadataSnapshot(): MetadataSnapshotHold | undefined;
  /** Records (or, with null, clears) the hold; one durable write. */
  setMetadataSnapshot(hold: MetadataSnapshotHold | null): void;
  close(): void;
}

// Keys (names hold no '/'): 'vol/<name>' -> VolumeRecord as JSON; 'child/<parent>/<name>' -> '' (index for
// children()); 'free/<id, 8 hex digits>' -> '' (freed ids; fixed width, so the first key is the lowest id);
// 'next' -> the lowest never-used id; 'pending' -> PendingChange as JSON; 'metasnap' -> MetadataSnapshotHold.
const VOL = 'vol/', FREE = 'free/';
const childPrefix = (parent: string) => `child/${parent}/`;
const freeKey = (id: number) => FREE + id.toString(16).padStart(8, '0');
const parsed = <T>(v: string | undefined): T | undefined => (v === undefined ? undefined : JSON.parse(v) as T);

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
    return parsed<VolumeRecord>(this.kv.get(VOL + name));
  }

  list(): VolumeRecord[] {
    return this.kv.range(VOL).map(([, v]) => JSON.parse(v) as VolumeRecord);
  }

  children(name: string): VolumeRecord[] {
    const prefix = childPrefix(name);
    return this.kv.range(prefix, undefined, true).map((k) => this.get(k.slice(prefix.length))!).filter(Boolean);
  }

  count(): number {
    return this.kv.count(VOL);
  }

  pending(): PendingChange | undefined {
    return parsed<PendingChange>(this.kv.get('pending'));
  }

  nextFreeId(): number {
    return this.firstFreeId().id;
  }

  // The lowest freed id, else the lowest never used ('next').
  private firstFreeId(): { id: number; freed: boolean } {
    const [key] = this.kv.range(FREE, 1, true);
    if (key !== undefined) return { id: parseInt(key.slice(FREE.length), 16), freed: true };
    const next = this.next();
    if (next > MAX_THIN_ID) throw dmError('ERR_DM_IDS_EXHAUSTED', `all ${MAX_THIN_ID + 1} thin ids are in use`);
    return { id: next, freed: false };
  }

  private next(): number {
    return Number(this.kv.get('next') ?? 0);
  }

  // One write transaction: all of fn's writes, or none.
  private transaction<T>(fn: () => T): T {
    this.kv.begin();
    try {
      const result = fn();
      this.kv.commit();
      return result;
    } catch (e) {
      this.kv.abort();
      throw e;
    }
  }

  commit(w: RegistryWrite): void {
    this.transaction(() => this.write(w));
  }

  intend(change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite):
    { recorded: PendingChange } | { unfinished: PendingChange } {
    return this.transaction(() => {
      const unfinished = this.pending();
      if (unfinished && unfinished.toTid !== change.fromTid && !sameChange(unfinished, committed)) return { unfinished };
      let id = change.id;
      if (id === undefined) {
        const free = this.firstFreeId();
        id = free.id;
        if (free.freed) this.kv.del(freeKey(id));
        else this.kv.put('next', String(id + 1));
      }
      const recorded: PendingChange = { ...change, id };
      if (effect) this.write(effect(id));
      this.kv.put('pending', JSON.stringify(recorded));
      return { recorded };
    });
  }

  // The body of one write transaction.
  private write(w: RegistryWrite): void {
    if (w.takeIds?.length || w.freeIds?.length) {
      const before = this.next();
      let next = before;
      for (const id of w.takeIds ?? []) {
        if (id < next) {
          this.kv.del(freeKey(id));
        } else {
          for (let gap = next; gap < id; gap++) this.kv.put(freeKey(gap), '');
          next = id + 1;
        }
      }
      for (const id of w.freeIds ?? []) if (id < next) this.kv.put(freeKey(id), '');
      if (next !== before) this.kv.put('next', String(next));
    }
    for (const name of w.remove ?? []) {
      const gone = this.get(name);
      for (const child of this.children(name)) this.putRecord({ ...child, parent: gone?.parent ?? null }, name);
      if (gone?.parent != null) this.kv.del(childPrefix(gone.parent) + name);
      this.kv.del(VOL + name);
    }
    for (const rec of w.put ?? []) this.putRecord(rec, this.get(rec.name)?.parent ?? undefined);
    if (w.pending === null) this.kv.del('pending');
    else if (w.pending) this.kv.put('pending', JSON.stringify(w.pending));
  }

  private putRecord(rec: VolumeRecord, oldParent?: string): void {
    if (oldParent !== undefined) this.kv.del(childPrefix(oldParent) + rec.name);
    this.kv.put(VOL + rec.name, JSON.stringify(rec));
    if (rec.parent != null) this.kv.put(childPrefix(rec.parent) + rec.name, '');
  }

  metadataSnapshot(): MetadataSnapshotHold | undefined {
    return parsed<MetadataSnapshotHold>(this.kv.get('metasnap'));
  }

  setMetadataSnapshot(hold: MetadataSnapshotHold | null): void {
    this.transaction(() => {
      if (hold) this.kv.put('metasnap', JSON.stringify(hold));
      else this.kv.del('metasnap');
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
