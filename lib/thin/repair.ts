// The way back for a pool that a faulty device turned read-only (needs_check) or failed. The kernel keeps one
// pool object per metadata device for as long as any pool or thin target references it, and that object
// keeps its mode: reloading the thin-pool table alone finds the same failed pool. So the pool's volumes are
// deactivated, the pool device's table is swapped to `error` (the device and its major:minor stay; the pool
// object goes and closes its metadata), the whole metadata is verified in-process with the device opened
// exclusively, needs_check is cleared only if everything verifies, and the thin-pool table is loaded back.
// A repair killed half-way leaves the pool device with an `error` table: attach() recognises it by its uuid
// and sets the pool up again (a flag not cleared yet stays set: repair again).
import fs from 'node:fs';
import { native } from '../core/binding';
import { dmError } from '../core/errors';
import { Sectors } from '../core/units';
import { Steps, call, step, twin } from '../core/steps';
import { checkOptions, optBoolean } from '../core/validate';
import { nodeOfDevice } from '../dm/block';
import { error, line, ThinPoolStatus } from '../targets';
import { PoolChanges, removeDevice } from './changes';
import { readSteps } from './metadata';
import { PoolModeName, modeOf } from './pool-mode';
import { ProvisionedPool, reloadPool } from './provisioning';

/** Options of {@link ThinPool.repair}. */
export interface RepairOptions {
  /**
   * Deactivate the pool's active volumes for the repair, and activate them again after it (as they were:
   * same size, same read-only flag). Without it, a pool with active volumes is refused (ERR_DM_BUSY naming
   * them) and nothing is changed. A volume that is open (mounted, in use) is always refused.
   */
  deactivate?: boolean;
}

/** What {@link ThinPool.repair} did. */
export interface RepairResult {
  /** The pool's mode before the repair and after it ('rw' once it is back). */
  modeBefore: PoolModeName | 'repair interrupted';
  /** The pool's mode after the repair. */
  mode: PoolModeName;

  /** The metadata's needs_check flag was set, and is cleared. */
  clearedNeedsCheck: boolean;
  /** The pool was reloaded; false for a pool that was writable without needs_check (nothing to do). */
  reloaded: boolean;
  /** Volumes deactivated for the repair and activated again. */
  reactivated: string[];
}

/** What repair needs of its pool. */
export interface RepairingPool extends ProvisionedPool {
  readonly devSpec: string;
}

export function checkRepairOptions(options: unknown): RepairOptions {
  const o = checkOptions<RepairOptions>(options, ['deactivate'], 'repair options');
  optBoolean(o.deactivate, 'deactivate');
  return o;
}

interface ActiveVolume { name: string; id: number; size: Sectors; readOnly: boolean; open: boolean }

// The devices that use the pool now: the registry's volumes, and any other (never touched here).
function* usersOf(pool: RepairingPool, changes: PoolChanges): Steps<{ ours: ActiveVolume[]; foreign: string[] }> {
  const ours: ActiveVolume[] = [], foreign: string[] = [];
  for (const d of yield* step(twin(pool.dm, 'list', { uuids: true }))) {
    if (d.name === pool.name) continue;
    const info = yield* step(twin(pool.dm, 'infoIfExists', d.name));
    if (!info?.liveTable) continue;
    let table;
    try { table = yield* step(twin(pool.dm, 'table', d.name)); } catch { continue; /* gone meanwhile */ }
    const usesPool = table.some((t) => t.params.split(' ').includes(pool.devSpec));
    if (!usesPool) continue;
    const rec = changes.registry.get(d.name);
    const [t] = table;
    const id = t?.type === 'thin' ? Number(t.params.split(' ')[1]) : undefined;
    if (table.length === 1 && id !== undefined && (changes.thinIdOfUuid(d.uuid) === id || rec?.id === id))
      ours.push({ name: d.name, id, size: t.length, readOnly: info.readOnly, open: info.openCount > 0 });
    else foreign.push(d.name);
  }
  return { ours, foreign };
}

// The pool's mode now, or undefined while its table is not a thin-pool (an interrupted repair left `error`).
function* modeNow(pool: RepairingPool, changes: PoolChanges): Steps<{ status?: ThinPoolStatus; table: string }> {
  const [t] = yield* step(twin(pool.dm, 'table', pool.name));
  if (t?.type !== 'thin-pool') return { table: t?.type ?? 'empty' };
  return { status: yield* changes.statusSteps({ noflush: true }), table: t.type };
}

/** ThinPool.repair(), under the pool's lock. */
export function* repairSteps(pool: RepairingPool, changes: PoolChanges, o: RepairOptions): Steps<RepairResult> {
  changes.refuseIfLvm('repair');
  return yield* changes.locked(function* (): Steps<RepairResult> {
    const before = yield* modeNow(pool, changes);
    const s = before.status;
    if (!s && before.table !== 'error') throw dmError('ERR_DM_NOT_A_THIN_POOL', `its table is ${before.table}`, pool.name);
    const modeBefore = s ? modeOf(s) : 'repair interrupted';
    if (s?.state === 'ok' && s.mode !== 'ro' && !s.needsCheck)
      return { modeBefore: modeOf(s), mode: modeOf(s), clearedNeedsCheck: false, reloaded: false, reactivated: [] };

    const { ours, foreign } = yield* usersOf(pool, changes);
    const open = ours.filter((v) => v.open).map((v) => v.name);
    if (foreign.length || open.length || (ours.length && !o.deactivate)) {
      throw dmError('ERR_DM_BUSY', [
        open.length ? `volumes in use: ${open.join(', ')}` : '',
        ours.length && !o.deactivate && !open.length ? `active volumes: ${ours.map((v) => v.name).join(', ')} (deactivate them, or repair with { deactivate: true })` : '',
        foreign.length ? `devices the registry does not own use the pool: ${foreign.join(', ')}` : '',
      ].filter(Boolean).join('; ') + '; the kernel keeps the pool (and its mode) while anything uses it; nothing was changed', pool.name);
    }
    // Before anything changes: metadata that cannot be read (the fault is still there) or fails the checks
    // the reader makes is refused now, the pool left as it was. A read-only or failed pool writes nothing.
    const metaPath = nodeOfDevice(pool.params.metadataDev);
    if (s) yield* readSteps({ path: metaPath, view: {} }, true);
    // The pool's own loop devices clear themselves at their last close: held open while the table is `error`.
    const holds: number[] = [];
    try {
      for (const d of [pool.params.dataDev, pool.params.metadataDev]) holds.push(fs.openSync(nodeOfDevice(d), fs.constants.O_RDONLY));
      const [current] = yield* step(twin(pool.dm, 'table', pool.name));
      const length = current.length;
      const removed: ActiveVolume[] = [];
      let swapped = !s;
      let cleared: { wasSet: boolean };
      try {
        for (const v of ours) {
          yield* removeDevice(pool.dm, v.name, {});
          removed.push(v);
        }
        if (s) yield* swapTable(pool, [line(error, 0, length, {})]);
        swapped = true;
        cleared = yield* call(() => native.metadataClearNeedsCheck(metaPath), () => native.metadataClearNeedsCheckAsync(metaPath));
      } catch (e) {
        // The pool back as it was (its flag untouched), its volumes too; then the first error.
        try {
          if (swapped) yield* reloadPool(pool, pool.params, length);
          for (const v of removed) yield* changes.activateThinSteps(v.name, v.id, v.size, v.readOnly);
        } catch { /* the first error is the one to report */ }
        throw e;
      }
      yield* reloadPool(pool, pool.params, length);
      // A change the fault cut short (its commit refused) is settled now that the pool takes messages; if it
      // cannot be yet, the next change or open() settles it.
      try { yield* changes.recover(); } catch { /* see above */ }
      for (const v of ours) yield* changes.activateThinSteps(v.name, v.id, v.size, v.readOnly);
      const after = yield* changes.statusSteps({ noflush: true });
      return { modeBefore, mode: modeOf(after), clearedNeedsCheck: cleared.wasSet, reloaded: true, reactivated: ours.map((v) => v.name) };
    } finally {
      for (const fd of holds) fs.closeSync(fd);
    }
  });
}

// load, suspend, resume: the device keeps its number; the old table (and the kernel's pool with it) goes.
function* swapTable(pool: RepairingPool, table: ReturnType<typeof line>[]): Steps<void> {
  yield* step(twin(pool.dm, 'load', pool.name, table));
  try {
    yield* step(twin(pool.dm, 'suspend', pool.name));
  } catch (e) {
    try { yield* step(twin(pool.dm, 'clear', pool.name)); } catch { /* keep the first error */ }
    throw e;
  }
  yield* step(twin(pool.dm, 'resume', pool.name));
}
