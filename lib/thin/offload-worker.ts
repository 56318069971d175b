// The offload worker (offload.ts): runs pool changes as their sync twins, one at a time in the order sent, on
// shadows of the sending thread's pools, and answers each with its result or its error as plain data.
import { parentPort, workerData } from 'node:worker_threads';
import { cloneError } from '../core/errors';
import type { Bytes } from '../core/units';
import { changesOf } from './changes';
import { OffloadCall, OffloadReply, OffloadRequest, Shared } from './offload';
import { ThinPool, shadowPool } from './pool';
import type { VolumeRecord } from './registry';
import { LockBusy, WorkerLock } from './lock';
import { ThinVolume } from './volume';

type Size = Bytes | number | string;
// Each method's arguments as offloaded() sends them, checked by the sending thread.
const methods: Record<OffloadCall['method'], (pool: ThinPool, args: never) => unknown> = {
  createVolume: (pool, [name, size, o]: [string, Size, never]) => ThinVolume.recordOf(pool.createVolumeSync(name, size, o)),
  snapshot: (pool, [origin, name, o]: [string, string, never]) => ThinVolume.recordOf(pool.snapshotSync(origin, name, o)),
  deleteVolume: (pool, [name, o]: [string, never]) => pool.deleteVolumeSync(name, o),
  resizeVolume: (pool, [name, size]: [string, Size]) => pool.resizeVolumeSync(name, size),
  activate: (pool, [rec, o]: [VolumeRecord, never]) => { new ThinVolume(pool, rec).activateSync(o); },
  deactivate: (pool, [rec, o]: [VolumeRecord, never]) => { new ThinVolume(pool, rec).deactivateSync(o); },
  delete: (pool, [rec, o]: [VolumeRecord, never]) => { new ThinVolume(pool, rec).deleteSync(o); },
  resize: (pool, [rec, size]: [VolumeRecord, Size]) => {
    const v = new ThinVolume(pool, rec);
    v.resizeSync(size);
    return ThinVolume.recordOf(v);
  },
};

const pools = new Map<number, { pool: ThinPool; lock: WorkerLock }>();
const shared = workerData as Int32Array;

function run(req: OffloadRequest): OffloadReply {
  Atomics.store(shared, Shared.Started, req.id);
  if ('drop' in req) {
    const shadow = pools.get(req.drop);
    pools.delete(req.drop);
    try {
      if (shadow) {
        // The sending thread's close cleared the last change, under the lock: nothing to write, no lock to take.
        changesOf(shadow.pool).committedChange = undefined;
        shadow.lock.mode = 'held';
        shadow.pool.closeSync();
      }
    } catch { /* its registry is closed either way; the sending thread's pool was closed */ }
    return { id: req.id, ok: true };
  }
  let shadow = pools.get(req.pool);
  try {
    if (!shadow) {
      shadow = shadowPool(req.spec);
      shadow.lock.onHeld = (fd) => Atomics.store(shared, Shared.LockFd, fd);
      pools.set(req.pool, shadow);
    }
    const changes = changesOf(shadow.pool);
    changes.committedChange = req.committed;
    shadow.lock.mode = req.lock;
    shadow.lock.fresh = true;
    const value = methods[req.call.method](shadow.pool, req.call.args as never);
    return { id: req.id, ok: true, value, committed: changes.committedChange };
  } catch (e) {
    if (e instanceof LockBusy) return { id: req.id, busy: true };
    return { id: req.id, ok: false, error: cloneError(e), committed: shadow && changesOf(shadow.pool).committedChange };
  }
}

parentPort!.on('message', (req: OffloadRequest) => parentPort!.postMessage(run(req)));
