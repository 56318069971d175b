// The change protocol of a pool's metadata, Docker's, with its registry update folded into the first write:
//   1. record the intended change (pending, with the pool's transaction id before and after), and in the same
//      atomic write its effect on the volume records (the new record; or the deleted one gone, its id freed)
//   2. send the pool message (create_thin / create_snap / delete)
//   3. commit: set_transaction_id <before> <after>.
// Until the commit the records say what the change will make them; the pending record and the pool's
// transaction id say whether it happened. The pending record then stays until the next change replaces it
// (the pool's transaction id equal to its "after" proves it committed) or close() clears it, so a change
// costs one durable write. A process killed anywhere leaves a pending record that open() (or the next
// change) completes or rolls back by comparing it with the pool's transaction id; what a kill leaves around
// the protocol (a device half-made, suspended or mis-sized; a node missing) open() puts right from the uuids
// the library gives its devices (repairPoolDevice, repairDevices). Every change runs under the pool's lock.
// A ThinPool and its volumes reach this through changesOf(); nothing here is public API.
import fs from 'node:fs';
import { Block } from '../dm/block';
import { DeviceMapper } from '../dm/device-mapper';
import { MAPPER_DIR, mapperPath } from '../dm/dev-nodes';
import type { DeviceInfo, Target } from '../dm/types';
import { dmError, DevmapperError } from '../core/errors';
import { Bytes, Sectors, byteSize, bytesToSectors, sectorsToBytes } from '../core/units';
import { Op, Steps, both, op, start, step, sub, twin } from '../core/steps';
import { checkName, checkOptions, optBoolean, optInteger } from '../core/validate';
import { line, parseThinPoolStatus, thin, ThinPoolStatus, ThinPoolStatusOk } from '../targets';
import { IntendResult, IntendedChange, PendingChange, RegistryStore, RegistryWrite, VolumeLease, VolumeRecord, sameChange } from './registry';
import { BusyRetry, retryWhileBusy } from './busy';
import { explainBusy, readHolders, describeHolders } from '../dm/holders';
import { LockStep, PoolLock, QueueSlot } from './lock';
import type { OffloadingPool, RemotePool } from './offload';
import { isModeRefusal, poolStateError } from './pool-mode';
import { FreeSpaceGuard, refuseIfOutOfData } from './free-space';

/** A step of the change protocol: the intent recorded, the pool message sent, the transaction id committed. */
export type Step = 'intent' | 'message' | 'commit';

/** Test hooks: where a crash test can stop a change (see {@link ThinPoolOptions.hooks}). */
export interface ThinPoolHooks {

  /** Called after each step of a change; a crash test can kill the process here. */
  step?(step: Step, change: PendingChange): void;
}

/** The dm uuid of a pool device this library makes: how a half-made one is recognised as ours. */
export const poolUuid = (name: string): string => `DEVMAPPER-POOL-${name}`;
const THIN_UUID = 'DEVMAPPER-THIN-';
/** The dm uuid of a volume's device: its pool's name and its thin id. */
export const thinUuid = (pool: string, id: number): string => `${THIN_UUID}${pool}-${id}`;

/** A thin volume's table line: `id` of the pool `devSpec`, `size` sectors. */
export function thinTable(devSpec: string, id: number, size: Sectors): Target {
  return line(thin, 0, size, { pool: devSpec, deviceId: id });
}

/** Options of {@link ThinVolume.deactivate}. */
export interface DeactivateOptions {
  /** Remove at last close if busy, instead of retrying. */
  deferred?: boolean;
  /** EBUSY retries (udev and other short-lived openers): default 20, every 50 ms. */
  retries?: number;
  /** Milliseconds between EBUSY retries (default 50, at most 60000). */
  retryDelayMs?: number;
}

/** Options of {@link ThinPool.deleteVolume}. */
export interface DeleteVolumeOptions {

  /** Deactivate the volume first (ThinVolume.delete() does). */
  deactivate?: DeactivateOptions;
  /** Discard the whole volume first, giving its unshared blocks back to the data device. */
  discard?: boolean;
}

/**
 * How long the library lets a suspend of a volume (a snapshot's origin, a resize) wait for the device's I/O
 * before it gives up (the kernel undoes the suspend).
 */
export const SUSPEND_TIMEOUT_MS = 15_000;

/** At most this many EBUSY retries, this far apart: a wait has a bound. */
const MAX_RETRIES = 10_000, MAX_RETRY_DELAY_MS = 60_000;

export const DEACTIVATE_KEYS = ['deferred', 'retries', 'retryDelayMs'] as const;

/** EBUSY retries of a REMOVE by default (udev and other short-lived openers): 20, 50 ms apart. */
const DEFAULT_RETRIES = 20, DEFAULT_RETRY_DELAY_MS = 50;

/** The EBUSY retries deactivate options ask for (none when deferred). */
function busyRetries(o: DeactivateOptions): BusyRetry {
  return { retries: o.deferred ? 0 : o.retries ?? DEFAULT_RETRIES, delayMs: o.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS };
}

/**
 * Whether deactivate options allow EBUSY retries longer than the default: such a call stays on the calling
 * thread, whose timers wait, rather than hold the offload worker, which runs every pool's changes. Reads own
 * data properties only (the body's checks, which run first, report anything else).
 */
export function waitsLong(o: unknown): boolean {
  try {
    if (o === null || typeof o !== 'object') return false;
    const own = (k: string): unknown => Object.getOwnPropertyDescriptor(o, k)?.value;
    const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
    const r = busyRetries({ deferred: own('deferred') === true, retries: num(own('retries')), retryDelayMs: num(own('retryDelayMs')) });
    return r.retries * r.delayMs > DEFAULT_RETRIES * DEFAULT_RETRY_DELAY_MS;
  } catch {
    return true;
  }
}

/** waitsLong for deleteVolume's options (their `deactivate`). */
export function deleteWaitsLong(o: unknown): boolean {
  try {
    return o !== null && typeof o === 'object' && waitsLong(Object.getOwnPropertyDescriptor(o, 'deactivate')?.value);
  } catch {
    return true;
  }
}

/** The values of deactivate options whose keys are checked. */
export function checkDeactivateValues<T extends DeactivateOptions>(o: T): T {
  optBoolean(o.deferred, 'deferred');
  optInteger(o.retries, 'retries', 0, MAX_RETRIES);
  optInteger(o.retryDelayMs, 'retryDelayMs', 0, MAX_RETRY_DELAY_MS);
  return o;
}

export function checkDeactivateOptions(options: unknown): DeactivateOptions {
  return checkDeactivateValues(checkOptions<DeactivateOptions>(options, [...DEACTIVATE_KEYS], 'deactivate options'));
}

export function checkDeleteOptions(options: unknown): DeleteVolumeOptions {
  const o = checkOptions<DeleteVolumeOptions>(options, ['deactivate', 'discard'], 'delete options');
  optBoolean(o.discard, 'discard');
  if (o.deactivate !== undefined) checkDeactivateOptions(o.deactivate);
  return o;
}

/** REMOVE, retried while busy (bounded); not active (ENXIO) counts as done. A lasting EBUSY says who holds it. */
export function* removeDevice(dm: DeviceMapper, name: string, o: DeactivateOptions): Steps<void> {
  try {
    yield* retryWhileBusy(function* (): Steps<void> {
      try {
        yield* step(twin(dm, 'remove', name, { deferred: o.deferred }));
      } catch (e) {
        if ((e as DevmapperError).code !== 'ENXIO') throw e;  // ENXIO: not active
        dm.ensureNode(name, undefined);  // a node a killed REMOVE left behind
      }
    }, busyRetries(o));
  } catch (e) {
    throw yield* explainBusy(e, dm, name);
  }
}

/** What the protocol needs of its pool. */
export interface ChangingPool {
  readonly name: string;
  readonly dm: DeviceMapper;
  /** `major:minor` of the pool device. */
  readonly devSpec: string;
  readonly registry: RegistryStore;
  /** LVM made the pool (its dm uuid starts with LVM-): read it, never change it. */
  readonly lvmOwned: boolean;
  /** Where its settings live beside the registry (the free-space guard's among them), if anywhere. */
  readonly registryDir: string | undefined;
  /** Its data block size, in sectors. */
  readonly blockSize: Sectors;
}

/** Whether a pool device's dm uuid says LVM owns it. */
export const isLvmUuid = (uuid: string | undefined): boolean => uuid?.startsWith('LVM-') ?? false;

const changes = new WeakMap<object, PoolChanges>();

/** The protocol of a pool this library made (a ThinPool); anything else is refused. */
export function changesOf(pool: unknown, device?: string): PoolChanges {
  const c = typeof pool === 'object' && pool !== null ? changes.get(pool) : undefined;
  if (!c) throw dmError('ERR_DM_INVALID_ARGUMENT', 'not a pool of this library (a ThinPool from create, open or attach)', device);
  return c;
}

export class PoolChanges implements OffloadingPool {
  readonly name: string;
  readonly dm: DeviceMapper;
  readonly devSpec: string;
  readonly registry: RegistryStore;
  private readonly lock: PoolLock;
  private readonly lvmOwned: boolean;
  private readonly blockSize: () => Sectors;
  /** The pool's minimum free space, checked before a create or a snapshot. */
  readonly guard: FreeSpaceGuard;
  /** The last change this process committed, left recorded as pending (see clearCommitted); the offload
   * worker's calls carry it there and back. */
  committedChange?: PendingChange;
  /**
   * The thin ids the pool holds, read from its metadata under the lock (the metadata reader sets it);
   * undefined when it cannot be read now.
   */
  thinIdsInPool?: () => Steps<Set<number> | undefined>;
  /** The offload worker's link, when this pool's promise-API changes run there (offload.ts). */
  remote?: RemotePool;

  constructor(pool: ChangingPool, lock: PoolLock, private readonly hooks: ThinPoolHooks) {
    this.name = pool.name;
    this.dm = pool.dm;
    this.devSpec = pool.devSpec;
    this.registry = pool.registry;
    this.lock = lock;
    this.lvmOwned = pool.lvmOwned;
    this.blockSize = () => pool.blockSize;
    this.guard = new FreeSpaceGuard(pool.registry, pool.registryDir);
    changes.set(pool, this);
  }

  /**
   * Refuses any change to a pool LVM owns: LVM keeps its own transaction id in its metadata, and a
   * set_transaction_id from us would make LVM refuse to activate the pool. Reading it stays allowed.
   */
  refuseIfLvm(what: string): void {
    if (this.lvmOwned)
      throw dmError('ERR_DM_LVM_POOL', `${what} refused: LVM keeps its own transaction id for this pool, and a change from devmapper would make LVM refuse to activate it; change it with lvcreate/lvremove (reading it with metadata(), usage() and check() is allowed)`, this.name);
  }

  *statusSteps(o: { noflush?: boolean }): Steps<ThinPoolStatus> {
    const [t] = yield* step(twin(this.dm, 'status', this.name, o));
    return parseThinPoolStatus(t.params);
  }

  *transactionIdSteps(): Steps<number> {
    return (yield* this.okStatusSteps('a change')).transactionId;
  }

  // The status of a pool that is not failed (else ERR_DM_POOL_STATE for `what`).
  private *okStatusSteps(what: string): Steps<ThinPoolStatusOk> {
    const s = yield* this.statusSteps({ noflush: true });
    if (s.state !== 'ok') throw poolStateError(this.name, what, s);
    return s;
  }

  /**
   * The transaction id a create or snapshot starts from, given the pool's status read under the lock, after
   * the checks that need it: the pool's minimum free space, and, for a snapshot of an active origin
   * (`suspends`), a pool that is not out of data space, where the origin's suspend would wait on writes the
   * pool holds back. (A read-only pool fails such writes at once: its refusal of create_snap is the kernel's.)
   */
  private tidForNewVolume(s: ThinPoolStatusOk, what: string, suspends = false): number {
    if (suspends) refuseIfOutOfData(this.name, what, s);
    this.guard.check(this.name, what, s, this.blockSize());
    return s.transactionId;
  }

  *createVolumeSteps(name: string, size: Bytes | number | string, lease?: VolumeLease): Steps<VolumeRecord> {
    this.refuseIfLvm('create a volume');
    checkName(name, 'volume name');
    const sz = bytesToSectors(byteSize(size, 'size', name));
    if (sz === 0) throw dmError('ERR_DM_INVALID_SIZE', 'a volume needs a size above 0', name);
    const rec = yield* this.locked(function* (this: PoolChanges): Steps<VolumeRecord> {
      const [status, recovered] = yield* step(both(sub(() => this.okStatusSteps('create_thin')), sub(() => this.checkNameFree(name))));
      const from = this.tidForNewVolume(recovered ? yield* this.okStatusSteps('create_thin') : status, 'create_thin');
      return yield* this.createId('create', name, sz, null, lease, from, (id) => `create_thin ${id}`);
    });
    return rec;
  }

  *snapshotSteps(originName: string, name: string, lease?: VolumeLease): Steps<VolumeRecord> {
    this.refuseIfLvm('snapshot');
    checkName(name, 'snapshot name');
    const rec = yield* this.locked(function* (this: PoolChanges): Steps<VolumeRecord> {
      const from = this.registry.get(originName);
      if (!from) throw dmError('ERR_DM_NO_SUCH_VOLUME', `origin '${originName}' is not a volume of pool ${this.name}`, originName);
      const [[status, recovered], active] = yield* step(both(
        both(sub(() => this.okStatusSteps('create_snap')), sub(() => this.checkNameFree(name))),
        sub(() => this.isActiveThinSteps(originName, from.id))));
      const tid = this.tidForNewVolume(recovered ? yield* this.okStatusSteps('create_snap') : status, 'create_snap', active);
      const message = (id: number) => `create_snap ${id} ${from.id}`;
      if (!active) return yield* this.createId('snapshot', name, from.size, from.name, lease, tid, message);
      let resumeFailed = false;
      const batch = (text: string) => this.dm.batch().message(this.name, 0, text).resume(originName);
      return yield* this.createId('snapshot', name, from.size, from.name, lease, tid, message, function* (this: PoolChanges, text: string): Steps<void> {
        yield* this.suspendBounded(originName);  // throws only if the origin is not suspended
        try {
          yield* step(op(() => batch(text).runSync(), () => batch(text).run()));
        } catch (e) {
          if (((e as DevmapperError).completed ?? 0) > 0) {
            resumeFailed = true;  // create_snap ran; the resume failed: tried again after the message step
            return;
          }
          try { yield* step(twin(this.dm, 'resume', originName)); } catch { /* report create_snap's error */ }
          throw e;
        }
      }, function* (this: PoolChanges): Steps<void> {
        if (resumeFailed) yield* step(twin(this.dm, 'resume', originName));
      });
    });
    return rec;
  }

  /**
   * ThinPool.deleteVolume and ThinVolume.delete, their arguments checked. `stillWanted`, if given, is asked
   * first under the lock with the volume's record as it is then: false leaves everything alone (returns false).
   */
  *deleteVolumeSteps(name: string, o: DeleteVolumeOptions, stillWanted?: (rec: VolumeRecord | undefined) => boolean): Steps<boolean> {
    this.refuseIfLvm('delete a volume');
    return yield* this.locked(function* (this: PoolChanges): Steps<boolean> {
      if (stillWanted && !stillWanted(this.registry.get(name))) return false;
      const discard = !!o.discard;
      const deactivate = o.deactivate ?? (discard ? {} : undefined);
      if (discard) {
        const info = yield* step(twin(this.dm, 'infoIfExists', name));
        if (info && info.openCount > 0) {
          const holders = readHolders(info.dev, info.openCount);
          throw dmError('ERR_DM_BUSY', `the volume is open; close it before discarding it: ${describeHolders(holders)}`, name, { holders });
        }
      }
      // Without a discard, the REMOVE runs alongside the intent; with one, after the discard.
      const removing = deactivate && !discard && (yield* step(start(sub(() => removeDevice(this.dm, name, deactivate)))));
      let change: PendingChange;
      let undo!: RegistryWrite;
      try {
        change = yield* this.intendChange(yield* this.transactionIdSteps(), (tid) => {
          const rec = this.registry.get(name);
          if (!rec) throw dmError('ERR_DM_NO_SUCH_VOLUME', `no volume '${name}' in pool ${this.name}`, name);
          // If nothing reaches the pool: the record back, its id taken again, its children under it again.
          undo = { put: [rec, ...this.registry.children(name)], takeIds: [rec.id], pending: null };
          return { op: 'delete', id: rec.id, name, size: rec.size, parent: rec.parent, fromTid: tid, toTid: tid + 1 };
        }, (id) => ({ remove: [name], freeIds: [id] }));  // its children keep their data
      } catch (e) {
        if (removing) { try { yield* step(removing); } catch { /* the first error is the one that matters */ } }
        throw e;
      }
      let discardError: unknown;
      try {
        if (removing) yield* step(removing);
        if (discard) discardError = yield* this.discardThin(name, change.id, change.size);
      } catch (e) {
        yield* this.commit(undo);  // nothing was discarded, nothing was sent to the pool
        throw e;
      }
      this.step('intent', change);
      // From here the delete is finished, now or by recover(): a discard may have run.
      if (discard) yield* removeDevice(this.dm, name, deactivate!);
      try {
        yield* this.deleteThin(change.id, name);
      } catch (e) {
        if (!discard) yield* this.commit(undo);  // nothing changed in the pool
        throw e;
      }
      this.step('message', change);
      yield* this.commitDelete(change);
      if (discardError) throw discardError;
      return true;
    });
  }

  // Activates the thin (if it is not) and discards all of it. Throws if the discard never started (nothing
  // lost: the device is as it was); returns the discard's own error if it failed part-way (the delete must
  // then go on: data may be gone).
  private *discardThin(name: string, id: number, size: Sectors): Steps<unknown> {
    const wasActive = yield* this.isActiveThinSteps(name, id);
    if (!wasActive) yield* this.activateThinSteps(name, id, size, false);
    try {
      yield* step(twin(Block, 'discard', mapperPath(name), 0, sectorsToBytes(size)));
      return undefined;
    } catch (e) {
      // Refused as a whole: the device did not open (no node, read-only), or the pool ignores discards.
      if ((e as DevmapperError).syscall === 'open' || (e as DevmapperError).code === 'EOPNOTSUPP') {
        if (!wasActive) { try { yield* removeDevice(this.dm, name, {}); } catch { /* keep the first error */ } }
        throw e;
      }
      if (e instanceof DevmapperError) e.message = `the volume was deleted; its discard failed: ${e.message}`;
      return e;
    }
  }

  /** ThinPool.resizeVolume and ThinVolume.resize: returns the new record. */
  *resizeVolumeSteps(name: string, size: Bytes | number | string): Steps<VolumeRecord> {
    this.refuseIfLvm('resize a volume');
    checkName(name, 'volume name');
    const sz = bytesToSectors(byteSize(size, 'size', name));
    return yield* this.locked(function* (this: PoolChanges): Steps<VolumeRecord> {
      const rec = this.registry.get(name);
      if (!rec) throw dmError('ERR_DM_NO_SUCH_VOLUME', `no volume '${name}' in pool ${this.name}`, name);
      if (sz < rec.size) throw dmError('ERR_DM_INVALID_SIZE', `thin volumes only grow here (${rec.size} -> ${sz} sectors)`, name);
      if (sz === rec.size) return rec;
      // The record first: a process killed before the table is reloaded leaves a live table smaller than its
      // record, which open() grows (repairDevices). Never a live table larger than the record.
      const next = { ...rec, size: sz };
      yield* this.commit({ put: [next] });
      const info = yield* step(twin(this.dm, 'infoIfExists', name));
      if (info && (yield* this.mapsThinNow(name, rec.id, info))) {
        try {
          yield* this.reloadThin(name, rec.id, sz, info.readOnly);
        } catch (e) {
          try {
            const [t] = yield* step(twin(this.dm, 'table', name));
            if (t.length === rec.size) yield* this.commit({ put: [rec] });
          } catch { /* open() puts it right */ }
          throw yield* this.explainedByState(e, 'resizing an active volume');
        }
      }
      return next;
    });
  }

  /**
   * Suspends a volume's device, within SUSPEND_TIMEOUT_MS: a suspend waits for the device's I/O, and a pool out
   * of data space in queue_if_no_space mode holds writes back until space is added (or no_space_timeout
   * passes), which would hold the pool's lock, and so its remedy, growData, as long. Past the bound the kernel
   * undoes the suspend and this throws, ERR_DM_POOL_FULL when the pool is out of data space.
   */
  *suspendBounded(name: string): Steps<void> {
    try {
      yield* step(twin(this.dm, 'suspend', name, { timeoutMs: SUSPEND_TIMEOUT_MS }));
    } catch (e) {
      if ((e as DevmapperError).code !== 'ERR_DM_TIMEOUT') throw e;
      throw yield* this.suspendGaveUp(name, e);
    }
  }

  // The error of a suspend that timed out: the pool's mode named if it is out of data space; the device
  // resumed if the suspend completed after all.
  private *suspendGaveUp(name: string, e: unknown): Steps<unknown> {
    try {
      const info = yield* step(twin(this.dm, 'infoIfExists', name));
      if (info?.suspended) yield* step(twin(this.dm, 'resume', name));
      const s = yield* this.statusSteps({ noflush: true });
      if (s.state !== 'ok' || s.mode !== 'out_of_data_space') return e;
      const full = dmError('ERR_DM_POOL_FULL', `suspending ${name} gave up after ${SUSPEND_TIMEOUT_MS} ms: the pool is out of data space and holds its writes back (queue_if_no_space); growData() brings it back`,
        this.name, { space: 'data', freeBytes: 0, mode: s.mode });
      full.cause = e;
      return full;
    } catch {
      return e;
    }
  }

  // A live thin table swapped for one of `size`: load (read-only if the device is), suspend, resume.
  private *reloadThin(name: string, id: number, size: Sectors, readOnly: boolean): Steps<void> {
    yield* step(twin(this.dm, 'load', name, [thinTable(this.devSpec, id, size)], { readOnly }));
    try {
      yield* this.suspendBounded(name);
    } catch (e) {
      try { yield* step(twin(this.dm, 'clear', name)); } catch { /* keep the first error */ }
      throw e;
    }
    yield* step(twin(this.dm, 'resume', name));
  }

  /** registry.commit(w) as a step: in the promise form, its durable commit runs off the main thread. */
  private *commit(w: RegistryWrite): Steps<void> {
    const r = this.registry;
    yield* step(op(() => r.commit(w), async () => (r.commitAsync ? r.commitAsync(w) : r.commit(w))));
  }

  private *intend(change: IntendedChange, effect: (id: number) => RegistryWrite): Steps<IntendResult> {
    const r = this.registry, committed = this.committedChange;
    return yield* step(op(() => r.intend(change, committed, effect),
      async () => (r.intendAsync ? r.intendAsync(change, committed, effect) : r.intend(change, committed, effect))));
  }

  isLockStep(o: Op<unknown>): boolean { return o instanceof LockStep && o.lock === this.lock; }

  lockQueue<T>(fn: (slot: QueueSlot) => Promise<T>): Promise<T> { return this.lock.queue(fn); }

  // The last change this process committed stays recorded as pending until the next change replaces it (one
  // registry write fewer per change); on close it is cleared, if no other process has replaced it since.
  clearCommitted(): void {
    const c = this.committedChange;
    this.committedChange = undefined;
    if (!c) return;
    if (sameChange(this.registry.pending(), c)) this.registry.commit({ pending: null });
  }

  /** `body` (called with `self`, by default this protocol, as `this`) under the pool's lock, reading what
   * other processes committed before it took the lock. Every read of the registry that decides a change runs
   * in such a body. */
  *locked<T, S = PoolChanges>(body: (this: S) => Steps<T>, self?: S): Steps<T> {
    return yield* step(this.lock.op(() => { this.registry.refresh(); return body.call((self ?? this) as S); }, this.name));
  }

  private step(step: Step, change: PendingChange): void {
    this.hooks.step?.(step, change);
  }

  // A name recorded by a change a crashed process left is free again once that change is rolled back: then
  // it recovers first, and says so (the pool's transaction id may have moved).
  *checkNameFree(name: string): Steps<boolean> {
    let taken = this.registry.get(name) !== undefined;
    const recover = taken && this.registry.pending()?.name === name;
    if (recover) {
      yield* this.recover();
      taken = this.registry.get(name) !== undefined;
    }
    if (taken) throw dmError('ERR_DM_VOLUME_EXISTS', `pool ${this.name} has a volume of that name`, name);
    if (name === this.name || (yield* step(twin(this.dm, 'exists', name)))) throw dmError('ERR_DM_VOLUME_EXISTS', 'a dm device of that name exists', name);
    return recover;
  }

  /**
   * Allocates an id and records the volume, sends the message, commits: steps 1-3 of the protocol. `tid` is
   * the pool's transaction id read under the lock; a change a crashed process left is finished first.
   * `send` sends the message (by default alone) and throws only if it did not run; `afterMessage` follows
   * the message step. Both are called with this pool as `this`.
   */
  private *createId(op: 'create' | 'snapshot', name: string, size: Sectors, parent: string | null, lease: VolumeLease | undefined, tid: number,
    message: (id: number) => string, send: (this: PoolChanges, text: string) => Steps<void> = this.poolMessage,
    afterMessage?: (this: PoolChanges) => Steps<void>): Steps<VolumeRecord> {
    for (;;) {
      let rec!: VolumeRecord;
      const change = yield* this.intendChange(tid, (t, afterFinish) => {
        // A finished change may have been a create of this very name.
        if (afterFinish && this.registry.get(name)) throw dmError('ERR_DM_VOLUME_EXISTS', `pool ${this.name} has a volume of that name`, name);
        return { op, name, size, parent, fromTid: t, toTid: t + 1 };
      }, (id) => {
        rec = { name, id, size, parent, state: 'ready', created: Date.now(), ...(lease && { lease }) };  // the lease in the create's own write
        return { put: [rec] };
      });
      const id = change.id;
      tid = change.fromTid;
      this.step('intent', change);
      try {
        yield* send.call(this, message(id));  // throws only if the message did not run
      } catch (e) {
        if ((e as DevmapperError).code === 'EEXIST') {
          // The pool has this id though the registry thought it free: keep it taken, use the next one.
          yield* this.commit({ pending: null, remove: [name] });
          continue;
        }
        yield* this.commit({ pending: null, remove: [name], freeIds: [id] });  // a failed message changed nothing
        throw yield* this.explained(e, op === 'create' ? 'create_thin' : 'create_snap');
      }
      this.step('message', change);
      if (afterMessage) yield* afterMessage.call(this);
      try {
        yield* this.setTransactionId(change);
      } catch (e) {
        try { yield* this.rollBackCreate(change); } catch { /* if this fails too, recover() finishes it later */ }
        throw e;
      }
      this.step('commit', change);
      this.committedChange = change;  // left pending: the next intend() replaces it, close() clears it
      return rec;
    }
  }

  private *poolMessage(text: string): Steps<void> {
    try {
      yield* step(twin(this.dm, 'message', this.name, 0, text));
    } catch (e) {
      throw yield* this.explained(e, text.split(' ')[0]);
    }
  }

  /** `e`, or, when it is the pool refusing `what` because of its mode, ERR_DM_POOL_STATE naming that mode. */
  *explained(e: unknown, what: string): Steps<unknown> {
    if (!isModeRefusal(e)) return e;
    let s: ThinPoolStatus;
    try {
      s = yield* this.statusSteps({ noflush: true });
    } catch {
      return e;
    }
    return s.state === 'ok' && s.mode !== 'ro' ? e : poolStateError(this.name, what, s, e);
  }

  /** `e`, or, when the pool has failed (a failed pool refuses new thin targets with EINVAL), ERR_DM_POOL_STATE. */
  *explainedByState(e: unknown, what: string): Steps<unknown> {
    let s: ThinPoolStatus;
    try {
      s = yield* this.statusSteps({ noflush: true });
    } catch {
      return e;
    }
    return s.state === 'ok' ? e : poolStateError(this.name, what, s, e);
  }

  // The commit point of every change.
  private setTransactionId(change: PendingChange): Steps<void> {
    return this.poolMessage(`set_transaction_id ${change.fromTid} ${change.toTid}`);
  }

  /**
   * Step 1: records the change `build` makes from the pool's transaction id, with its `effect` on the records.
   * A change another process left unfinished is finished first; the transaction id may then have moved, so
   * the change is built again.
   */
  private *intendChange(tid: number, build: (tid: number, afterFinish: boolean) => IntendedChange,
    effect: (id: number) => RegistryWrite): Steps<PendingChange> {
    for (let afterFinish = false; ; afterFinish = true) {
      const r = yield* this.intend(build(tid, afterFinish), effect);
      if ('recorded' in r) return r.recorded;
      tid = yield* this.finish(r.unfinished, tid);
    }
  }

  private *rollBackCreate(change: PendingChange): Steps<void> {
    yield* this.deleteThin(change.id, change.name);
    const rec = this.registry.get(change.name);
    yield* this.commit({ remove: rec?.id === change.id ? [change.name] : [], freeIds: [change.id], pending: null });
  }

  // Step 3 of a delete: its records were updated with its intent.
  private *commitDelete(change: PendingChange): Steps<void> {
    yield* this.setTransactionId(change);
    this.step('commit', change);
    this.committedChange = change;
  }

  /**
   * A reload of the pool (growData, growMetadata, setFeatures) killed between its steps leaves a table loaded
   * but not live, or the pool suspended, which would hang every volume's I/O: the table is cleared (the pool
   * keeps its old one; growing again finishes a growth) and the pool resumed. Under the lock, at open.
   */
  *repairPoolDevice(): Steps<void> {
    const info = yield* step(twin(this.dm, 'info', this.name));
    if (info.inactiveTable) yield* step(twin(this.dm, 'clear', this.name));
    if (info.suspended) yield* step(twin(this.dm, 'resume', this.name));
  }

  /**
   * Puts right the devices of this pool's volumes that a killed process left half-way, recognised by the uuid
   * the library gives them: one with no live table (an activate cut short) is removed; a table loaded but
   * not made live is cleared; a suspended one is resumed (a snapshot or resize cut short); a live table
   * smaller than its record is grown to it (a resize records its size first), and a record smaller than its
   * live table takes the table's size. Runs under the lock, at open.
   */
  *repairDevices(): Steps<void> {
    const listed = yield* step(twin(this.dm, 'list', { uuids: true }));
    for (const d of listed) {
      const id = this.thinIdOfUuid(d.uuid);
      if (id !== undefined) yield* this.repairDevice(d.name, id);
    }
    // A node whose REMOVE ran but whose unlink did not: a volume's name under /dev/mapper with no device.
    const live = new Set(listed.map((d) => d.name));
    let entries: string[] = [];
    try { entries = fs.readdirSync(MAPPER_DIR); } catch { /* no /dev/mapper */ }
    for (const e of entries) if (!live.has(e) && this.registry.get(e)) this.dm.ensureNode(e, undefined);
  }

  /** The thin id in a dm uuid the library gave a volume of this pool, or undefined for any other uuid. */
  thinIdOfUuid(uuid: string | undefined): number | undefined {
    const prefix = `${THIN_UUID}${this.name}-`;
    const rest = uuid?.startsWith(prefix) ? uuid.slice(prefix.length) : '';
    return /^\d+$/.test(rest) ? Number(rest) : undefined;
  }

  private *repairDevice(name: string, id: number): Steps<void> {
    const info = yield* step(twin(this.dm, 'infoIfExists', name));
    if (!info) return;
    if (!info.liveTable) {
      yield* removeDevice(this.dm, name, {});
      return;
    }
    this.dm.ensureNode(name, info.dev);  // killed between RESUME and making the node
    if (info.inactiveTable) yield* step(twin(this.dm, 'clear', name));
    if (info.suspended) yield* step(twin(this.dm, 'resume', name));
    const rec = this.registry.get(name);
    if (!rec || rec.id !== id) return;  // not the registry's: left as it is
    const [t] = yield* step(twin(this.dm, 'table', name));
    if (!this.mapsThin(t, id)) return;
    if (t.length < rec.size) yield* this.reloadThin(name, id, rec.size, info.readOnly);
    else if (t.length > rec.size) yield* this.commit({ put: [{ ...rec, size: t.length }] });
  }

  /**
   * Completes or rolls back a change a crashed process left behind, and clears it. Runs under the lock, on
   * open and when a name is held by a pending change; every change also meets one through intend().
   */
  *recover(): Steps<void> {
    const p = this.registry.pending();
    if (!p) return;
    yield* this.finish(p, yield* this.transactionIdSteps());
    this.clearCommitted();
  }

  /**
   * recover() at open: a pool whose mode refuses messages (read-only: its metadata full or needing a check;
   * failed) cannot finish a change now. The change stays recorded (every later change, and the next open,
   * finishes it first, once the pool takes messages again) and the refusal is returned, so that the pool
   * still opens and its remedy (growMetadata, repair) can be reached.
   */
  *recoverOrDefer(): Steps<DevmapperError | undefined> {
    try {
      yield* this.recover();
      return undefined;
    } catch (e) {
      if (e instanceof DevmapperError && ((e.code === 'ERR_DM_POOL_STATE' && e.mode !== undefined) || isModeRefusal(e))) return e;
      throw e;
    }
  }

  /** Finishes the unfinished change `p`, given the pool's transaction id; returns the transaction id after. */
  private *finish(p: PendingChange, tid: number): Steps<number> {
    // A snapshot of an active origin suspends it: a process killed before its resume left it suspended.
    if (p.op === 'snapshot' && p.parent !== null) {
      const origin = yield* step(twin(this.dm, 'infoIfExists', p.parent));
      if (origin?.suspended && origin.liveTable) yield* step(twin(this.dm, 'resume', p.parent));
    }
    if (tid === p.toTid) {
      // Committed in the pool; the records were updated with the intent.
      yield* this.commit({ pending: null });
      return tid;
    }
    if (tid === p.fromTid) {
      if (p.op === 'delete') {
        // The user asked for the delete: finish it (deactivating first: the intent may predate the REMOVE).
        const info = yield* step(twin(this.dm, 'infoIfExists', p.name));
        if (info && (info.uuid === thinUuid(this.name, p.id) || (yield* this.mapsThinNow(p.name, p.id, info))))
          yield* removeDevice(this.dm, p.name, {});
        yield* this.deleteThin(p.id, p.name);
        yield* this.commitDelete(p);
        return p.toTid;
      }
      yield* this.rollBackCreate(p);
      return tid;
    }
    // Another tool moved the transaction id: whether the change reached the pool is in its metadata.
    const ids = this.thinIdsInPool ? yield* this.thinIdsInPool() : undefined;
    if (!ids) throw dmError('ERR_DM_POOL_STATE',
      `the pool's transaction id is ${tid}, but the registry's unfinished ${p.op} of '${p.name}' expects ${p.fromTid} or ${p.toTid}, and its metadata cannot be read now`, this.name);
    if (p.op === 'delete') {
      // Asked for by the user: finished, without a commit (the transaction id is no longer ours to move).
      if (ids.has(p.id)) {
        const info = yield* step(twin(this.dm, 'infoIfExists', p.name));
        if (info && (info.uuid === thinUuid(this.name, p.id) || (yield* this.mapsThinNow(p.name, p.id, info))))
          yield* removeDevice(this.dm, p.name, {});
        yield* this.deleteThin(p.id, p.name);
      }
      yield* this.commit({ pending: null });
    } else if (ids.has(p.id)) {
      yield* this.commit({ pending: null });  // made: its record stays
    } else {
      yield* this.rollBackCreate(p);  // never made: its record goes
    }
    return yield* this.transactionIdSteps();
  }

  /**
   * `delete <id>`. ENODATA (no such thin) counts as done: never created, or deleted before a crash. EBUSY while
   * no device of this volume is active means its last device is still closing (a deferred remove runs in a
   * kernel workqueue, and the name goes before the table): retried, bounded.
   */
  private *deleteThin(id: number, name: string): Steps<void> {
    const pool = this;
    try {
      yield* retryWhileBusy(function* (): Steps<void> {
        try {
          yield* pool.poolMessage(`delete ${id}`);
        } catch (e) {
          if ((e as DevmapperError).code !== 'ENODATA') throw e;
        }
      }, { retries: 50, delayMs: 20, lasting: () => this.isActiveThinSteps(name, id) });
    } catch (e) {
      throw yield* explainBusy(e, this.dm, name);  // the volume's device is active: who holds it
    }
  }

  /**
   * ThinVolume.activate, under the lock. CREATE + LOAD + RESUME; a device of the name that
   * a killed activate left with no live table (our uuid) is removed and the activation made again; this very
   * volume already active is fine.
   */
  *activateVolumeSteps(name: string, id: number, size: Sectors, readOnly: boolean): Steps<void> {
    this.refuseIfLvm('activate a volume');
    yield* this.locked(function* (this: PoolChanges): Steps<void> { yield* this.activateThinSteps(name, id, size, readOnly); });
  }

  *activateThinSteps(name: string, id: number, size: Sectors, readOnly: boolean): Steps<void> {
    for (let cleared = false; ; cleared = true) {
      try {
        yield* step(twin(this.dm, 'createDevice', name, [thinTable(this.devSpec, id, size)], { uuid: thinUuid(this.name, id), readOnly }));
        return;
      } catch (e) {
        if ((e as DevmapperError).code !== 'EBUSY' || (e as DevmapperError).command !== 'DM_DEV_CREATE') throw yield* this.explainedByState(e, 'activating a volume');
        const info = yield* step(twin(this.dm, 'infoIfExists', name));
        if (!cleared && info && !info.liveTable && info.uuid === thinUuid(this.name, id)) {
          yield* removeDevice(this.dm, name, {});
          continue;
        }
        if (!info?.liveTable || !(yield* this.mapsThinNow(name, id, info))) throw e;
        if (info.suspended) yield* step(twin(this.dm, 'resume', name));
        this.dm.ensureNode(name, info.dev);
        return;
      }
    }
  }

  /** Whether a dm device of this name is active with a thin table for this pool and id. */
  *isActiveThinSteps(name: string, id: number): Steps<boolean> {
    return yield* this.mapsThinNow(name, id, yield* step(twin(this.dm, 'infoIfExists', name)));
  }

  /** The same, for a device whose info the caller has just read (undefined: no such device). */
  *mapsThinNow(name: string, id: number, info: DeviceInfo | undefined): Steps<boolean> {
    if (!info?.liveTable) return false;
    const [t] = yield* step(twin(this.dm, 'table', name));
    return this.mapsThin(t, id);
  }

  // Whether a table line is a thin target of this pool for thin id `id`.
  private mapsThin(t: Target | undefined, id: number): boolean {
    if (t?.type !== 'thin') return false;
    const [pool, thinId] = t.params.split(' ');
    return pool === this.devSpec && Number(thinId) === id;
  }
}
