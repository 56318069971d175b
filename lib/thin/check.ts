// check(): the registry, the pool's own metadata and the live dm devices that map this pool's thin ids,
// compared. The registry and the devices are read under the pool's lock at the instant of the metadata
// snapshot's reserve, so the three views are of one moment (another process's change cannot fall between).
import { dmError } from '../core/errors';
import { Sectors } from '../core/units';
import { checkOptions, optBoolean, show } from '../core/validate';
import { Steps, step, twin } from '../core/steps';
import { DeviceMapper } from '../dm/device-mapper';
import { PoolMode, thin } from '../targets';
import type { PendingChange, RegistryStore, VolumeRecord } from './registry';
import type { PoolChanges } from './changes';
import { MetadataReadOptions, PoolMetadataReader } from './metadata-snapshot';
import { DataBlocks } from '../core/units';
import { readSteps, toMetadata } from './metadata';

/** A live dm device whose table is one `thin` target on this pool. */
export interface LiveThin {
  /** The device's name. */
  name: string;
  /** The thin id its table maps. */
  id: number;
  /** Its table's length, in sectors. */
  size: Sectors;
}

/** A thin id in the pool's metadata that no registry record names. */
export interface OrphanThin {
  /** The thin id. */
  id: number;
  /** Data blocks it maps. */
  mappedBlocks: DataBlocks;
  /** Live devices that map it. */
  devices: string[];
}

/** What {@link ThinPool.check} found: the registry, the pool's metadata and the live devices compared. */
export interface PoolCheck {
  /** The pool's transaction id, from its metadata. */
  transactionId: number;
  /** null when the pool reports Fail or Error. */
  mode: PoolMode | null;
  /** The metadata is flagged needs_check. */
  needsCheck: boolean;
  /** A change recorded in the registry that the pool's transaction id says is not finished (open() finishes it). */
  unfinished: PendingChange | null;
  /** Records whose thin id is not in the pool. */
  lost: VolumeRecord[];
  /** Thin ids in the pool that no record names. */
  orphans: OrphanThin[];
  /** Live devices mapping a thin id of this pool that no record of that name describes. */
  unrecordedDevices: LiveThin[];
  /** Live devices named as a record whose table maps another id, or another size. */
  mismatchedDevices: {
    /** The device's (and the record's) name. */
    name: string;
    /** What the record says. */
    record: {
      /** Its thin id. */
      id: number;
      /** Its size, in sectors. */
      size: Sectors;
    };
    /** What the device's table maps. */
    table: {
      /** Its thin id. */
      id: number;
      /** Its length, in sectors. */
      size: Sectors;
    };
  }[];
  /** Nothing of the above: the registry and the pool agree. */
  clean: boolean;
}

interface AtReserve { records: VolumeRecord[]; pending: PendingChange | undefined; devices: LiveThin[] }

export interface CheckedPool {
  readonly name: string;
  readonly dm: DeviceMapper;
  readonly devSpec: string;
  readonly registry: RegistryStore;
}

/** The live devices whose table is one thin target on the pool `devSpec`: ours by uuid, or anyone's. */
function* liveThinsSteps(pool: CheckedPool, changes: PoolChanges): Steps<LiveThin[]> {
  const out: LiveThin[] = [];
  for (const d of yield* step(twin(pool.dm, 'list', { uuids: true }))) {
    // Devices the library made for other pools, and LVM's, are not looked into.
    if (d.uuid?.startsWith('LVM-') || d.uuid?.startsWith('DEVMAPPER-POOL-')) continue;
    if (d.uuid?.startsWith('DEVMAPPER-THIN-') && changes.thinIdOfUuid(d.uuid) === undefined) continue;
    let table;
    try {
      table = yield* step(twin(pool.dm, 'table', d.name));
    } catch {
      continue;  // gone meanwhile, or no live table
    }
    if (table.length !== 1 || table[0].type !== 'thin') continue;
    const t = thin.parse(table[0].params);
    if (t.pool !== pool.devSpec) continue;
    out.push({ name: d.name, id: t.deviceId, size: table[0].length });
  }
  return out;
}

export function* checkSteps(pool: CheckedPool, changes: PoolChanges, reader: PoolMetadataReader, o: MetadataReadOptions | undefined): Steps<PoolCheck> {
  return yield* reader.withSnapshot(o, function* (): Steps<AtReserve> {
    pool.registry.refresh();
    return { records: pool.registry.list(), pending: pool.registry.pending(), devices: yield* liveThinsSteps(pool, changes) };
  }, function* (src, other, at): Steps<PoolCheck> {
    const md = toMetadata(yield* readSteps(src, false), other);
    const status = yield* changes.statusSteps({ noflush: true });
    const inPool = new Map(md.devices.map((d) => [d.id, d]));
    const byName = new Map(at.records.map((r) => [r.name, r]));
    const recordedIds = new Set(at.records.map((r) => r.id));
    const p = at.pending;
    const unfinished = p && md.transactionId !== p.toTid ? p : null;
    // An unfinished create's record and an unfinished delete's id are that change's, not drift.
    const lost = at.records.filter((r) => !inPool.has(r.id) && !(unfinished && unfinished.op !== 'delete' && unfinished.name === r.name));
    const orphans: OrphanThin[] = md.devices
      .filter((d) => !recordedIds.has(d.id) && !(unfinished?.op === 'delete' && unfinished.id === d.id))
      .map((d) => ({ id: d.id, mappedBlocks: d.mappedBlocks, devices: at.devices.filter((l) => l.id === d.id).map((l) => l.name) }));
    const unrecordedDevices: LiveThin[] = [];
    const mismatchedDevices: PoolCheck['mismatchedDevices'] = [];
    for (const l of at.devices) {
      const r = byName.get(l.name);
      if (!r) unrecordedDevices.push(l);
      else if (r.id !== l.id || r.size !== l.size) mismatchedDevices.push({ name: l.name, record: { id: r.id, size: r.size }, table: { id: l.id, size: l.size } });
    }
    return {
      transactionId: md.transactionId,
      mode: status.state === 'ok' ? status.mode : null,
      needsCheck: md.needsCheck || (status.state === 'ok' && status.needsCheck),
      unfinished, lost, orphans, unrecordedDevices, mismatchedDevices,
      clean: !unfinished && !lost.length && !orphans.length && !unrecordedDevices.length && !mismatchedDevices.length,
    };
  });
}

/** Options of {@link ThinPool.reconcile}. */
export interface ReconcileOptions {
  /** Compute and return the plan, change nothing. */
  dryRun?: boolean;
  /** Thin ids in the pool with no record: adopt them as volumes (default), delete them (their data goes), or keep them as they are. */
  orphans?: 'adopt' | 'delete' | 'keep';
}

/** What {@link ThinPool.reconcile} did (with dryRun: would do). */
export interface ReconcilePlan {
  /** It only computed the plan. */
  dryRun: boolean;
  /** Lost records dropped (their ids are not in the pool). */
  dropped: VolumeRecord[];
  /** Lost records kept: a device of that name is live. */
  keptRecords: {
    /** The record. */
    record: VolumeRecord;
    /** Why it was kept. */
    reason: string;
  }[];

  /** Orphans adopted as volumes: named after a live device that maps them, else `thin-<id>`; sized from that device's table, else from the highest mapped block. */
  adopted: VolumeRecord[];
  /** Orphan ids deleted from the pool. */
  deleted: number[];
  /** Orphan ids left as they are. */
  kept: number[];
  /** What check() found before. */
  before: PoolCheck;
}

/** What reconcile needs of a pool beyond check(). */
export interface ReconcilingPool extends CheckedPool {
  readonly blockSize: Sectors;
}

const ORPHAN_POLICIES = ['adopt', 'delete', 'keep'] as const;

export function checkReconcileOptions(options: unknown, device: string): Required<ReconcileOptions> {
  const o = checkOptions<ReconcileOptions>(options, ['dryRun', 'orphans'], 'reconcile options');
  const orphans = o.orphans ?? 'adopt';
  if (!ORPHAN_POLICIES.includes(orphans as never))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `orphans must be 'adopt', 'delete' or 'keep', got ${show(orphans)}`, device);
  return { dryRun: optBoolean(o.dryRun, 'dryRun') ?? false, orphans };
}

/**
 * Brings the registry in line with the pool: an unfinished change is finished first (as open() does); lost
 * records are dropped, never one whose device is live; orphans are adopted, deleted through the change
 * protocol, or kept. Nothing with data is deleted unless `orphans: 'delete'` says so.
 */
export function* reconcileSteps(pool: ReconcilingPool, changes: PoolChanges, reader: PoolMetadataReader, o: Required<ReconcileOptions>): Steps<ReconcilePlan> {
  if (!o.dryRun) {
    changes.refuseIfLvm('reconcile');
    yield* changes.locked(function* (this: PoolChanges) { yield* this.recover(); });
  }
  const before = yield* checkSteps(pool, changes, reader, undefined);
  const plan: ReconcilePlan = { dryRun: o.dryRun, dropped: [], keptRecords: [], adopted: [], deleted: [], kept: [], before };
  const taken = new Set(pool.registry.list().map((r) => r.name));
  for (const rec of before.lost) {
    const live = yield* step(twin(pool.dm, 'exists', rec.name));
    if (live) plan.keptRecords.push({ record: rec, reason: `a device named ${rec.name} is live` });
    else plan.dropped.push(rec);
  }
  if (before.orphans.length && o.orphans !== 'keep') {
    // Sizes of orphans no live device maps come from their highest mapped block (a usage walk).
    const highest = new Map<number, number | null>();
    if (o.orphans === 'adopt' && before.orphans.some((x) => !x.devices.length))
      for (const u of (yield* reader.usageSteps(undefined)).devices) highest.set(u.id, u.highestMappedBlock);
    for (const orphan of before.orphans) {
      const device = orphan.devices.find((d) => !taken.has(d));
      let name = device ?? `thin-${orphan.id}`;
      for (let n = 2; taken.has(name); n++) name = `thin-${orphan.id}-${n}`;
      taken.add(name);
      const live = before.unrecordedDevices.find((d) => d.name === device);
      const top = highest.get(orphan.id);
      const size = (live ? live.size : ((top ?? 0) + 1) * pool.blockSize) as Sectors;
      const rec: VolumeRecord = { name, id: orphan.id, size, parent: null, state: 'ready', created: Date.now() };
      if (o.orphans === 'adopt') plan.adopted.push(rec);
      else plan.deleted.push(orphan.id);
      if (o.orphans === 'delete') plan.adopted.push(rec);  // adopted first, then deleted through the protocol
    }
  } else {
    plan.kept.push(...before.orphans.map((x) => x.id));
  }
  if (o.dryRun) {
    if (o.orphans === 'delete') plan.adopted = [];
    return plan;
  }
  yield* changes.locked(function* (this: PoolChanges): Steps<void> {
    pool.registry.refresh();
    // Each record as check() saw it, still: another process may have changed it since.
    const drop = plan.dropped.filter((r) => pool.registry.get(r.name)?.id === r.id);
    const adopt = plan.adopted.filter((r) => !pool.registry.get(r.name) && !pool.registry.list().some((x) => x.id === r.id));
    if (drop.length || adopt.length)
      pool.registry.commit({ remove: drop.map((r) => r.name), freeIds: drop.map((r) => r.id), put: adopt, takeIds: adopt.map((r) => r.id) });
  });
  if (o.orphans === 'delete') {
    for (const rec of plan.adopted) yield* changes.deleteVolumeSteps(rec.name, { deactivate: {} });
    plan.adopted = [];
  }
  return plan;
}
