// check(): the registry, the pool's own metadata and the live dm devices that map this pool's thin ids,
// compared. The registry and the devices are read under the pool's lock at the instant of the metadata
// snapshot's reserve, so the three views are of one moment (another process's change cannot fall between).
import { Sectors } from '../core/units';
import { Steps, step, twin } from '../core/steps';
import { DeviceMapper } from '../dm/device-mapper';
import { PoolMode, thin } from '../targets';
import type { PendingChange, RegistryStore, VolumeRecord } from './registry';
import type { PoolChanges } from './changes';
import { MetadataReadOptions, PoolMetadataReader } from './metadata-snapshot';
import { DataBlocks } from '../core/units';
import { readSteps, toMetadata } from './metadata';

/** A live dm device whose table is one `thin` target on this pool. */
export interface LiveThin { name: string; id: number; size: Sectors }

export interface OrphanThin {
  id: number;
  mappedBlocks: DataBlocks;
  /** Live devices that map it. */
  devices: string[];
}

export interface PoolCheck {
  /** The pool's transaction id, from its metadata. */
  transactionId: number;
  /** null when the pool reports Fail or Error. */
  mode: PoolMode | null;
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
  mismatchedDevices: { name: string; record: { id: number; size: Sectors }; table: { id: number; size: Sectors } }[];
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
