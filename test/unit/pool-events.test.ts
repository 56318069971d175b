// Pool events and autoextend on the host: the edges derived from statuses, one wait loop shared by every
// subscriber (over a scripted wait), and option checks that refuse bad input before any syscall.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeviceMapper, DevmapperError, PoolEvent, ThinPool, parseThinPoolStatus, sectors } from '../../lib';
import { ThinPoolStatus } from '../../lib/targets';
import { EventPool, diffStatus, eventEmitter, eventSource, iterateEvents, pokeEvents, standingEvents, watchLowWater } from '../../lib/thin/events';
import { AutoextendPool, autoextend, checkAutoextendOptions, lowWaterMarkFor } from '../../lib/thin/autoextend';
import { FakeKernel } from './fake-kernel';
import { lifecycleLockJanitor, scratch } from './hostile-helpers';

const line = (o: { data?: [number, number]; meta?: [number, number]; mode?: string; needsCheck?: boolean; metaLow?: number } = {}) => {
  const [du, dt] = o.data ?? [0, 1000];
  const [mu, mt] = o.meta ?? [10, 1000];
  return `1 ${mu}/${mt} ${du}/${dt} - ${o.mode ?? 'rw'} discard_passdown queue_if_no_space ${o.needsCheck ? 'needs_check' : '-'} ${o.metaLow ?? 100}`;
};
const st = (o: Parameters<typeof line>[0] = {}) => parseThinPoolStatus(line(o));
const types = (es: PoolEvent[]) => es.map((e) => e.type);

describe('events from two statuses', () => {
  test('edges: lowWater when free data falls to the mark, not while it stays there; again after a resize', () => {
    expect(types(diffStatus(st({ data: [800, 1000] }), st({ data: [950, 1000] }), 100))).toEqual(['lowWater']);
    expect(diffStatus(st({ data: [950, 1000] }), st({ data: [990, 1000] }), 100)).toEqual([]);
    const grown = diffStatus(st({ data: [950, 1000] }), st({ data: [990, 1050] }), 100);
    expect(grown).toEqual([
      expect.objectContaining({ type: 'resized', space: 'data', from: 1000, to: 1050 }),
      expect.objectContaining({ type: 'lowWater', freeBlocks: 60, lowWaterMark: 100 }),
    ]);
    expect(types(diffStatus(st({ data: [950, 1000] }), st({ data: [950, 2000] }), 100))).toEqual(['resized']);
  });

  test('mode changes carry from and to, failed states included; metadataLow at the kernel watermark; needsCheck once', () => {
    expect(diffStatus(st(), st({ mode: 'out_of_data_space', data: [1000, 1000] }), 0)).toEqual([
      expect.objectContaining({ type: 'mode', from: 'rw', to: 'out_of_data_space' }),
      expect.objectContaining({ type: 'lowWater', freeBlocks: 0 }),
    ]);
    expect(diffStatus(st({ mode: 'ro' }), { state: 'Fail' }, 0)).toEqual([{ type: 'mode', from: 'ro', to: 'fail', status: { state: 'Fail' } }]);
    expect(types(diffStatus(st(), st({ meta: [900, 1000] }), 0))).toEqual(['metadataLow']);
    expect(diffStatus(st({ meta: [900, 1000] }), st({ meta: [950, 1000] }), 0)).toEqual([]);
    expect(types(diffStatus(st({ meta: [900, 1000] }), st({ meta: [900, 2000] }), 0))).toEqual(['resized']);
    expect(types(diffStatus(st(), st({ needsCheck: true }), 0))).toEqual(['needsCheck']);
    expect(diffStatus(st({ needsCheck: true }), st({ needsCheck: true }), 0)).toEqual([]);
  });

  test('a subscriber that starts gets the conditions that already hold', () => {
    expect(standingEvents(st(), 100)).toEqual([]);
    expect(standingEvents(st({ mode: 'out_of_data_space', data: [1000, 1000], meta: [950, 1000], needsCheck: true }), 100)).toEqual([
      expect.objectContaining({ type: 'mode', from: null, to: 'out_of_data_space' }),
      expect.objectContaining({ type: 'lowWater', freeBlocks: 0 }),
      expect.objectContaining({ type: 'metadataLow', freeBlocks: 50, lowWatermark: 100 }),
      expect.objectContaining({ type: 'needsCheck' }),
    ]);
    expect(standingEvents({ state: 'Error' }, 0)).toEqual([expect.objectContaining({ type: 'mode', from: null, to: 'error' })]);
  });
});

/** DM_DEV_WAIT scripted: fire() moves event_nr and wakes the waits with a new status line. */
class ScriptedWait {
  eventNr = 1;
  text = line();
  waits = 0;
  pending = new Set<{ resolve: (r: unknown) => void; reject: (e: unknown) => void }>();
  readonly dm = {
    info: async () => ({ eventNr: this.eventNr }),
    status: async () => [{ start: 0, length: 128, type: 'thin-pool', params: this.text }],
    infoSync: () => ({ eventNr: this.eventNr }),
    statusSync: () => [{ start: 0, length: 128, type: 'thin-pool', params: this.text }],
    wait: (_name: string, nr: number, o: { signal?: AbortSignal }) => {
      this.waits++;
      if (nr !== this.eventNr) return Promise.resolve(this.result());
      return new Promise((resolve, reject) => {
        const onAbort = () => { this.pending.delete(w); reject(new DevmapperError('aborted', { code: 'ERR_DM_ABORTED' })); };
        const off = () => o.signal?.removeEventListener('abort', onAbort);
        const w = { resolve: (r: unknown) => { off(); resolve(r); }, reject: (e: unknown) => { off(); reject(e); } };
        this.pending.add(w);
        o.signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
  };
  pool: EventPool = { name: 'scripted', dm: this.dm as unknown as DeviceMapper, params: { metadataDev: '1:1', dataDev: '1:2', blockSize: sectors(128), lowWaterMark: 100 } };
  private result() { return { info: { eventNr: this.eventNr }, status: [{ start: 0, length: 128, type: 'thin-pool', params: this.text }] }; }
  fire(text: string) {
    this.text = text;
    this.eventNr++;
    for (const w of this.pending) w.resolve(this.result());
    this.pending.clear();
  }
  fail(code: string) {
    for (const w of this.pending) w.reject(new DevmapperError(code, { code }));
    this.pending.clear();
  }
}
const tick = () => new Promise((r) => setImmediate(r));

describe('one wait per pool, shared', () => {
  test('two iterators and a listener share one wait; each gets every event, in order; the last to leave stops it', async () => {
    const k = new ScriptedWait();
    const src = eventSource(k.pool);
    const a = iterateEvents(k.pool, undefined);
    const ac = new AbortController();
    const b = iterateEvents(k.pool, { signal: ac.signal });
    const heard: PoolEvent[] = [];
    const onMode = (e: PoolEvent) => { heard.push(e); };
    eventEmitter(k.pool).listen('mode', onMode, 'on');
    expect(src.subscriberCount).toBe(3);
    await tick();
    expect(k.waits).toBe(1);
    k.fire(line({ data: [950, 1000] }));
    await tick();
    k.fire(line({ data: [1000, 1000], mode: 'out_of_data_space' }));
    await tick();
    expect(k.waits).toBe(3);  // one per wake, not one per subscriber
    // a slow consumer reads only now: nothing was lost
    for (const it of [a, b]) {
      expect((await it.next()).value).toMatchObject({ type: 'lowWater', freeBlocks: 50 });
      expect((await it.next()).value).toMatchObject({ type: 'mode', from: 'rw', to: 'out_of_data_space' });
    }
    expect(types(heard)).toEqual(['mode']);
    await a.return!();
    ac.abort();
    expect(await b.next()).toEqual({ value: undefined, done: true });
    expect(src.running).toBe(true);  // the listener still listens
    eventEmitter(k.pool).off('mode', onMode);
    expect(src.running).toBe(false);
    expect(k.pending.size).toBe(0);  // the wait was cancelled
    await src.stopped();
  });

  test('a change right after subscribing is an event from the mode before it: the start is read at subscribe', async () => {
    const k = new ScriptedWait();
    const heard: PoolEvent[] = [];
    const onMode = (e: PoolEvent) => { heard.push(e); };
    eventEmitter(k.pool).listen('mode', onMode, 'on');
    k.fire(line({ data: [10, 1000], mode: 'ro' }));  // before the wait loop's first turn
    await tick();
    await tick();
    expect(heard).toMatchObject([{ type: 'mode', from: 'rw', to: 'ro' }]);
    eventEmitter(k.pool).off('mode', onMode);
    await eventSource(k.pool).stopped();
  });

  test('a failed wait is one error event, the last; an error with no listener is a warning, not a crash', async () => {
    const k = new ScriptedWait();
    const it = iterateEvents(k.pool, undefined);
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    const emitted: PoolEvent[] = [];
    eventEmitter(k.pool).listen('lowWater', (e: PoolEvent) => { emitted.push(e); }, 'on');
    try {
      await tick();
      k.fail('ENXIO');
      expect(await it.next()).toMatchObject({ value: { type: 'error', error: { code: 'ENXIO' } }, done: false });
      expect(await it.next()).toEqual({ value: undefined, done: true });
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn.mock.calls[0][1]).toMatchObject({ type: 'DevmapperWarning', code: 'ENXIO' });
      expect(eventSource(k.pool).running).toBe(false);
      expect(emitted).toEqual([]);
    } finally {
      warn.mockRestore();
    }
  });

  test('a reload by the library (poke) reads the status at once, in the same loop: resized, and lowWater under a raised mark', async () => {
    const k = new ScriptedWait();
    k.text = line({ data: [850, 1000] });
    const it = iterateEvents(k.pool, undefined);
    await tick();
    k.text = line({ data: [850, 2000] });  // grown: the kernel's event came before the new size showed
    pokeEvents(k.pool);
    expect((await it.next()).value).toMatchObject({ type: 'resized', space: 'data', from: 1000, to: 2000 });
    k.pool.params.lowWaterMark = 1200;  // setLowWaterMark: 1150 free is now low
    pokeEvents(k.pool);
    expect((await it.next()).value).toMatchObject({ type: 'lowWater', freeBlocks: 1150, lowWaterMark: 1200 });
    expect(k.waits).toBe(1);  // the same wait went on
    await it.return!();
  });

  test('a wait that returns after a poke read its status before it: the status is read again, no stale size', async () => {
    const k = new ScriptedWait();
    k.text = line({ data: [1000, 1000], mode: 'out_of_data_space' });
    const it = iterateEvents(k.pool, undefined);
    await tick();
    const during = line({ data: [1000, 1000] });  // what the woken wait read during the resume: rw, old size
    k.text = line({ data: [1000, 2000] });        // the library's read after the reload: the new size
    pokeEvents(k.pool);
    await tick();
    k.eventNr++;
    for (const w of k.pending) w.resolve({ info: { eventNr: k.eventNr }, status: [{ start: 0, length: 128, type: 'thin-pool', params: during }] });
    k.pending.clear();
    await tick();
    k.fire(line({ data: [1950, 2000] }));  // a later event, so the loop has applied everything before it
    const seen: PoolEvent[] = [];
    for (let e = (await it.next()).value as PoolEvent; ; e = (await it.next()).value as PoolEvent) {
      seen.push(e);
      if (e.type === 'lowWater' && e.freeBlocks === 50) break;
    }
    expect(seen.filter((e) => e.type === 'resized')).toEqual([expect.objectContaining({ space: 'data', from: 1000, to: 2000 })]);
    expect(seen.filter((e) => e.type === 'mode')).toEqual([
      expect.objectContaining({ from: null, to: 'out_of_data_space' }), expect.objectContaining({ from: 'out_of_data_space', to: 'rw' })]);
    await it.return!();
  });

  test('watchLowWater: at the start if low, then at each wake that finds it low; resolves on abort', async () => {
    const k = new ScriptedWait();
    k.text = line({ data: [950, 1000] });
    const seen: number[] = [];
    const ac = new AbortController();
    const done = watchLowWater(k.pool, (s) => { seen.push(s.data.used); }, ac.signal);
    await tick();
    k.fire(line({ data: [960, 1000] }));
    await tick();
    k.fire(line({ data: [960, 2000] }));
    await tick();
    expect(seen).toEqual([950, 960]);
    ac.abort();
    await done;
    expect(eventSource(k.pool).running).toBe(false);
  });
});

/** A pool for autoextend over a scripted wait: growData/growMetadata/setLowWaterMark change the status. */
function scriptedAutoextendPool(k: ScriptedWait, o: { files?: boolean; lvm?: boolean } = {}) {
  const calls: string[] = [];
  let s = parseThinPoolStatus(k.text) as Extract<ThinPoolStatus, { state: 'ok' }>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-events-'));
  const files = o.files === false ? {} : { data: path.join(dir, 'data'), metadata: path.join(dir, 'meta') };
  if (o.files !== false) { fs.writeFileSync(files.data!, ''); fs.writeFileSync(files.metadata!, ''); }
  const set = (next: typeof s) => { s = next; k.fire(`1 ${s.metadata.used}/${s.metadata.total} ${s.data.used}/${s.data.total} - ${s.mode} discard_passdown queue_if_no_space - 100`); };
  const pool: AutoextendPool = {
    ...k.pool,
    lvmOwned: o.lvm ?? false,
    files,
    status: async () => parseThinPoolStatus(k.text),
    growData: async (size?: number) => {
      calls.push(`growData(${size})`);
      if (files.data) fs.truncateSync(files.data, size!);
      set({ ...s, mode: 'rw', data: { ...s.data, total: size ? size / 65536 : s.data.total * 2 } });
    },
    growMetadata: async (size?: number) => { calls.push(`growMetadata(${size})`); set({ ...s, metadata: { ...s.metadata, total: size! / 4096 } }); },
    setLowWaterMark: async (n: number) => { calls.push(`setLowWaterMark(${n})`); k.pool.params.lowWaterMark = n; set(s); },
  };
  const use = (data: number) => set({ ...(s = parseThinPoolStatus(k.text) as typeof s), data: { ...s.data, used: data } });
  return { pool, calls, use, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

describe('autoextend', () => {
  test('grows by percent at the threshold, keeps the low water mark there, stops at the maximum with one extendLimit', async () => {
    const k = new ScriptedWait();
    k.text = line({ data: [0, 256] });  // blocks of 64 KiB: 16 MiB
    const { pool, calls, use, remove } = scriptedAutoextendPool(k);
    const events: PoolEvent[] = [];
    const it = iterateEvents(pool, undefined);
    const reading = (async () => { for await (const e of it) events.push(e); })();
    const ac = new AbortController();
    const running = autoextend(pool, { threshold: 80, percent: 50, maxDataSize: '40M', signal: ac.signal });
    try {
      const settle = async () => { for (let i = 0; i < 20; i++) await tick(); };
      await settle();
      expect(calls).toEqual([`setLowWaterMark(${lowWaterMarkFor(256, 80)})`]);
      expect(lowWaterMarkFor(256, 80)).toBe(51);
      use(205);  // 80% of 256 is 204.8
      await settle();
      expect(calls.slice(1)).toEqual([`growData(${24 << 20})`, `setLowWaterMark(${lowWaterMarkFor(384, 80)})`]);
      use(308);  // 80% of 384 is 307.2
      await settle();
      expect(calls.slice(3)).toEqual([`growData(${36 << 20})`, `setLowWaterMark(${lowWaterMarkFor(576, 80)})`]);
      use(461);  // 80% of 576 is 460.8: 54 MiB wanted, 40 MiB is the maximum
      await settle();
      expect(calls.slice(5)).toEqual([`growData(${40 << 20})`, 'setLowWaterMark(128)']);
      use(600);
      await settle();
      use(640);
      await settle();
      expect(calls).toHaveLength(7);
    } finally {
      ac.abort();
      await running;
      await it.return!();
      await reading;
      remove();
    }
    expect(events.filter((e) => e.type === 'extended').map((e) => e.type === 'extended' && [e.from, e.to]))
      .toEqual([[16 << 20, 24 << 20], [24 << 20, 36 << 20], [36 << 20, 40 << 20]]);
    expect(events.filter((e) => e.type === 'extendLimit')).toEqual([expect.objectContaining({ space: 'data', size: 40 << 20, max: 40 << 20 })]);
  });

  test('metadata grows the same way, in 4 KiB blocks, up to maxMetadataSize', async () => {
    const k = new ScriptedWait();
    k.text = line({ data: [0, 1000], meta: [850, 1000] });
    const { pool, calls, remove } = scriptedAutoextendPool(k);
    const events: PoolEvent[] = [];
    const it = iterateEvents(pool, undefined);
    const reading = (async () => { for await (const e of it) events.push(e); })();
    const ac = new AbortController();
    const running = autoextend(pool, { threshold: 80, percent: 20, maxDataSize: '1G', maxMetadataSize: 1100 * 4096, signal: ac.signal });
    try {
      for (let i = 0; i < 20; i++) await tick();
      // 1,200 blocks wanted, 1,100 allowed; 850 of 1,100 is 77 %: no more.
      expect(calls).toEqual([`growMetadata(${1100 * 4096})`, `setLowWaterMark(${lowWaterMarkFor(1000, 80)})`]);
    } finally {
      ac.abort();
      await running;
      await it.return!();
      await reading;
      remove();
    }
    expect(events.filter((e) => e.type === 'extended')).toEqual([expect.objectContaining({ space: 'metadata', from: 1000 * 4096, to: 1100 * 4096 })]);
  });

  test('a pool on block devices calls extend({ space, size }) and then grows with no size; a failing hook ends autoextend with its error', async () => {
    const k = new ScriptedWait();
    k.text = line({ data: [250, 256] });
    const { pool, calls, remove } = scriptedAutoextendPool(k, { files: false });
    const asked: unknown[] = [];
    const ac = new AbortController();
    try {
      let fail = false;
      const running = autoextend(pool, {
        threshold: 90, maxDataSize: '1G', signal: ac.signal,
        extend: async (r) => { asked.push(r); if (fail) throw new DevmapperError('lvextend failed', { code: 'EIO' }); },
      });
      for (let i = 0; i < 20; i++) await tick();
      expect(asked).toEqual([{ space: 'data', size: Math.ceil((256 * 1.2)) * 65536 }]);
      expect(calls[0]).toBe('growData(undefined)');
      fail = true;
      k.fire(line({ data: [512, 512] }));
      await expect(running).rejects.toMatchObject({ code: 'EIO' });
    } finally {
      ac.abort();
      remove();
    }
  });

  test('options are checked before anything runs: types, unknown keys, NaN, fractions, ranges, what is required', async () => {
    const k = new ScriptedWait();
    const { pool, calls, remove } = scriptedAutoextendPool(k);
    const signal = new AbortController().signal;
    const ok = { maxDataSize: '1G', signal };
    try {
      for (const bad of [
        undefined, null, 5, 'x', [], new Date(), { ...ok, thresold: 80 }, { ...ok, threshold: NaN }, { ...ok, threshold: 80.5 },
        { ...ok, threshold: 0 }, { ...ok, threshold: 100 }, { ...ok, threshold: '80' }, { ...ok, percent: 0 }, { ...ok, percent: 2.5 },
        { ...ok, percent: Infinity }, { ...ok, percent: 1001 }, { signal }, { ...ok, maxDataSize: -1 }, { ...ok, maxDataSize: 1.5 },
        { ...ok, maxDataSize: 'lots' }, { ...ok, maxDataSize: NaN }, { ...ok, maxMetadataSize: {} }, { ...ok, extend: 'lvextend' },
        { maxDataSize: '1G' }, { ...ok, signal: {} }, { ...ok, signal: 'abort' },
      ]) {
        let error: unknown;
        try { checkAutoextendOptions(pool, bad); } catch (e) { error = e; }
        expect(error).toBeInstanceOf(DevmapperError);
        expect((error as DevmapperError).code).toMatch(/^ERR_DM_INVALID_(ARGUMENT|SIZE)$/);
        await expect(autoextend(pool, bad as never)).rejects.toBeInstanceOf(DevmapperError);
      }
      const onDevices = scriptedAutoextendPool(k, { files: false });
      expect(() => checkAutoextendOptions(onDevices.pool, ok)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT', message: expect.stringMatching(/extend hook/) }));
      onDevices.remove();
      const lvm = scriptedAutoextendPool(k, { lvm: true });
      expect(() => checkAutoextendOptions(lvm.pool, ok)).toThrow(expect.objectContaining({ code: 'ERR_DM_LVM_POOL' }));
      lvm.remove();
      expect(checkAutoextendOptions(pool, ok)).toMatchObject({ threshold: 80, percent: 20, max: { data: 1 << 30 } });
      expect(calls).toEqual([]);
      expect(k.waits).toBe(0);
      expect(eventSource(pool).running).toBe(false);
    } finally {
      remove();
    }
  });
});

describe('a ThinPool over the scripted kernel: events(), on() and autoextend() refuse bad input before any call', () => {
  const name = `events-unit-${process.pid}`;
  const tmp = scratch();
  const cleanLocks = lifecycleLockJanitor([name]);
  const k = new FakeKernel();
  const fdm = new DeviceMapper({ binding: k.binding, nodes: 'none' });
  fdm.createDeviceSync(name, [{ start: sectors(0), length: sectors(128 * 100), type: 'thin-pool', params: '250:1 250:0 128 10 0' }], { uuid: `DEVMAPPER-POOL-${name}` });
  const registryDir = tmp.absent('registry');
  fs.mkdirSync(registryDir, { recursive: true });
  const pool = ThinPool.openSync(name, { dm: fdm, registryDir });
  afterAll(() => { pool.closeSync(); fdm.close(); tmp.remove(); cleanLocks(); });

  test('rejected or thrown as DevmapperError, nothing started', async () => {
    const before = k.calls.length;
    for (const o of [null, 5, { signal: 'x' }, { signal: new AbortController().signal, extra: 1 }])
      await expect(pool.events(o as never).next()).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    for (const [type, fn] of [['lowwater', () => undefined], ['mode', 'not a function'], [Symbol('x'), () => undefined]] as const)
      expect(() => pool.on(type as never, fn as never)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
    for (const o of [undefined, {}, { maxDataSize: '1G' }, { maxDataSize: '1G', signal: new AbortController().signal, threshold: 99.9 }])
      await expect(pool.autoextend(o as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    await expect(pool.watchLowWater(5 as never, { signal: new AbortController().signal })).rejects.toMatchObject({ code: 'ERR_DM_INVALID_ARGUMENT' });
    expect(k.calls.length).toBe(before);
    expect(eventSource(pool).running).toBe(false);
  });
});
