// Leases: a volume tied to an owner, a process (pid and its start time, so a reused pid is not taken for it)
// or a TTL the owner renews, or both (either ending ends the lease). The lease lives in the volume's record,
// written in the create's own intent; collect() deletes, through the change protocol, the volumes whose lease
// has ended, re-checking each under the pool's lock so a lease renewed meanwhile is never touched.
import fs from 'node:fs';
import { DevmapperError, DeviceHolders, dmError } from '../core/errors';
import { Steps } from '../core/steps';
import { checkName, checkOptions, optBoolean, optInteger } from '../core/validate';
import type { VolumeLease, VolumeRecord } from './registry';
import { changesOf } from './changes';
import { processStat } from './pool-files';

/** What createVolume and snapshot take as `lease`: an owner process, a TTL, or both. */
export interface LeaseOptions {
  /** The owning process (in this process's pid namespace). */
  pid?: number;
  /** Milliseconds the lease lasts from now; the owner renews it with renewLease(). */
  ttlMs?: number;
}

export type { VolumeLease };

/** Options of {@link ThinPool.createVolume}. */
export interface CreateVolumeOptions {
  /** Tie the new volume to an owner: collect() deletes it once the owner is gone or the TTL has run out. */
  lease?: LeaseOptions;
}
/** Options of {@link ThinPool.snapshot}: as createVolume's. */
export type SnapshotOptions = CreateVolumeOptions;

/** Why a lease ended: its process exited, its pid now names another process, or its TTL ran out. */
export type LeaseEnd = 'owner-exited' | 'owner-pid-reused' | 'expired';

/** Options of {@link ThinPool.collect}. */
export interface CollectOptions {
  /** Only say what would be collected. */
  dryRun?: boolean;
}

/** A volume collect() deleted (or, with dryRun, would delete). */
export interface CollectedVolume {
  /** Its name. */
  name: string;
  /** Its thin id. */
  id: number;
  /** Why its lease ended. */
  reason: LeaseEnd;
  /** It was active, and was deactivated first (with dryRun: would be). */
  wasActive: boolean;
}

/** A volume whose lease had ended that collect() could not delete. */
export interface SkippedVolume {
  /** Its name. */
  name: string;
  /** Its thin id. */
  id: number;
  /** Why its lease ended. */
  reason: LeaseEnd;
  /** 'busy': open, mounted or stacked on (see holders); 'error': the kernel refused this volume otherwise (see error). */
  why: 'busy' | 'error';
  /** The error the deactivate or delete ended with. */
  error: DevmapperError;
  /** Who holds it, when it was busy. */
  holders?: DeviceHolders;
}

/** What {@link ThinPool.collect} did. */
export interface CollectReport {
  /** It only reported. */
  dryRun: boolean;
  /** The volumes deleted (dryRun: to delete). */
  collected: CollectedVolume[];
  /** The volumes that could not be. */
  skipped: SkippedVolume[];
}


/** The kernel's PID_MAX_LIMIT. */
export const MAX_PID = 4_194_304;
/** Ten years: any longer is a typo, not a lease. */
export const MAX_LEASE_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

export function checkLeaseOptions(lease: unknown): LeaseOptions | undefined {
  if (lease === undefined) return undefined;
  const o = checkOptions<LeaseOptions>(lease, ['pid', 'ttlMs'], 'lease');
  optInteger(o.pid, 'lease pid', 1, MAX_PID);
  checkTtl(o.ttlMs, 'lease ttlMs');
  if (o.pid === undefined && o.ttlMs === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'a lease needs a pid, a ttlMs or both');
  return o;
}

const checkTtl = (ttlMs: unknown, what: string): number | undefined => optInteger(ttlMs, what, 1, MAX_LEASE_TTL_MS);

/** createVolume's and snapshot's options, checked. */
export function checkCreateVolumeOptions(options: unknown, what: string): CreateVolumeOptions {
  const o = checkOptions<CreateVolumeOptions>(options, ['lease'], `${what} options`);
  checkLeaseOptions(o.lease);
  return o;
}

const readText = (file: string, link = false): string | undefined => {
  try { return link ? fs.readlinkSync(file) : fs.readFileSync(file, 'utf8').trim(); } catch { return undefined; }
};
const bootId = (): string | undefined => readText('/proc/sys/kernel/random/boot_id');
const pidNamespace = (): string | undefined => readText('/proc/self/ns/pid', true);

/** The lease to record for `o` (checked), from now: the owner's start time read; a process that does not run is refused. */
export function takeLease(o: LeaseOptions | undefined, device: string): VolumeLease | undefined {
  if (!o) return undefined;
  const lease: VolumeLease = {};
  if (o.pid !== undefined) {
    const stat = processStat(o.pid);
    if (!stat || stat.state === 'Z') throw dmError('ERR_DM_INVALID_ARGUMENT', `lease pid ${o.pid}: no such process`, device);
    Object.assign(lease, { pid: o.pid, pidStart: stat.start, bootId: bootId(), pidNamespace: pidNamespace() });
  }
  if (o.ttlMs !== undefined) Object.assign(lease, { ttlMs: o.ttlMs, expiresAt: Date.now() + o.ttlMs });
  return lease;
}

/**
 * Whether a recorded lease has ended at `now`, and why; undefined while it holds (or for no lease). Only what
 * is known counts: a pid taken in another boot has ended; one taken in another pid namespace is not judged
 * (its TTL still is); a field of the wrong type (another store's record) is not judged.
 */
export function leaseEnded(lease: VolumeLease | undefined, now: number): LeaseEnd | undefined {
  if (typeof lease !== 'object' || lease === null) return undefined;
  if (typeof lease.pid === 'number' && typeof lease.pidStart === 'string') {
    const boot = bootId();
    if (lease.bootId !== undefined && boot !== undefined && lease.bootId !== boot) return 'owner-exited';
    if (lease.pidNamespace === undefined || lease.pidNamespace === pidNamespace()) {
      const stat = processStat(lease.pid);
      if (!stat || stat.state === 'Z') return 'owner-exited';
      if (stat.start !== lease.pidStart) return 'owner-pid-reused';
    }
  }
  if (typeof lease.expiresAt === 'number' && now >= lease.expiresAt) return 'expired';
  return undefined;
}

/**
 * renewLease: the volume's TTL runs `ttlMs` (by default the lease's own ttlMs) from now. Under the pool's lock;
 * returns the new record. A volume with no lease, or a lease with no TTL and no ttlMs given, is refused.
 */
export function* renewLeaseSteps(pool: object, name: string, ttlMs: unknown): Steps<VolumeRecord> {
  checkName(name, 'volume name');
  checkTtl(ttlMs, 'ttlMs');
  const changes = changesOf(pool, name);
  changes.refuseIfLvm('renew a lease');
  return yield* changes.locked(function* (): Steps<VolumeRecord> {
    const rec = changes.registry.get(name);
    if (!rec) throw dmError('ERR_DM_NO_SUCH_VOLUME', `no volume '${name}' in pool ${changes.name}`, name);
    if (!rec.lease) throw dmError('ERR_DM_INVALID_ARGUMENT', 'the volume has no lease to renew', name);
    const ttl = (ttlMs as number | undefined) ?? rec.lease.ttlMs;
    if (ttl === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'the lease has no TTL: give ttlMs', name);
    const next: VolumeRecord = { ...rec, lease: { ...rec.lease, ttlMs: ttl, expiresAt: Date.now() + ttl } };
    changes.registry.commit({ put: [next] });
    return next;
  });
}

/**
 * collect: every volume whose lease has ended is deactivated (if active) and deleted through the change
 * protocol, each under the pool's lock after its lease is read again there. One that is busy (open, mounted,
 * stacked on) or that the kernel refuses otherwise is skipped and reported, and the others go on; an error of
 * the pool's own (its lock, its registry, its mode) is thrown.
 */
export function* collectSteps(pool: object, options: unknown): Steps<CollectReport> {
  const o = checkOptions<CollectOptions>(options, ['dryRun'], 'collect options');
  const dryRun = optBoolean(o.dryRun, 'dryRun') ?? false;
  const changes = changesOf(pool);
  if (!dryRun) changes.refuseIfLvm('collect');
  changes.registry.refresh();
  const report: CollectReport = { dryRun, collected: [], skipped: [] };
  for (const candidate of changes.registry.list()) {
    let reason = leaseEnded(candidate.lease, Date.now());
    if (!reason) continue;
    let rec = candidate;
    const wasActive = yield* changes.isActiveThinSteps(rec.name, rec.id);
    if (dryRun) {
      report.collected.push({ name: rec.name, id: rec.id, reason, wasActive });
      continue;
    }
    try {
      const deleted = yield* changes.deleteVolumeSteps(rec.name, { deactivate: {} }, (now) => {
        reason = now && leaseEnded(now.lease, Date.now());
        if (now) rec = now;
        return reason !== undefined;
      });
      if (deleted) report.collected.push({ name: rec.name, id: rec.id, reason: reason!, wasActive });
    } catch (e) {
      // What is about the pool (its lock, registry or mode; a sync call during a promise one) ends the collect.
      if (!(e instanceof DevmapperError) || (e.code.startsWith('ERR_DM_') && e.code !== 'ERR_DM_BUSY')) throw e;
      const busy = e.code === 'EBUSY' || e.code === 'ERR_DM_BUSY';
      report.skipped.push({ name: rec.name, id: rec.id, reason: reason!, why: busy ? 'busy' : 'error', error: e, ...(e.holders && { holders: e.holders }) });
    }
  }
  return report;
}
