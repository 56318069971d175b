// The low-level control API: one method per DM command, each as a promise (runs on the libuv pool, or on a
// thread of its own for waits) and as a sync twin (`...Sync`). Requests are validated before any ioctl.
import os from 'node:os';
import { dmError, DevmapperError } from '../core/errors';
import { K, native, Cancellable, DmBinding, DevNumber, RawDmRequest, RawDmResponse, RawTarget } from '../core/binding';
import { dmAsync, dmRequest, dmSeqAsync, dmSeqSync, dmSync, dmTimedSync, dmWait } from '../core/marshal';
import { Sectors } from '../core/units';
import { MAX_MAJOR, MAX_MINOR, checkInteger, checkKnownKeys, checkName, checkOptions, checkText, checkUuid, optBoolean, optInteger, optSignal, show } from '../core/validate';
import * as nodes from './dev-nodes';
import { FdHandle } from '../core/handles';
import { Steps, op, runAsync, runSync, step, twin } from '../core/steps';
import type {
  CreateOptions, DeviceInfo, DeviceListEntry, DeviceMapperOptions, DeviceRef, DmBatch, Geometry, KernelVersion, LoadOptions,
  MessageOptions, QueryOptions, RemoveOptions, SuspendOptions, Target, TargetVersion, WaitOptions, WaitResult,
} from './types';

// What JS does about /dev/mapper after a command: wait for udev's node ('make'), or move it (rename). Making
// and removing nodes without udev is the addon's, through the request's node step (nodeStep).
type NodeEffect = 'make' | { rename: string };

/** One DM command: what to send and how to read what comes back. Run by runPlan (promise) or runPlanSync. */
interface Plan<T> {
  cmd: number;
  req: RawDmRequest;
  map: (r: RawDmResponse) => T;
  node?: NodeEffect;
  /** The interface minor this command needs, checked against the kernel before sending. */
  needsMinor?: number;
}

// Every plan has all fields, in one order: one object shape, so runPlan's reads of it stay monomorphic.
function plan<T>(cmd: number, req: RawDmRequest, map: (r: RawDmResponse) => T, node?: NodeEffect, needsMinor?: number): Plan<T> {
  return { cmd, req, map, node, needsMinor };
}

const ENXIO = os.constants.errno.ENXIO;

/** Marks a batch's error with how many of its commands ran before it. */
function completedBefore(e: unknown, completed: number): unknown {
  if (e instanceof DevmapperError) e.completed = completed;
  return e;
}

/** Runs `fn`; a synchronous throw (bad input, a closed DeviceMapper) becomes a rejected promise. */
function settle<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (e) {
    return Promise.reject(e);
  }
}
const TARGET_TYPE = /^[A-Za-z0-9_-]{1,15}$/;

// udev flags in the high 16 bits of event_nr: mark our events as a primary source, as libdm does.
const UDEV_PRIMARY_SOURCE = 0x40 << 16;

// ---- argument checks: every request is checked here before any ioctl ---------------------------------
// Option objects are checked by known keys (a typo is refused by name, never taken as the default); flags
// are booleans, numbers integers in the kernel field's range; nothing is coerced, clamped or cut.

const REF_KEYS = ['name', 'uuid', 'dev'] as const;
const CREATE_KEYS = ['uuid', 'readOnly', 'minor'] as const;
const LOAD_KEYS = ['readOnly', 'secure'] as const;
/** createDevice takes the options of both CREATE and LOAD. */
const CREATE_DEVICE_KEYS = [...CREATE_KEYS, 'secure'] as const;
const QUERY_KEYS = ['inactive', 'noflush'] as const;
const WAIT_KEYS = [...QUERY_KEYS, 'timeoutMs', 'signal'] as const;
const NODE_POLICIES: readonly unknown[] = ['auto', 'manage', 'udev', 'none'];
const MAX_TIMEOUT_MS = 2 ** 31 - 1;  // setTimeout's and poll()'s bound

/** { major, minor } within dev_t's fields, and nothing else. */
function checkDev(dev: unknown, what = 'dev'): DevNumber {
  if (dev === null || typeof dev !== 'object') throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be { major, minor }, got ${show(dev)}`);
  const d = checkOptions<DevNumber>(dev, ['major', 'minor'], what);
  return { major: checkInteger(d.major, `${what}.major`, 0, MAX_MAJOR), minor: checkInteger(d.minor, `${what}.minor`, 0, MAX_MINOR) };
}

/** A device: a name, or an object with exactly one of name, uuid or dev. */
function refRequest(ref: DeviceRef): RawDmRequest {
  const req = dmRequest();
  if (typeof ref === 'string') {
    req.name = checkName(ref);
    return req;
  }
  if (ref === null || typeof ref !== 'object' || Array.isArray(ref))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `a device is named by a string, {name}, {uuid} or {dev}, got ${show(ref)}`);
  const r = checkOptions<{ name?: unknown; uuid?: unknown; dev?: unknown }>(ref, REF_KEYS, 'device reference');
  const keys = Object.keys(r);
  if (keys.length !== 1)
    throw dmError('ERR_DM_INVALID_ARGUMENT', `a device reference has exactly one of name, uuid or dev, got ${keys.length ? keys.join(' and ') : 'none'}`);
  if (keys[0] === 'name') req.name = checkName(r.name);
  else if (keys[0] === 'uuid') req.uuid = checkUuid(r.uuid);
  else req.dev = checkDev(r.dev);
  return req;
}

/** Options of a status, table, deps or wait: known keys, flags as booleans (and a wait's timeout and signal). */
function checkQuery(options: unknown, what: string, known: readonly string[] = QUERY_KEYS): WaitOptions {
  const o = checkOptions<WaitOptions>(options, known as (keyof WaitOptions)[], what);
  optBoolean(o.inactive, 'inactive');
  optBoolean(o.noflush, 'noflush');
  if (known === WAIT_KEYS) {
    optInteger(o.timeoutMs, 'timeoutMs', 0, MAX_TIMEOUT_MS);
    optSignal(o.signal);
  }
  return o;
}

function checkDeviceMapperOptions(options: unknown): DeviceMapperOptions {
  const o = checkOptions<DeviceMapperOptions>(options, ['nodes', 'udevTimeoutMs', 'binding'], 'DeviceMapper options');
  if (o.nodes !== undefined && !NODE_POLICIES.includes(o.nodes))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `nodes must be 'auto', 'manage', 'udev' or 'none', got ${show(o.nodes)}`);
  optInteger(o.udevTimeoutMs, 'udevTimeoutMs', 0, MAX_TIMEOUT_MS);
  return o;
}

/** A request for a device whose name is already checked. */
function nameRequest(name: string): RawDmRequest {
  const req = dmRequest();
  req.name = name;
  return req;
}

function flagsRequest(flags: number): RawDmRequest {
  const req = dmRequest();
  req.flags = flags;
  return req;
}

// waitSync takes QueryOptions only: a timeout it cannot honour is refused, not ignored.
function waitRequest(ref: DeviceRef, eventNr: number, options: QueryOptions | undefined, known: readonly string[] = QUERY_KEYS): RawDmRequest {
  const req = refRequest(ref);
  req.eventNr = checkInteger(eventNr, 'eventNr', 0, 2 ** 32 - 1);
  const o = checkQuery(options, known === QUERY_KEYS ? 'waitSync options' : 'wait options', known);
  req.flags = (o.inactive ? K.DM_QUERY_INACTIVE_TABLE_FLAG : 0) | (o.noflush ? K.DM_NOFLUSH_FLAG : 0);
  return req;
}

export function toInfo(r: RawDmResponse): DeviceInfo {
  return {
    name: r.name,
    uuid: r.uuid,
    dev: r.dev,
    openCount: r.openCount,
    eventNr: r.eventNr,
    targetCount: r.targetCount,
    suspended: (r.flags & K.DM_SUSPEND_FLAG) !== 0,
    readOnly: (r.flags & K.DM_READONLY_FLAG) !== 0,
    liveTable: (r.flags & K.DM_ACTIVE_PRESENT_FLAG) !== 0,
    inactiveTable: (r.flags & K.DM_INACTIVE_PRESENT_FLAG) !== 0,
    deferredRemove: (r.flags & K.DM_DEFERRED_REMOVE) !== 0,
    internalSuspend: (r.flags & K.DM_INTERNAL_SUSPEND_FLAG) !== 0,
  };
}

function toTargets(r: RawDmResponse): Target[] {
  return (r.targets ?? []).map((t) => ({ start: t.start as Sectors, length: t.length as Sectors, type: t.type, params: t.params }));
}

function toVersion(v: [number, number, number]): KernelVersion {
  return { major: v[0], minor: v[1], patch: v[2] };
}

// Readers of replies, one per kind of result (module-level: no closure is made per call).
const versionOf = (r: RawDmResponse): KernelVersion => toVersion(r.version);
const devicesOf = (r: RawDmResponse): DeviceListEntry[] => r.devices;
const depsOf = (r: RawDmResponse): DevNumber[] => r.deps ?? [];
const outputOf = (r: RawDmResponse): string | undefined => r.output;
const nothing = (): void => undefined;
const infoOrUndefined = (r: RawDmResponse | null): DeviceInfo | undefined => (r ? toInfo(r) : undefined);
const targetVersionsOf = (r: RawDmResponse): TargetVersion[] =>
  (r.versions ?? []).map((v) => ({ name: v.name, version: toVersion(v.version) }));

/** Checks a table before it reaches the kernel: contiguous from 0, positive lengths, sane type and params. */
export function checkTable(targets: readonly Target[] | readonly RawTarget[]): RawTarget[] {
  if (!Array.isArray(targets)) throw dmError('ERR_DM_INVALID_TABLE', `a table is an array of targets, got ${show(targets)}`);
  if (targets.length === 0) throw dmError('ERR_DM_INVALID_TABLE', 'a table needs at least one target');
  const out: RawTarget[] = [];
  let next = 0;
  for (let i = 0; i < targets.length; i++) {
    const t: unknown = targets[i];
    if (t === null || typeof t !== 'object' || Array.isArray(t))
      throw dmError('ERR_DM_INVALID_TABLE', `target ${i} must be an object { start, length, type, params }, got ${show(t)}`);
    checkKnownKeys(t, TARGET_KEYS, `target ${i}`, 'ERR_DM_INVALID_TABLE', 'key');
    const { type, params } = t as Record<string, unknown>;
    const start = targetSectors((t as Record<string, unknown>).start, `target ${i} start`);
    const length = targetSectors((t as Record<string, unknown>).length, `target ${i} length`);
    if (start !== next) throw dmError('ERR_DM_INVALID_TABLE', `target ${i} starts at ${start}, expected ${next}`);
    if (length === 0) throw dmError('ERR_DM_INVALID_TABLE', `target ${i} has length 0`);
    if (!Number.isSafeInteger(start + length)) throw dmError('ERR_DM_INVALID_TABLE', `target ${i} ends beyond 2^53 sectors`);
    if (typeof type !== 'string' || !TARGET_TYPE.test(type))
      throw dmError('ERR_DM_INVALID_TABLE', `target ${i} type ${show(type)} is not a target name`);
    if (typeof params !== 'string' || params.includes('\0') || /[\r\n]/.test(params))
      throw dmError('ERR_DM_INVALID_TABLE', `target ${i} params must be one line of text without NUL, got ${show(params)}`);
    next = start + length;
    out.push({ start, length, type, params });
  }
  return out;
}

const TARGET_KEYS = ['start', 'length', 'type', 'params'] as const;
const targetSectors = (v: unknown, what: string): Sectors =>
  checkInteger(v, what, 0, Number.MAX_SAFE_INTEGER, 'ERR_DM_INVALID_SIZE') as Sectors;

const BINDING_METHODS = ['openControl', 'closeFd', 'dm', 'dmAsync', 'dmSeq', 'dmSeqAsync', 'dmWait', 'pollControl'] as const;

function checkBinding(b: unknown): DmBinding {
  if (b === undefined) return native;
  const o = b as Record<string, unknown>;
  if (o === null || typeof o !== 'object' || BINDING_METHODS.some((m) => typeof o[m] !== 'function'))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `binding must implement ${BINDING_METHODS.join(', ')}`);
  return b as DmBinding;
}

// DeviceMappers made by the constructor: an object made any other way (Object.create) has no binding or state.
const constructed = new WeakSet<object>();

/** Whether `x` is a DeviceMapper made by its constructor. */
export function isDeviceMapper(x: unknown): x is DeviceMapper {
  return typeof x === 'object' && x !== null && constructed.has(x);
}

/**
 * The device-mapper control interface (/dev/mapper/control): one object per fd, each DM command as a promise
 * (its ioctl off the main thread) and a sync twin. Arguments are checked before anything is sent (bad input:
 * an `ERR_DM_*` {@link DevmapperError}); a failed ioctl throws a DevmapperError coded by its errno (ENXIO for
 * no such device, EBUSY, ...). Sizes are in 512-byte sectors. Makes /dev/mapper nodes as
 * {@link DeviceMapperOptions.nodes} says. close() it when done.
 */
export class DeviceMapper {
  private control?: FdHandle;
  private closed = false;
  private kernel?: KernelVersion;
  private readonly pending = new Set<() => void>();
  private readonly nodePolicy: 'manage' | 'udev' | 'none';
  private readonly udevTimeoutMs: number;
  private readonly binding: DmBinding;

  /** Checks the options; the control fd is opened on first use. @throws {DevmapperError} ERR_DM_INVALID_ARGUMENT */
  constructor(options: DeviceMapperOptions = {}) {
    const o = checkDeviceMapperOptions(options);
    this.binding = checkBinding(o.binding);
    this.nodePolicy = nodes.resolvePolicy(o.nodes ?? 'auto');
    this.udevTimeoutMs = o.udevTimeoutMs ?? 2000;
    constructed.add(this);
  }

  /** The control fd, opened on first use. */
  get fd(): number {
    if (this.control) return this.control.fd;
    // First use, or after close() (which drops the handle), or an object not made by the constructor.
    if (!constructed.has(this)) throw dmError('ERR_DM_INVALID_ARGUMENT', 'not a DeviceMapper made by new DeviceMapper()');
    if (this.closed) throw dmError('ERR_DM_CLOSED', 'this DeviceMapper was closed');
    this.control = new FdHandle(this.binding.openControl(), 'the control fd', this.binding.closeFd);
    return this.control.fd;
  }

  /** Cancels pending waits and closes the control fd. Later calls throw ERR_DM_CLOSED. */
  close(): void {
    for (const cancel of [...this.pending]) cancel();
    this.pending.clear();
    this.control?.close();
    this.control = undefined;
    this.closed = true;
  }

  /**
   * Puts `/dev/mapper/<name>` right for a device that exists (`dev`: made, or mended if it names another
   * device) or that does not (`dev` undefined: a block node left there is removed, after one DM_DEV_STATUS
   * shows that no device of that name came back meanwhile), when this DeviceMapper manages nodes. For a
   * process killed between an ioctl and its node step.
   */
  ensureNode(name: string, dev: DevNumber | undefined): void {
    checkName(name);
    if (dev !== undefined) dev = checkDev(dev);
    if (this.nodePolicy !== 'manage') return;
    // Asked to remove: another process may have made the device since; its node is then kept (made right).
    const live = dev ?? this.infoIfExistsSync(name)?.dev;
    if (live) nodes.makeNode(name, live);
    else nodes.removeStaleNode(name);
  }

  // ---- running plans -------------------------------------------------------------------------------

  private checkKernel(plan: Plan<unknown>, label: string): void {
    if (plan.needsMinor === undefined) return;
    const v = this.kernelVersionSync();
    if (v.minor < plan.needsMinor)
      throw dmError('ERR_DM_UNSUPPORTED', `${label} needs dm interface 4.${plan.needsMinor}, the kernel has ${v.major}.${v.minor}.${v.patch}`);
  }

  private runPlanSync<T>(plan: Plan<T>, label = ''): T {
    this.checkKernel(plan, label);
    const r = dmSync(this.binding, this.fd, plan.cmd, plan.req)!;
    this.nodeEffectSync(plan.node, r);
    return plan.map(r);
  }

  // One .then per call, no async layers. The plan is made inside the try: bad input (checked before any
  // ioctl) rejects the promise rather than throwing at the caller.
  private runPlan<T>(make: () => Plan<T>, label = ''): Promise<T> {
    let plan: Plan<T>, fd: number;
    try {
      plan = make();
      this.checkKernel(plan, label);
      fd = this.fd;
    } catch (e) {
      return Promise.reject(e);
    }
    return dmAsync(this.binding, fd, plan.cmd, plan.req, (r) => {
      const waiting = this.nodeEffectAsync(plan.node, r!);
      return waiting ? waiting.then(() => plan.map(r!)) : plan.map(r!);
    });
  }

  // A batch's commands in one native call, as one body for both forms. Node effects follow for the commands
  // that ran, in order; a failure (of a command, or of waiting for udev's node) carries how many commands
  // completed.
  private *plansSteps(plans: readonly Plan<unknown>[]): Steps<unknown[]> {
    for (const p of plans) this.checkKernel(p, '');
    const fd = this.fd;
    const { replies, error } = yield* step(op(() => dmSeqSync(this.binding, fd, plans), () => dmSeqAsync(this.binding, fd, plans)));
    const results: unknown[] = [];
    try {
      for (let i = 0; i < replies.length; i++) {
        yield* this.nodeEffectSteps(plans[i].node, replies[i]);
        results.push(plans[i].map(replies[i]));
      }
    } catch (e) {
      throw completedBefore(e, results.length);
    }
    if (error) throw completedBefore(error, replies.length);
    return results;
  }

  // What is left to JS after the call: waiting for udev's node ('make' under udev), and moving a renamed one.
  // Without udev ('manage'), the addon makes and removes nodes itself right after the ioctl (nodeStep).
  private *nodeEffectSteps(effect: NodeEffect | undefined, r: RawDmResponse): Steps<void> {
    if (effect === undefined) return;
    if (effect === 'make') {
      if (this.nodePolicy === 'udev') yield* nodes.awaitUdevNodeSteps(r.name, r.dev, this.udevTimeoutMs);
    } else if (this.nodePolicy === 'manage' && r.name) {
      nodes.renameNode(r.name, effect.rename, r.dev);
    }
  }

  // The same for single commands, without a generator when there is nothing to do (the usual case), and in
  // the promise form with no extra promise turn unless it waits for udev.
  private nodeEffectAsync(effect: NodeEffect | undefined, r: RawDmResponse): Promise<void> | undefined {
    return this.hasNodeWork(effect) ? runAsync(this.nodeEffectSteps(effect, r)) : undefined;
  }
  private nodeEffectSync(effect: NodeEffect | undefined, r: RawDmResponse): void {
    if (this.hasNodeWork(effect)) runSync(this.nodeEffectSteps(effect, r));
  }
  // A rename always (the node moves), a 'make' only when it waits for udev's node.
  private hasNodeWork(effect: NodeEffect | undefined): boolean {
    return effect !== undefined && (effect !== 'make' || this.nodePolicy === 'udev');
  }

  /** The node step the addon takes after the ioctl (K.DM_NODE_*), or 0. */
  private nodeStep(effect: 'make' | 'remove'): number {
    if (this.nodePolicy !== 'manage') return 0;
    return effect === 'make' ? K.DM_NODE_MAKE : K.DM_NODE_REMOVE;
  }

  // ---- plans: one per command ----------------------------------------------------------------------

  private planVersion(): Plan<KernelVersion> {
    return plan(K.DM_VERSION_CMD, dmRequest(), versionOf);
  }
  private planList(options: { uuids?: boolean } | undefined): Plan<DeviceListEntry[]> {
    const o = checkOptions<{ uuids?: boolean }>(options, ['uuids'], 'list options');
    const uuids = optBoolean(o.uuids, 'uuids') ?? true;
    return plan(K.DM_LIST_DEVICES_CMD, flagsRequest(uuids ? K.DM_UUID_FLAG : 0), devicesOf);
  }
  // `known`: createDevice passes the keys of CREATE and LOAD together.
  private planCreate(name: string, options: CreateOptions | undefined, known: readonly string[] = CREATE_KEYS): Plan<DeviceInfo> {
    const req = refRequest(name);
    const o = checkOptions<CreateOptions>(options, known as (keyof CreateOptions)[], 'create options');
    req.flags = optBoolean(o.readOnly, 'readOnly') ? K.DM_READONLY_FLAG : 0;
    if (o.uuid !== undefined) req.uuid = checkUuid(o.uuid);
    if (o.minor !== undefined) {
      req.dev = { major: 0, minor: checkInteger(o.minor, 'minor', 0, MAX_MINOR) };
      req.flags! |= K.DM_PERSISTENT_DEV_FLAG;
    }
    return plan(K.DM_DEV_CREATE_CMD, req, toInfo);
  }
  private planRemove(ref: DeviceRef, options: RemoveOptions | undefined): Plan<DeviceInfo> {
    const req = refRequest(ref);
    const o = checkOptions<RemoveOptions>(options, ['deferred'], 'remove options');
    req.flags = optBoolean(o.deferred, 'deferred') ? K.DM_DEFERRED_REMOVE : 0;
    req.eventNr = UDEV_PRIMARY_SOURCE;
    req.node = this.nodeStep('remove');
    return plan(K.DM_DEV_REMOVE_CMD, req, toInfo);
  }
  private planRemoveAll(options: RemoveOptions | undefined): Plan<void> {
    const o = checkOptions<RemoveOptions>(options, ['deferred'], 'removeAll options');
    return plan(K.DM_REMOVE_ALL_CMD, flagsRequest(optBoolean(o.deferred, 'deferred') ? K.DM_DEFERRED_REMOVE : 0), nothing);
  }
  private planRename(ref: DeviceRef, newName: string): Plan<DeviceInfo> {
    const req = refRequest(ref);
    req.data = checkName(newName, 'new name');
    req.eventNr = UDEV_PRIMARY_SOURCE;
    return plan(K.DM_DEV_RENAME_CMD, req, toInfo, { rename: newName });
  }
  private planSetUuid(ref: DeviceRef, uuid: string): Plan<DeviceInfo> {
    const req = refRequest(ref);
    req.data = checkUuid(uuid);
    req.flags = K.DM_UUID_FLAG;
    return plan(K.DM_DEV_RENAME_CMD, req, toInfo);
  }
  private planSuspend(ref: DeviceRef, options: SuspendOptions | undefined): Plan<DeviceInfo> {
    const req = refRequest(ref);
    const o = checkOptions<SuspendOptions>(options, ['noflush', 'skipLockfs', 'timeoutMs'], 'suspend options');
    optInteger(o.timeoutMs, 'timeoutMs', 1, MAX_TIMEOUT_MS);
    req.flags = K.DM_SUSPEND_FLAG | (optBoolean(o.noflush, 'noflush') ? K.DM_NOFLUSH_FLAG : 0) |
      (optBoolean(o.skipLockfs, 'skipLockfs') ? K.DM_SKIP_LOCKFS_FLAG : 0);
    return plan(K.DM_DEV_SUSPEND_CMD, req, toInfo);
  }
  private planResume(ref: DeviceRef): Plan<DeviceInfo> {
    return this.resumePlan(refRequest(ref));
  }
  private resumePlan(req: RawDmRequest): Plan<DeviceInfo> {
    req.eventNr = UDEV_PRIMARY_SOURCE;
    req.node = this.nodeStep('make');
    return plan(K.DM_DEV_SUSPEND_CMD, req, toInfo, 'make');
  }
  private planInfo(ref: DeviceRef): Plan<DeviceInfo> {
    return plan(K.DM_DEV_STATUS_CMD, refRequest(ref), toInfo);
  }
  private planLoad(ref: DeviceRef, targets: readonly Target[], options: LoadOptions | undefined): Plan<DeviceInfo> {
    return this.loadPlan(refRequest(ref), targets, checkOptions<LoadOptions>(options, LOAD_KEYS, 'load options'));
  }
  // LOAD for a request whose device is checked, with options whose keys are checked.
  private loadPlan(req: RawDmRequest, targets: readonly Target[], o: LoadOptions): Plan<DeviceInfo> {
    req.targets = checkTable(targets);
    req.flags = (optBoolean(o.readOnly, 'readOnly') ? K.DM_READONLY_FLAG : 0) | (optBoolean(o.secure, 'secure') ? K.DM_SECURE_DATA_FLAG : 0);
    return plan(K.DM_TABLE_LOAD_CMD, req, toInfo);
  }
  private planClear(ref: DeviceRef): Plan<DeviceInfo> {
    return plan(K.DM_TABLE_CLEAR_CMD, refRequest(ref), toInfo);
  }
  private planDeps(ref: DeviceRef, options: QueryOptions | undefined): Plan<DevNumber[]> {
    const req = refRequest(ref);
    const o = checkQuery(options, 'deps options');
    req.flags = o.inactive ? K.DM_QUERY_INACTIVE_TABLE_FLAG : 0;
    return plan(K.DM_TABLE_DEPS_CMD, req, depsOf);
  }
  private planTableStatus(ref: DeviceRef, table: boolean, options: QueryOptions | undefined): Plan<Target[]> {
    const req = refRequest(ref);
    const o = checkQuery(options, table ? 'table options' : 'status options');
    req.flags = (table ? K.DM_STATUS_TABLE_FLAG : 0) | (o.inactive ? K.DM_QUERY_INACTIVE_TABLE_FLAG : 0) |
      (o.noflush ? K.DM_NOFLUSH_FLAG : 0);
    return plan(K.DM_TABLE_STATUS_CMD, req, toTargets);
  }
  private planTargetVersions(): Plan<TargetVersion[]> {
    return plan(K.DM_LIST_VERSIONS_CMD, dmRequest(), targetVersionsOf);
  }
  private planTargetVersion(type: string): Plan<TargetVersion> {
    if (typeof type !== 'string' || !TARGET_TYPE.test(type)) throw dmError('ERR_DM_INVALID_ARGUMENT', `${show(type)} is not a target name`);
    return plan(K.DM_GET_TARGET_VERSION_CMD, refRequest(type), (r) => targetVersionsOf(r)[0], undefined, 41);
  }
  private planMessage(ref: DeviceRef, sector: number, text: string, options: MessageOptions | undefined): Plan<string | undefined> {
    const req = refRequest(ref);
    const o = checkOptions<MessageOptions>(options, ['secure'], 'message options');
    req.message = { sector: targetSectors(sector, 'message sector'), text: checkText(text, 'message', { oneLine: true }) };
    req.flags = optBoolean(o.secure, 'secure') ? K.DM_SECURE_DATA_FLAG : 0;
    return plan(K.DM_TARGET_MSG_CMD, req, outputOf);
  }
  // The kernel (dev_set_geometry) reads four unsigned longs: cylinders <= 65535, heads and sectors <= 255, and
  // (dm_set_geometry) start no further than cylinders * heads * sectors.
  private planSetGeometry(ref: DeviceRef, geometry: Geometry): Plan<void> {
    const req = refRequest(ref);
    if (geometry === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'geometry must be { cylinders, heads, sectors, start }, got undefined');
    const g = checkOptions<Geometry>(geometry, ['cylinders', 'heads', 'sectors', 'start'], 'geometry');
    const cylinders = checkInteger(g.cylinders, 'cylinders', 0, 65535);
    const heads = checkInteger(g.heads, 'heads', 0, 255);
    const secs = checkInteger(g.sectors, 'sectors', 0, 255);
    const start = checkInteger(g.start, 'start', 0, cylinders * heads * secs);
    req.data = `${cylinders} ${heads} ${secs} ${start}`;
    return plan(K.DM_DEV_SET_GEOMETRY_CMD, req, nothing);
  }
  private planArmPoll(): Plan<void> {
    return plan(K.DM_DEV_ARM_POLL_CMD, dmRequest(), nothing, undefined, 36);
  }

  // ---- public API: promise and sync twin for each command ------------------------------------------

  /** The kernel's dm interface version; read once. */
  async kernelVersion(): Promise<KernelVersion> { return this.kernel ??= await this.runPlan(() => this.planVersion()); }
  /** The sync twin of kernelVersion(). */
  kernelVersionSync(): KernelVersion { return this.kernel ??= this.runPlanSync(this.planVersion()); }

  /** All dm devices. With `uuids`, each entry carries its uuid when it has one. */
  list(o?: { uuids?: boolean }): Promise<DeviceListEntry[]> { return this.runPlan(() => this.planList(o)); }
  /** The sync twin of list(). */
  listSync(o?: { uuids?: boolean }): DeviceListEntry[] { return this.runPlanSync(this.planList(o)); }

  /** Creates a device with no table (DM_DEV_CREATE); load and resume give it one. See {@link createDevice}. */
  create(name: string, o?: CreateOptions): Promise<DeviceInfo> { return this.runPlan(() => this.planCreate(name, o)); }
  /** The sync twin of create(). */
  createSync(name: string, o?: CreateOptions): DeviceInfo { return this.runPlanSync(this.planCreate(name, o)); }

  // A uuid or dev reference is looked up by name (for the node step) only after every argument is checked.
  /** Removes a device (DM_DEV_REMOVE) and its /dev/mapper node; EBUSY while it is open, unless `deferred`. */
  remove(ref: DeviceRef, o?: RemoveOptions): Promise<DeviceInfo> {
    return settle(() => {
      const p = this.planRemove(ref, o);
      return this.needsName(ref) ? this.info(ref).then((i) => this.runPlan(() => this.planRemove(i.name, o))) : this.runPlan(() => p);
    });
  }
  /** The sync twin of remove(). */
  removeSync(ref: DeviceRef, o?: RemoveOptions): DeviceInfo {
    const p = this.planRemove(ref, o);
    return this.runPlanSync(this.needsName(ref) ? this.planRemove(this.infoSync(ref).name, o) : p);
  }

  /** Removes every dm device that is not open (DM_REMOVE_ALL); with `deferred`, open ones at last close. */
  removeAll(o?: RemoveOptions): Promise<void> { return runAsync(this.removeAllSteps(o)); }
  /** The sync twin of removeAll(). */
  removeAllSync(o?: RemoveOptions): void { runSync(this.removeAllSteps(o)); }

  private *removeAllSteps(o: RemoveOptions | undefined): Steps<void> {
    const plan = this.planRemoveAll(o);
    const before = this.nodePolicy === 'manage' ? yield* step(twin(this as DeviceMapper, 'list', { uuids: false })) : [];
    yield* step(op(() => this.runPlanSync(plan), () => this.runPlan(() => plan)));
    if (before.length) this.dropNodesOfGone(before, yield* step(twin(this as DeviceMapper, 'list', { uuids: false })));
  }

  /** Renames a device (DM_DEV_RENAME), moving its /dev/mapper node. */
  rename(ref: DeviceRef, newName: string): Promise<DeviceInfo> {
    return settle(() => {
      const p = this.planRename(ref, newName);
      return this.needsName(ref) ? this.info(ref).then((i) => this.runPlan(() => this.planRename(i.name, newName))) : this.runPlan(() => p);
    });
  }
  /** The sync twin of rename(). */
  renameSync(ref: DeviceRef, newName: string): DeviceInfo {
    const p = this.planRename(ref, newName);
    return this.runPlanSync(this.needsName(ref) ? this.planRename(this.infoSync(ref).name, newName) : p);
  }

  /** Sets the uuid of a device that has none (the kernel refuses to change a set one). */
  setUuid(ref: DeviceRef, uuid: string): Promise<DeviceInfo> { return this.runPlan(() => this.planSetUuid(ref, uuid)); }
  /** The sync twin of setUuid(). */
  setUuidSync(ref: DeviceRef, uuid: string): DeviceInfo { return this.runPlanSync(this.planSetUuid(ref, uuid)); }

  /**
   * Suspends a device. A suspend that waits on I/O the kernel holds back (a thin device of a pool out of data
   * space, in queue_if_no_space mode) waits as long as that I/O does; with `timeoutMs` it runs on a thread of
   * its own and is interrupted after that long: the kernel then undoes the suspend (the device runs on) and
   * the call fails with ERR_DM_TIMEOUT. (A filesystem freeze that waits for writeback cannot be interrupted:
   * skipLockfs or noflush avoid it.)
   */
  suspend(ref: DeviceRef, o?: SuspendOptions): Promise<DeviceInfo> {
    return settle(() => {
      const plan = this.planSuspend(ref, o);
      const timeoutMs = o?.timeoutMs;
      if (timeoutMs === undefined || !this.binding.dmTimed) return this.runPlan(() => plan);
      return this.cancellable(dmWait(this.binding, this.fd, plan.req, plan.cmd), timeoutMs, undefined).then((r) => plan.map(r));
    });
  }
  /** The sync twin of suspend(). */
  suspendSync(ref: DeviceRef, o?: SuspendOptions): DeviceInfo {
    const plan = this.planSuspend(ref, o);
    const timeoutMs = o?.timeoutMs;
    if (timeoutMs === undefined || !this.binding.dmTimed) return this.runPlanSync(plan);
    return plan.map(dmTimedSync(this.binding, this.fd, plan.cmd, plan.req, timeoutMs));
  }

  /** Resumes a device, making a loaded inactive table live. */
  resume(ref: DeviceRef): Promise<DeviceInfo> { return this.runPlan(() => this.planResume(ref)); }
  /** The sync twin of resume(). */
  resumeSync(ref: DeviceRef): DeviceInfo { return this.runPlanSync(this.planResume(ref)); }

  /** The device's state (DM_DEV_STATUS); ENXIO if there is no such device (see {@link infoIfExists}). */
  info(ref: DeviceRef): Promise<DeviceInfo> { return this.runPlan(() => this.planInfo(ref)); }
  /** The sync twin of info(). */
  infoSync(ref: DeviceRef): DeviceInfo { return this.runPlanSync(this.planInfo(ref)); }

  /** Loads a table into the inactive slot; resume makes it live. */
  load(ref: DeviceRef, targets: readonly Target[], o?: LoadOptions): Promise<DeviceInfo> { return this.runPlan(() => this.planLoad(ref, targets, o)); }
  /** The sync twin of load(). */
  loadSync(ref: DeviceRef, targets: readonly Target[], o?: LoadOptions): DeviceInfo { return this.runPlanSync(this.planLoad(ref, targets, o)); }

  /** Drops the inactive table. */
  clear(ref: DeviceRef): Promise<DeviceInfo> { return this.runPlan(() => this.planClear(ref)); }
  /** The sync twin of clear(). */
  clearSync(ref: DeviceRef): DeviceInfo { return this.runPlanSync(this.planClear(ref)); }

  /** The devices the table uses. */
  deps(ref: DeviceRef, o?: QueryOptions): Promise<DevNumber[]> { return this.runPlan(() => this.planDeps(ref, o)); }
  /** The sync twin of deps(). */
  depsSync(ref: DeviceRef, o?: QueryOptions): DevNumber[] { return this.runPlanSync(this.planDeps(ref, o)); }

  /** Each target's status line (params hold the status text, without the trailing space trimmed). */
  status(ref: DeviceRef, o?: QueryOptions): Promise<Target[]> { return this.runPlan(() => this.planTableStatus(ref, false, o)); }
  /** The sync twin of status(). */
  statusSync(ref: DeviceRef, o?: QueryOptions): Target[] { return this.runPlanSync(this.planTableStatus(ref, false, o)); }

  /** The table as the kernel holds it (live, or the inactive one). */
  table(ref: DeviceRef, o?: QueryOptions): Promise<Target[]> { return this.runPlan(() => this.planTableStatus(ref, true, o)); }
  /** The sync twin of table(). */
  tableSync(ref: DeviceRef, o?: QueryOptions): Target[] { return this.runPlanSync(this.planTableStatus(ref, true, o)); }

  /** Loaded target types and their versions. */
  targetVersions(): Promise<TargetVersion[]> { return this.runPlan(() => this.planTargetVersions()); }
  /** The sync twin of targetVersions(). */
  targetVersionsSync(): TargetVersion[] { return this.runPlanSync(this.planTargetVersions()); }

  /** One target type's version; the kernel loads its module if needed (dm >= 4.41). */
  targetVersion(type: string): Promise<TargetVersion> { return this.runPlan(() => this.planTargetVersion(type), 'DM_GET_TARGET_VERSION'); }
  /** The sync twin of targetVersion(). */
  targetVersionSync(type: string): TargetVersion { return this.runPlanSync(this.planTargetVersion(type), 'DM_GET_TARGET_VERSION'); }

  /** Sends a target message; returns the target's output when it produced any. Never re-sent. */
  message(ref: DeviceRef, sector: number, text: string, o?: MessageOptions): Promise<string | undefined> { return this.runPlan(() => this.planMessage(ref, sector, text, o)); }
  /** The sync twin of message(). */
  messageSync(ref: DeviceRef, sector: number, text: string, o?: MessageOptions): string | undefined { return this.runPlanSync(this.planMessage(ref, sector, text, o)); }

  /** Sets the device's CHS geometry (DM_DEV_SET_GEOMETRY); each field range-checked (ERR_DM_INVALID_ARGUMENT). */
  setGeometry(ref: DeviceRef, g: Geometry): Promise<void> {
 return this.runPlan(() => this.planSetGeometry(ref, g)); }
  /** The sync twin of setGeometry(). */
  setGeometrySync(ref: DeviceRef, g: Geometry): void { this.runPlanSync(this.planSetGeometry(ref, g)); }

  /** Snapshots the global event counter for this fd; pollEvent() then reports when it moves (dm >= 4.36). */
  armPoll(): Promise<void> { return this.runPlan(() => this.planArmPoll(), 'DM_DEV_ARM_POLL'); }
  /** The sync twin of armPoll(). */
  armPollSync(): void { this.runPlanSync(this.planArmPoll(), 'DM_DEV_ARM_POLL'); }

  /**
   * Resolves true when any dm event happened since the last armPoll() (create, remove, rename, or a table
   * event of any device), false after timeoutMs. Waits on a thread of its own, not the libuv pool.
   */
  pollEvent(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<boolean> {
    return settle(() => {
      const o = checkOptions<{ timeoutMs?: number; signal?: AbortSignal }>(options, ['timeoutMs', 'signal'], 'pollEvent options');
      const timeout = optInteger(o.timeoutMs, 'timeoutMs', 0, MAX_TIMEOUT_MS) ?? -1;
      optSignal(o.signal);
      return this.cancellable(this.binding.pollControl(this.fd, timeout), undefined, o.signal);
    });
  }

  /**
   * DM_DEV_WAIT: resolves when the device's event_nr differs from `eventNr`, with its info and status.
   * Runs on a thread of its own; a timeout, an abort signal or close() ends it.
   */
  wait(ref: DeviceRef, eventNr: number, o?: WaitOptions): Promise<WaitResult> {
    return settle(() => {
      const req = waitRequest(ref, eventNr, o, WAIT_KEYS);
      const job = dmWait(this.binding, this.fd, req);
      return this.cancellable(job, o?.timeoutMs, o?.signal).then((r) => ({ info: toInfo(r), status: toTargets(r) }));
    });
  }

  /** DM_DEV_WAIT on the calling thread: blocks until the event; for scripts. */
  waitSync(ref: DeviceRef, eventNr: number, o?: QueryOptions): WaitResult {
    const req = waitRequest(ref, eventNr, o);
    const r = dmSync(this.binding, this.fd, K.DM_DEV_WAIT_CMD, req)!;
    return { info: toInfo(r), status: toTargets(r) };
  }

  /**
   * CREATE + LOAD + RESUME, sent as one native call (one trip off the main thread); removes the device again
   * if LOAD, RESUME or making its node fails.
   */
  createDevice(name: string, targets: readonly Target[], o?: CreateOptions & LoadOptions): Promise<DeviceInfo> {
    return runAsync(this.createDeviceSteps(name, targets, o));
  }
  /** The sync twin of createDevice(). */
  createDeviceSync(name: string, targets: readonly Target[], o?: CreateOptions & LoadOptions): DeviceInfo {
    return runSync(this.createDeviceSteps(name, targets, o));
  }

  private *createDeviceSteps(name: string, targets: readonly Target[], options: (CreateOptions & LoadOptions) | undefined): Steps<DeviceInfo> {
    // CREATE checks the name and every option key of both commands once; LOAD and RESUME reuse them.
    const create = this.planCreate(name, options, CREATE_DEVICE_KEYS);
    const plans = [create, this.loadPlan(nameRequest(name), targets, options ?? {}), this.resumePlan(nameRequest(name))];
    try {
      return (yield* this.plansSteps(plans))[2] as DeviceInfo;
    } catch (e) {
      // CREATE ran: undo it. The first error is the one that matters.
      if (((e as DevmapperError).completed ?? 0) > 0) { try { yield* step(twin(this as DeviceMapper, 'remove', name)); } catch { /* keep it */ } }
      throw e;
    }
  }

  /** Queues commands to send in one native call (one trip off the main thread); see DmBatch. */
  batch(): DmBatch {
    const plans: Plan<unknown>[] = [];
    let sent = false;
    // A batch is sent once: sending it again would repeat its messages, which are not idempotent.
    const unsent = () => {
      if (sent) throw dmError('ERR_DM_INVALID_ARGUMENT', 'this batch was already sent; make a new one');
      return plans;
    };
    const named = (name: string) => {
      if (typeof name !== 'string') throw dmError('ERR_DM_INVALID_ARGUMENT', 'in a batch, remove and rename take a device name');
      return name;
    };
    // One builder object; each method queues a plan and returns it (the result type grows per call).
    const b = {
      create: (name: string, o?: CreateOptions) => add(this.planCreate(name, o)),
      remove: (name: string, o?: RemoveOptions) => add(this.planRemove(named(name), o)),
      rename: (name: string, newName: string) => add(this.planRename(named(name), newName)),
      suspend: (ref: DeviceRef, o?: SuspendOptions) => {
        const p = this.planSuspend(ref, o);
        if (o?.timeoutMs !== undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'a suspend in a batch cannot have a timeout (it runs on the batch\'s thread); suspend on its own first');
        return add(p);
      },
      resume: (ref: DeviceRef) => add(this.planResume(ref)),
      info: (ref: DeviceRef) => add(this.planInfo(ref)),
      load: (ref: DeviceRef, targets: readonly Target[], o?: LoadOptions) => add(this.planLoad(ref, targets, o)),
      clear: (ref: DeviceRef) => add(this.planClear(ref)),
      deps: (ref: DeviceRef, o?: QueryOptions) => add(this.planDeps(ref, o)),
      status: (ref: DeviceRef, o?: QueryOptions) => add(this.planTableStatus(ref, false, o)),
      table: (ref: DeviceRef, o?: QueryOptions) => add(this.planTableStatus(ref, true, o)),
      message: (ref: DeviceRef, sector: number, text: string, o?: MessageOptions) => add(this.planMessage(ref, sector, text, o)),
      get length() { return plans.length; },
      run: () => settle(() => { const p = unsent(); sent = true; return runAsync(this.plansSteps(p)); }),
      runSync: () => { const p = unsent(); sent = true; return runSync(this.plansSteps(p)); },
    };
    const add = (p: Plan<unknown>) => { unsent().push(p); return b; };
    return b as unknown as DmBatch;
  }

  /** The device's info, or undefined if there is no such device (no error is built for that case). */
  infoIfExists(ref: DeviceRef): Promise<DeviceInfo | undefined> {
    return settle(() => { const req = refRequest(ref); return dmAsync(this.binding, this.fd, K.DM_DEV_STATUS_CMD, req, infoOrUndefined, ENXIO); });
  }
  /** The sync twin of infoIfExists(). */
  infoIfExistsSync(ref: DeviceRef): DeviceInfo | undefined {
    const req = refRequest(ref);
    return infoOrUndefined(dmSync(this.binding, this.fd, K.DM_DEV_STATUS_CMD, req, ENXIO));
  }

  /** True if the device exists. */
  async exists(ref: DeviceRef): Promise<boolean> { return (await this.infoIfExists(ref)) !== undefined; }
  /** The sync twin of exists(). */
  existsSync(ref: DeviceRef): boolean { return this.infoIfExistsSync(ref) !== undefined; }

  // ---- helpers -------------------------------------------------------------------------------------

  // REMOVE_ALL does not say what it removed: the nodes to drop are those of devices no longer listed.
  private dropNodesOfGone(before: DeviceListEntry[], after: DeviceListEntry[]): void {
    const still = new Set(after.map((d) => d.name));
    for (const d of before) if (!still.has(d.name)) nodes.removeNode(d.name, d.dev);
  }

  // Node effects need the device's name: resolve a uuid/dev reference to it first (one DEV_STATUS).
  private needsName(ref: DeviceRef): boolean {
    return typeof ref !== 'string' && !('name' in ref) && this.nodePolicy === 'manage';
  }
  // A wait on its own thread, ended by a timeout, the signal or close(): cancel(reason) makes the addon reject
  // with the one error the factory builds for that reason (ERR_DM_TIMEOUT, ERR_DM_ABORTED, ERR_DM_CLOSED).
  private cancellable<T>(job: Cancellable<T>, timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<T> {
    const onClose = () => { job.cancel('close'); };
    const onAbort = () => { job.cancel('abort'); };
    this.pending.add(onClose);
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = timeoutMs !== undefined ? setTimeout(() => job.cancel(`timeout ${timeoutMs}`), timeoutMs) : undefined;
    const done = () => {
      this.pending.delete(onClose);
      signal?.removeEventListener('abort', onAbort);
      if (timer) clearTimeout(timer);
    };
    return job.promise.then((v) => { done(); return v; }, (e) => { done(); throw e; });
  }

}
