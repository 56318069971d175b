// The durable record of a pool's volumes: name -> thin id, size, parent, state, created time; which ids are
// taken; and at most one pending change (the pool's transaction id is the commit point, see pool.ts).
// RegistryStore is the small interface a user can implement over another store; LmdbRegistry is ours.
import fs from 'node:fs';
import path from 'node:path';
import type { RootDatabase } from 'lmdb';
import { dmError } from '../errors';
import { Sectors } from '../units';
import { MAX_THIN_ID } from '../validate';

export type VolumeState = 'ready';

export interface VolumeRecord {
  name: string;
  id: number;
  size: Sectors;
  /** The volume this one is a snapshot of, when it was made (null for a base volume). */
  parent: string | null;
  state: VolumeState;
  /** ms since the epoch */
  created: number;
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
  close(): Promise<void> | void;
}

// Keys: ['vol', name] -> VolumeRecord; ['child', parent, name] -> 1 (index for children()); ['free', id] -> 1
// (freed ids); 'next' -> lowest never-used id; 'pending' -> PendingChange. lmdb orders array keys element-wise, so the first ['free', *] is the lowest.
export class LmdbRegistry implements RegistryStore {
  private constructor(private readonly db: RootDatabase) {}

  static open(dir: string): LmdbRegistry {
    fs.mkdirSync(dir, { recursive: true });
    // Loaded here, not at the top: lmdb adds ~10 MiB to the process, which users of the low-level API alone
    // (DeviceMapper, Loop) should not pay.
    const { open } = require('lmdb') as typeof import('lmdb');
    // overlappingSync off: each commit is on disk when commit() returns, not flushed later in the background.
    return new LmdbRegistry(open({ path: path.join(dir, 'registry.lmdb'), compression: false, overlappingSync: false }));
  }

  get(name: string): VolumeRecord | undefined {
    return this.db.get(['vol', name]) as VolumeRecord | undefined;
  }

  list(): VolumeRecord[] {
    return [...this.db.getRange({ start: ['vol'], end: ['vol', '\uffff'] })].map((e) => e.value as VolumeRecord);
  }

  children(name: string): VolumeRecord[] {
    return [...this.db.getKeys({ start: ['child', name], end: ['child', name, '\uffff'] })]
      .map((k) => this.get((k as [string, string, string])[2])!).filter(Boolean);
  }

  count(): number {
    return this.db.getKeysCount({ start: ['vol'], end: ['vol', '\uffff'] });
  }

  // pending() and nextFreeId() decide what the pool is told next: read them inside a write transaction, which
  // always sees every process's last commit (a read snapshot may be older).
  pending(): PendingChange | undefined {
    return this.db.transactionSync(() => this.db.get('pending') as PendingChange | undefined);
  }

  nextFreeId(): number {
    return this.db.transactionSync(() => this.firstFreeId().id);
  }

  // The lowest freed id, else the lowest never used ('next'). Under emulation each store operation costs
  // about as much as an ioctl, so the write paths below do only the operations their change needs.
  private firstFreeId(): { id: number; freed: boolean } {
    for (const key of this.db.getKeys({ start: ['free'], end: ['free', Infinity], limit: 1 })) return { id: (key as [string, number])[1], freed: true };
    const next = this.next();
    if (next > MAX_THIN_ID) throw dmError('ERR_DM_IDS_EXHAUSTED', `all ${MAX_THIN_ID + 1} thin ids are in use`);
    return { id: next, freed: false };
  }

  private next(): number {
    return (this.db.get('next') as number | undefined) ?? 0;
  }

  commit(w: RegistryWrite): void {
    this.db.transactionSync(() => this.write(w));
  }

  intend(change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite):
    { recorded: PendingChange } | { unfinished: PendingChange } {
    return this.db.transactionSync(() => {
      const unfinished = this.db.get('pending') as PendingChange | undefined;
      if (unfinished && unfinished.toTid !== change.fromTid && !sameChange(unfinished, committed)) return { unfinished };
      let id = change.id;
      if (id === undefined) {
        const free = this.firstFreeId();
        id = free.id;
        if (free.freed) this.db.removeSync(['free', id]);
        else this.db.putSync('next', id + 1);
      }
      const recorded: PendingChange = { ...change, id };
      if (effect) this.write(effect(id));
      this.db.putSync('pending', recorded);
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
          this.db.removeSync(['free', id]);
        } else {
          for (let gap = next; gap < id; gap++) this.db.putSync(['free', gap], 1);
          next = id + 1;
        }
      }
      for (const id of w.freeIds ?? []) if (id < next) this.db.putSync(['free', id], 1);
      if (next !== before) this.db.putSync('next', next);
    }
    for (const name of w.remove ?? []) {
      const gone = this.get(name);
      for (const child of this.children(name)) this.putRecord({ ...child, parent: gone?.parent ?? null }, name);
      if (gone?.parent != null) this.db.removeSync(['child', gone.parent, name]);
      this.db.removeSync(['vol', name]);
    }
    for (const rec of w.put ?? []) this.putRecord(rec, this.get(rec.name)?.parent ?? undefined);
    if (w.pending === null) this.db.removeSync('pending');
    else if (w.pending) this.db.putSync('pending', w.pending);
  }

  private putRecord(rec: VolumeRecord, oldParent?: string): void {
    if (oldParent !== undefined) this.db.removeSync(['child', oldParent, rec.name]);
    this.db.putSync(['vol', rec.name], rec);
    if (rec.parent != null) this.db.putSync(['child', rec.parent, rec.name], 1);
  }

  refresh(): void {
    (this.db as unknown as { resetReadTxn?: () => void }).resetReadTxn?.();
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
