// A pool's events: one DM_DEV_WAIT loop per ThinPool object, shared by every subscriber (events() iterators,
// on() listeners, watchLowWater, autoextend), started with the first and stopped with the last or by close().
// The kernel says only that something happened (its event_nr moved); what happened is found by comparing the
// status the wait returns with the one before it, so events are edges: a `lowWater` when free data falls to
// the mark, not at every wake. A subscriber that starts while a condition already holds gets its event at once
// (`mode` with `from: null` when the pool is not rw), so it never waits for a crossing that already happened.
import { EventEmitter } from 'node:events';
import type { DeviceMapper } from '../dm/device-mapper';
import type { WaitResult } from '../dm/types';
import { dmError, DevmapperError } from '../core/errors';
import { checkOptions, optSignal, show } from '../core/validate';
import { parseThinPoolStatus, ThinPoolParams, ThinPoolStatus, ThinPoolStatusOk } from '../targets';

/** The pool's mode as its status says it: the kernel's three, or its failed states. */
export type PoolEventMode = 'rw' | 'out_of_data_space' | 'ro' | 'fail' | 'error';
/** Which of a pool's two spaces: its data device or its metadata device. */
export type PoolSpace = 'data' | 'metadata';

/**
 * What a pool's event stream carries. Each event has the pool status that caused it (for `error`, the last
 * one known). Sizes of `resized` are in the space's own blocks (data blocks, 4 KiB metadata blocks); those of
 * `extended` and `extendLimit` (autoextend's) in bytes.
 */
export type PoolEvent =
  /** Free data blocks fell to the pool's low water mark (or were there when the subscriber started). */
  | {
    /** Discriminant. */
    type: 'lowWater';
    /** The status that showed it. */
    status: ThinPoolStatusOk;
    /** Free data blocks. */
    freeBlocks: number;
    /** The pool's low water mark, in data blocks. */
    lowWaterMark: number;
  }
  /** Free metadata blocks fell to the kernel's metadata low watermark (the status's metadataLowWatermark). */
  | {
    /** Discriminant. */
    type: 'metadataLow';
    /** The status that showed it. */
    status: ThinPoolStatusOk;
    /** Free metadata blocks. */
    freeBlocks: number;
    /** The kernel's metadata low watermark, in metadata blocks. */
    lowWatermark: number;
  }
  /** The mode changed; `from` is null in the event a subscriber gets at its start on a pool that is not rw. */
  | {
    /** Discriminant. */
    type: 'mode';
    /** The mode before; null at a subscriber's start. */
    from: PoolEventMode | null;
    /** The mode now. */
    to: PoolEventMode;
    /** The status that showed it. */
    status: ThinPoolStatus;
  }
  /** The pool's metadata was flagged needs_check (or was when the subscriber started). */
  | {
    /** Discriminant. */
    type: 'needsCheck';
    /** The status that showed it. */
    status: ThinPoolStatusOk;
  }
  /** The data or metadata device of the pool changed size (in its blocks). */
  | {
    /** Discriminant. */
    type: 'resized';
    /** Which space. */
    space: PoolSpace;
    /** Blocks before. */
    from: number;
    /** Blocks now. */
    to: number;
    /** The status that showed it. */
    status: ThinPoolStatusOk;
  }
  /** autoextend() grew the pool's data or metadata (bytes). */
  | {
    /** Discriminant. */
    type: 'extended';
    /** Which space. */
    space: PoolSpace;
    /** Bytes before. */
    from: number;
    /** Bytes now. */
    to: number;
    /** The status that made autoextend grow it. */
    status: ThinPoolStatus;
  }
  /** autoextend() wanted to grow past its maximum: the space stays at `size` (bytes) and will fill. */
  | {
    /** Discriminant. */
    type: 'extendLimit';
    /** Which space. */
    space: PoolSpace;
    /** Its size, in bytes. */
    size: number;
    /** autoextend's maximum for it, in bytes. */
    max: number;
    /** The status that asked for more. */
    status: ThinPoolStatus;
  }
  /** The wait failed (the pool was removed, its table is no longer a thin-pool, ...): the stream ends with it. */
  | {
    /** Discriminant. */
    type: 'error';
    /** Why. */
    error: DevmapperError;
    /** The last status known; null if none was read. */
    status: ThinPoolStatus | null;
  };

/** The `type` of a {@link PoolEvent}: what on() and events() subscribe to. */
export type PoolEventType = PoolEvent['type'];
export const POOL_EVENT_TYPES: readonly PoolEventType[] = ['lowWater', 'metadataLow', 'mode', 'needsCheck', 'resized', 'extended', 'extendLimit', 'error'];

/** Options of {@link ThinPool.events}. */
export interface PoolEventsOptions {
  /** Ends the iteration (and, with the last subscriber, the wait) at once. */
  signal?: AbortSignal;
}


/** What the event loop needs of a pool. */
export interface EventPool {
  readonly name: string;
  readonly dm: DeviceMapper;
  readonly params: ThinPoolParams;
}

export function modeOf(s: ThinPoolStatus): PoolEventMode {
  return s.state === 'ok' ? s.mode : s.state === 'Fail' ? 'fail' : 'error';
}

const dataLow = (s: ThinPoolStatusOk, mark: number) => s.data.total - s.data.used <= mark;
const metadataLow = (s: ThinPoolStatusOk) => s.metadataLowWatermark !== null && s.metadata.total - s.metadata.used <= s.metadataLowWatermark;

/**
 * The events between two statuses (and the low water marks each was read under: a mark raised above what is
 * free is a crossing too). A low condition counts again after its space was resized: the kernel re-arms its
 * mark on every resume, so a pool still (or again) low after growing has crossed anew.
 */
export function diffStatus(prev: ThinPoolStatus, next: ThinPoolStatus, lowWaterMark: number, prevLowWaterMark = lowWaterMark): PoolEvent[] {
  const out: PoolEvent[] = [];
  const [from, to] = [modeOf(prev), modeOf(next)];
  if (from !== to) out.push({ type: 'mode', from, to, status: next });
  if (next.state !== 'ok') return out;
  const p = prev.state === 'ok' ? prev : undefined;
  const dataResized = p !== undefined && p.data.total !== next.data.total;
  const metaResized = p !== undefined && p.metadata.total !== next.metadata.total;
  if (dataResized) out.push({ type: 'resized', space: 'data', from: p!.data.total, to: next.data.total, status: next });
  if (metaResized) out.push({ type: 'resized', space: 'metadata', from: p!.metadata.total, to: next.metadata.total, status: next });
  if (dataLow(next, lowWaterMark) && (!p || !dataLow(p, prevLowWaterMark) || dataResized)) out.push(lowWaterEvent(next, lowWaterMark));
  if (metadataLow(next) && (!p || !metadataLow(p) || metaResized)) out.push(metadataLowEvent(next));
  if (next.needsCheck && !p?.needsCheck) out.push({ type: 'needsCheck', status: next });
  return out;
}

/** The conditions that already hold, for a subscriber that starts now. */
export function standingEvents(s: ThinPoolStatus, lowWaterMark: number): PoolEvent[] {
  const out: PoolEvent[] = [];
  if (modeOf(s) !== 'rw') out.push({ type: 'mode', from: null, to: modeOf(s), status: s });
  if (s.state !== 'ok') return out;
  if (dataLow(s, lowWaterMark)) out.push(lowWaterEvent(s, lowWaterMark));
  if (metadataLow(s)) out.push(metadataLowEvent(s));
  if (s.needsCheck) out.push({ type: 'needsCheck', status: s });
  return out;
}

const lowWaterEvent = (s: ThinPoolStatusOk, mark: number): PoolEvent =>
  ({ type: 'lowWater', status: s, freeBlocks: s.data.total - s.data.used, lowWaterMark: mark });
const metadataLowEvent = (s: ThinPoolStatusOk): PoolEvent =>
  ({ type: 'metadataLow', status: s, freeBlocks: s.metadata.total - s.metadata.used, lowWatermark: s.metadataLowWatermark! });

/** One subscriber: gets the events (and, if it asks, every status a wake returned); `end` when the source stops. */
export interface Subscriber {
  event(e: PoolEvent): void;
  /** Every status the wait returned (and the first one), whether or not it made an event. */
  status?(s: ThinPoolStatus): void;
  end(): void;
}

/** Where the wait loop starts: info before status, so an event between the two moves event_nr and the first
 * wait returns at once. */
interface Baseline { eventNr: number; status: ThinPoolStatus }

/** The one wait loop of a pool. */
export class PoolEventSource {
  private readonly subscribers = new Set<Subscriber>();
  private abort: AbortController | null = null;
  private latest: ThinPoolStatus | null = null;
  /** close() ran: no new subscribers. */
  closed = false;
  private loop: Promise<void> = Promise.resolve();
  /** DM_DEV_WAIT calls started, and those that returned an event (for tests: all subscribers share one wait). */
  waitsStarted = 0;
  wakes = 0;

  constructor(private readonly pool: EventPool) {}

  get subscriberCount(): number { return this.subscribers.size; }
  /** Whether the wait loop runs. */
  get running(): boolean { return this.abort !== null; }

  subscribe(s: Subscriber): () => void {
    if (this.closed) throw dmError('ERR_DM_CLOSED', 'the pool is closed: it has no events', this.pool.name);
    this.subscribers.add(s);
    if (this.latest && this.abort) this.greet(s, this.latest);
    if (!this.abort) this.loop = this.run(this.abort = new AbortController(), this.baseline());
    return () => this.unsubscribe(s);
  }

  // The pool as it is when the wait starts, read at once (two ioctls that wait on no I/O): a change right after
  // subscribing (a fault, a fill) is then an event from the mode before it, not the standing state of a
  // subscriber that started late. If it cannot be read now, the loop reads it and reports what failed.
  private baseline(): Baseline | undefined {
    const { dm, name } = this.pool;
    try {
      const { eventNr } = dm.infoSync(name);
      return { eventNr, status: statusOf(name, dm.statusSync(name, { noflush: true })) };
    } catch {
      return undefined;
    }
  }

  /** Resolves when the wait loop has ended (its wait returned or was cancelled). */
  stopped(): Promise<void> { return this.loop; }

  /** An event that is not the kernel's (autoextend's), to every subscriber. */
  publish(e: PoolEvent): void {
    for (const s of [...this.subscribers]) deliver(() => s.event(e));
  }

  /** Stops the wait and ends every subscriber; no new ones (pool.close(), destroy()). */
  close(): void {
    this.closed = true;
    this.stop();
  }

  private unsubscribe(s: Subscriber): void {
    if (!this.subscribers.delete(s)) return;
    if (this.subscribers.size === 0) this.stop();
  }

  private stop(): void {
    const ac = this.abort;
    this.abort = null;
    this.latest = null;
    this.pokePending = false;
    ac?.abort();  // cancels the wait at once: its thread returns EINTR
    const subs = [...this.subscribers];
    this.subscribers.clear();
    for (const s of subs) deliver(() => s.end());
  }

  private greet(s: Subscriber, status: ThinPoolStatus): void {
    deliver(() => s.status?.(status));
    for (const e of standingEvents(status, this.pool.params.lowWaterMark)) deliver(() => s.event(e));
  }

  /**
   * The library changed the pool's table (a reload: growData, growMetadata, setLowWaterMark, setFeatures): read
   * its status now. The kernel raises its events during the resume, before a new size shows in the status, and
   * none after: without this, a growth would be seen only at the next event.
   */
  poke(): void {
    this.pokePending = true;
    this.wakeForPoke?.();
  }
  private pokePending = false;
  private wakeForPoke: (() => void) | null = null;

  private async run(ac: AbortController, baseline: Baseline | undefined): Promise<void> {
    const { dm, name } = this.pool;
    const live = () => this.abort === ac;
    let status: ThinPoolStatus | null = null;
    try {
      const start = baseline ?? { eventNr: (await dm.info(name)).eventNr, status: statusOf(name, await dm.status(name, { noflush: true })) };
      if (baseline) await Promise.resolve();  // subscribers are greeted after subscribe() returns, as when read here
      let { eventNr } = start;
      status = start.status;
      if (!live()) return;
      let mark = this.pool.params.lowWaterMark;
      this.latest = status;
      for (const s of [...this.subscribers]) this.greet(s, status);
      let waiting: Promise<WaitResult> | null = null;
      // A poke read the status while this wait was out: the wait's own status may have been read before that one
      // (its thread woke during the resume), so it is not applied after it.
      let pokedDuringWait = false;
      while (live()) {
        if (!waiting) {
          this.waitsStarted++;
          waiting = dm.wait(name, eventNr, { signal: ac.signal, noflush: true });
          pokedDuringWait = false;
        }
        // A poke reads the status while the same wait goes on: one loop, so statuses are applied in order.
        const poked = this.pokePending ? Promise.resolve(null) : new Promise<null>((r) => { this.wakeForPoke = () => r(null); });
        const r = await Promise.race([waiting, poked]);
        this.wakeForPoke = null;
        if (!live()) return;
        let next: ThinPoolStatus | null;
        if (r) {
          waiting = null;
          this.wakes++;
          eventNr = r.info.eventNr;
          next = poolStatusOf(pokedDuringWait ? await dm.status(name, { noflush: true }) : r.status);
          if (!live()) return;
        } else {
          this.pokePending = false;
          pokedDuringWait = true;
          next = poolStatusOf(await dm.status(name, { noflush: true }));
          if (!live()) return;
        }
        // Another table for a while (repair() swaps in `error` while it works on the metadata): no pool status
        // to compare; the pool's next event (its table back) is compared with the last one seen.
        if (!next) continue;
        const nextMark = this.pool.params.lowWaterMark;
        const events = diffStatus(status, next, nextMark, mark);
        status = this.latest = next;
        mark = nextMark;
        for (const s of [...this.subscribers]) {
          deliver(() => s.status?.(next));
          for (const e of events) deliver(() => s.event(e));
        }
      }
    } catch (e) {
      if (!live()) return;  // stopped: the abort (or close) is the end, not an error
      const error = e instanceof DevmapperError ? e : dmError('ERR_DM_INTERNAL', `pool events: ${show(e)} ${String((e as Error)?.message ?? '')}`, name);
      this.publish({ type: 'error', error, status });
      this.stop();
    }
  }
}

// A subscriber that throws (an on() listener's bug) is not the wait loop's failure: its error is thrown on
// its own, as Node throws a listener's error, and the others still get the event.
function deliver(fn: () => void): void {
  try { fn(); } catch (e) { process.nextTick(() => { throw e; }); }
}

function poolStatusOf(targets: { type: string; params: string }[]): ThinPoolStatus | null {
  return targets.length === 1 && targets[0].type === 'thin-pool' ? parseThinPoolStatus(targets[0].params) : null;
}

function statusOf(name: string, targets: { type: string; params: string }[]): ThinPoolStatus {
  if (targets.length !== 1 || targets[0].type !== 'thin-pool')
    throw dmError('ERR_DM_NOT_A_THIN_POOL', `the device's table is ${targets.map((t) => t.type).join(', ') || 'empty'}, not one thin-pool`, name);
  return parseThinPoolStatus(targets[0].params);
}

// One source per pool object, made when first asked for.
const sources = new WeakMap<EventPool, PoolEventSource>();
export function eventSource(pool: EventPool): PoolEventSource {
  let s = sources.get(pool);
  if (!s) sources.set(pool, s = new PoolEventSource(pool));
  return s;
}
/** The pool's table was reloaded by this library: its events read the status now (see poke). */
export function pokeEvents(pool: EventPool): void {
  sources.get(pool)?.poke();
}
/** Stops the pool's events, if it ever had any (close, destroy). */
export function closeEvents(pool: EventPool): void {
  sources.get(pool)?.close();
}

/**
 * The events as an async iterator. Events are buffered per subscriber, in order: a slow consumer loses none
 * (the kernel raises few: one per crossing, mode change or resume). `break`, `return()` or the signal end it
 * at once; an `error` event is the last one.
 */
export function iterateEvents(pool: EventPool, options: PoolEventsOptions | undefined): AsyncIterableIterator<PoolEvent> {
  let signal: AbortSignal | undefined;
  try {
    signal = optSignal(checkOptions<PoolEventsOptions>(options, ['signal'], 'events options').signal);
    if (eventSource(pool).closed) throw dmError('ERR_DM_CLOSED', 'the pool is closed: it has no events', pool.name);
  } catch (e) {
    // Like every promise method: bad input rejects (at the first next()), it does not throw here.
    return (async function* (): AsyncGenerator<PoolEvent> { throw e; })();
  }
  const queue: PoolEvent[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  const notify = () => { const w = wake; wake = null; w?.(); };
  const finish = () => {
    if (ended) return;
    ended = true;
    signal?.removeEventListener('abort', finish);
    unsubscribe?.();
    notify();
  };
  let unsubscribe: (() => void) | undefined;
  if (!signal?.aborted) {
    unsubscribe = eventSource(pool).subscribe({ event: (e) => { if (!ended) { queue.push(e); notify(); } }, end: finish });
    signal?.addEventListener('abort', finish, { once: true });
  } else {
    ended = true;
  }
  const done = { value: undefined, done: true } as IteratorReturnResult<undefined>;
  const it: AsyncIterableIterator<PoolEvent> = {
    async next(): Promise<IteratorResult<PoolEvent>> {
      for (;;) {
        // Buffered events are delivered even after the source ended (an `error` last); not after return().
        if (queue.length) return { value: queue.shift()!, done: false };
        if (ended) return done;
        await new Promise<void>((r) => { wake = r; });
      }
    },
    async return(): Promise<IteratorResult<PoolEvent>> {
      queue.length = 0;
      finish();
      return done;
    },
    [Symbol.asyncIterator]() { return it; },
  };
  return it;
}

/**
 * The EventEmitter face of a pool's events: subscribed while it has a listener for any event type, and
 * unsubscribed when the last is removed. An `error` with no `error` listener does not throw (which would
 * crash the process from inside the wait loop): it is reported with process.emitWarning (type
 * DevmapperWarning, with the error's code). After an `error`
 * the listeners stay, and the wait starts again when a listener is added.
 */
export class PoolEventEmitter extends EventEmitter {
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly pool: EventPool) {
    super();
    this.on('removeListener', (type: string | symbol) => { if (isPoolEventType(type)) this.sync(); });
  }

  /** on() or once(), checked: a known event type, a function, a pool that is not closed. */
  listen(type: unknown, listener: unknown, how: 'on' | 'once'): void {
    checkListener(this.pool, type, listener);
    if (eventSource(this.pool).closed) throw dmError('ERR_DM_CLOSED', 'the pool is closed: it has no events', this.pool.name);
    this[how](type as PoolEventType, listener as (e: PoolEvent) => void);
    this.sync();
  }

  private listening(): boolean {
    return POOL_EVENT_TYPES.some((t) => this.listenerCount(t) > 0);
  }

  private sync(): void {
    if (this.listening() && !this.unsubscribe) {
      this.unsubscribe = eventSource(this.pool).subscribe({
        event: (e) => {
          if (e.type === 'error' && this.listenerCount('error') === 0) {
            process.emitWarning(`pool ${this.pool.name}: its events stopped: ${e.error.message}`, { type: 'DevmapperWarning', code: e.error.code });
            return;
          }
          this.emit(e.type, e);
        },
        end: () => { this.unsubscribe = null; },
      });
    } else if (!this.listening() && this.unsubscribe) {
      const u = this.unsubscribe;
      this.unsubscribe = null;
      u();
    }
  }
}

export function checkListener(pool: EventPool, type: unknown, listener: unknown): void {
  if (typeof type !== 'string' || !isPoolEventType(type))
    throw dmError('ERR_DM_INVALID_ARGUMENT', `event type must be one of ${POOL_EVENT_TYPES.join(', ')}, got ${show(type)}`, pool.name);
  if (typeof listener !== 'function') throw dmError('ERR_DM_INVALID_ARGUMENT', `listener must be a function, got ${show(listener)}`, pool.name);
}

const isPoolEventType = (t: string | symbol): t is PoolEventType => typeof t === 'string' && (POOL_EVENT_TYPES as readonly string[]).includes(t);

const emitters = new WeakMap<EventPool, PoolEventEmitter>();
export function eventEmitter(pool: EventPool): PoolEventEmitter {
  let e = emitters.get(pool);
  if (!e) emitters.set(pool, e = new PoolEventEmitter(pool));
  return e;
}

/**
 * watchLowWater on the shared events: `onLow(status)` at the start if free data blocks are at or below the
 * low water mark, then at every wake of the wait that finds them so; one call at a time, in order. Resolves
 * when the signal aborts (or the pool closes), after a call under way; rejects with the wait's error, or
 * with onLow's.
 */
export function watchLowWater(pool: EventPool, onLow: (status: ThinPoolStatusOk) => void | Promise<void>, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) { resolve(); return; }
    let chain = Promise.resolve();
    let settled = false;
    const settle = (e?: unknown) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      unsubscribe();
      if (e !== undefined) reject(e);
      else chain.then(() => resolve(), reject);
    };
    const onAbort = () => settle();
    const unsubscribe = eventSource(pool).subscribe({
      status: (s) => {
        if (s.state === 'ok' && dataLow(s, pool.params.lowWaterMark))
          chain = chain.then(() => (settled || signal.aborted ? undefined : onLow(s))).catch((e) => { settle(e); });
      },
      event: (e) => { if (e.type === 'error') settle(e.error); },
      end: () => settle(),
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
