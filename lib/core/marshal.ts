// The one place that talks to the addon's DM entry points: packs a RawDmRequest into the native calling
// convention (numbers in a Float64Array "head", strings positional, targets flat) and unpacks the reply into a
// RawDmResponse. Each N-API property access costs more than the ioctl itself, so the boundary stays narrow.
import { K, Cancellable, DmBinding, RawDmPayload, RawDmRequest, RawDmResponse, RawDmSeqResult, RawDmStep } from './binding';

const H = {
  flags: K.DM_HEAD_FLAGS, eventNr: K.DM_HEAD_EVENT_NR, major: K.DM_HEAD_MAJOR, minor: K.DM_HEAD_MINOR,
  hasDev: K.DM_HEAD_HAS_DEV, hasMessage: K.DM_HEAD_HAS_MESSAGE, sector: K.DM_HEAD_SECTOR,
  expectErrno: K.DM_HEAD_EXPECT_ERRNO, openCount: K.DM_HEAD_OPEN_COUNT, targetCount: K.DM_HEAD_TARGET_COUNT,
  node: K.DM_HEAD_NODE, bufferSize: K.DM_HEAD_BUFFER_SIZE, version: K.DM_HEAD_VERSION, size: K.DM_HEAD_SIZE,
};

// Allocating a typed array costs more than the ioctl, so heads are reused: one for sync calls (they cannot
// overlap), a small free list for calls in flight off the main thread.
const syncHead = new Float64Array(H.size);
const freeHeads: Float64Array[] = [];
const takeHead = () => freeHeads.pop() ?? new Float64Array(H.size);
const giveHead = (head: Float64Array) => { if (freeHeads.length < 64) freeHeads.push(head); };

/** A request with every field present, in one order: built this way, all requests share one shape and the
 * reads in packHead stay monomorphic. */
export function dmRequest(): RawDmRequest {
  return { name: undefined, uuid: undefined, dev: undefined, flags: 0, eventNr: 0, targets: undefined, message: undefined, data: undefined, node: 0 };
}

// Sets every slot the addon reads, so a reused head needs no clearing.
function packHead(head: Float64Array, req: RawDmRequest, expectErrno: number): Float64Array {
  head[H.flags] = req.flags ?? 0;
  head[H.eventNr] = req.eventNr ?? 0;
  const dev = req.dev;
  head[H.hasDev] = dev ? 1 : 0;
  head[H.major] = dev ? dev.major : 0;
  head[H.minor] = dev ? dev.minor : 0;
  const message = req.message;
  head[H.hasMessage] = message ? 1 : 0;
  head[H.sector] = message ? message.sector : 0;
  head[H.expectErrno] = expectErrno;
  head[H.node] = req.node ?? 0;
  return head;
}

function flatTargets(req: RawDmRequest): (number | string)[] | undefined {
  const targets = req.targets;
  if (!targets) return undefined;
  const flat: (number | string)[] = [];
  for (let i = 0; i < targets.length; i++) { const t = targets[i]; flat.push(t.start, t.length, t.type, t.params); }
  return flat;
}

const dataOf = (req: RawDmRequest) => (req.message ? req.message.text : req.data);

function unpack(head: Float64Array, ret: string | RawDmPayload): RawDmResponse {
  const payload = typeof ret === 'string' ? undefined : ret;
  const key = payload ? payload.key : (ret as string);
  const z = key.indexOf('\0');
  return {
    version: [head[H.version], head[H.version + 1], head[H.version + 2]],
    flags: head[H.flags],
    openCount: head[H.openCount],
    eventNr: head[H.eventNr],
    targetCount: head[H.targetCount],
    dev: { major: head[H.major], minor: head[H.minor] },
    name: key.slice(0, z),
    uuid: key.slice(z + 1),
    bufferSize: head[H.bufferSize],
    targets: payload?.targets,
    deps: payload?.deps,
    devices: payload?.devices ?? [],
    versions: payload?.versions,
    output: payload?.output,
  };
}

/** One DM ioctl on the calling thread. With expectErrno, that errno returns null instead of throwing. */
export function dmSync(b: DmBinding, fd: number, cmd: number, req: RawDmRequest, expectErrno = 0): RawDmResponse | null {
  const ret = b.dm(fd, cmd, packHead(syncHead, req, expectErrno), req.name, req.uuid, dataOf(req), flatTargets(req));
  return ret === null ? null : unpack(syncHead, ret);
}

/** One DM ioctl on the libuv pool. `read` makes the result from the reply in the same turn: under emulation
 * each extra promise turn per call is measurable. */
export function dmAsync<T>(b: DmBinding, fd: number, cmd: number, req: RawDmRequest,
  read: (r: RawDmResponse | null) => T | PromiseLike<T>, expectErrno = 0): Promise<T> {
  const head = takeHead();
  return b.dmAsync(fd, cmd, packHead(head, req, expectErrno), req.name, req.uuid, dataOf(req), flatTargets(req)).then(
    (ret) => { const r = ret === null ? null : unpack(head, ret); giveHead(head); return read(r); },
    (e) => { giveHead(head); throw e; });
}

export interface DmStep { cmd: number; req: RawDmRequest }
export interface DmSeqResult { replies: RawDmResponse[]; error?: Error }

function packSteps(steps: readonly DmStep[], heads: Float64Array[]): RawDmStep[] {
  return steps.map(({ cmd, req }, i) => [cmd, packHead(heads[i], req, 0), req.name, req.uuid, dataOf(req), flatTargets(req)]);
}
const unpackSeq = (heads: Float64Array[], r: RawDmSeqResult): DmSeqResult =>
  ({ replies: r.replies.map((ret, i) => unpack(heads[i], ret)), error: r.error });

/** Several DM ioctls in order on the calling thread; stops at the first failure, whose error comes back. */
export function dmSeqSync(b: DmBinding, fd: number, steps: readonly DmStep[]): DmSeqResult {
  const heads = steps.map(() => new Float64Array(H.size));
  return unpackSeq(heads, b.dmSeq(fd, packSteps(steps, heads)));
}

/** The same in one trip to the libuv pool. */
export function dmSeqAsync(b: DmBinding, fd: number, steps: readonly DmStep[]): Promise<DmSeqResult> {
  const heads = steps.map(takeHead);
  return b.dmSeqAsync(fd, packSteps(steps, heads)).then(
    (r) => { const out = unpackSeq(heads, r); heads.forEach(giveHead); return out; },
    (e) => { heads.forEach(giveHead); throw e; });
}

/** DM_DEV_WAIT (or `cmd`) on a thread of its own; cancel() rejects the promise with ECANCELED. */
export function dmWait(b: DmBinding, fd: number, req: RawDmRequest, cmd = K.DM_DEV_WAIT_CMD): Cancellable<RawDmResponse> {
  const head = packHead(new Float64Array(H.size), req, 0);
  const job = b.dmWait(fd, cmd, head, req.name, req.uuid);
  return { promise: job.promise.then((ret) => unpack(head, ret!)), cancel: job.cancel };
}

/** `cmd` on a thread of its own for a sync caller, interrupted after timeoutMs (ECANCELED). */
export function dmTimedSync(b: DmBinding, fd: number, cmd: number, req: RawDmRequest, timeoutMs: number): RawDmResponse {
  const head = packHead(new Float64Array(H.size), req, 0);
  return unpack(head, b.dmTimed!(fd, cmd, head, req.name, req.uuid, undefined, undefined, timeoutMs)!);
}
