// Hostile input, case by case, on the host: every public call of DeviceMapper, Loop and Block (and the option
// checks of ThinPool) refuses wrong types, absent values, NaN/Infinity/fractions/out-of-range numbers, NUL
// bytes, control characters, 'control' and unknown option keys with a DevmapperError of our own (ERR_DM_*),
// before any syscall: the sync form throws, the promise form rejects (never throws). DeviceMapper runs over
// a binding that records any call (tripwireDm), so "before any syscall" is checked, not assumed. Loop and
// Block have no binding to swap: refusals must carry an ERR_DM_* code, and the inputs that pass point at
// files that do not exist, so they end in ENOENT before any ioctl.
import fs from 'node:fs';
import { Block, DeviceMapper, DevmapperError, Loop, ThinPool, checkTable, formatDev } from '../../lib';
import {
  BAD_BOOLEANS, BAD_NAMES, BAD_NUMBERS, BAD_OPTION_OBJECTS, BAD_REFS, Expect, NOT_STRINGS, NUL_STRINGS, asyncRefuses, label,
  lifecycleLockJanitor, scratch, syncRefuses, tripwireDm,
} from './hostile-helpers';
import { bound } from './emulation';

jest.setTimeout(bound(120_000));

interface Case { label: string; sync?: () => unknown; promise?: () => unknown; x?: Expect }

/** Runs every case, collecting failures so one bad case does not hide the others. */
async function allRefused(cases: Case[], calls?: string[]): Promise<void> {
  const failures: string[] = [];
  for (const c of cases) {
    const before = calls?.length ?? 0;
    if (c.sync) { try { syncRefuses(c.sync, c.x); } catch (e) { failures.push(`${c.label} (sync): ${(e as Error).message}`); } }
    if (c.promise) { try { await asyncRefuses(c.promise, c.x); } catch (e) { failures.push(`${c.label} (promise): ${(e as Error).message}`); } }
    if (calls && calls.length !== before) failures.push(`${c.label}: reached the binding (${calls.slice(before).join(', ')})`);
  }
  expect(failures).toEqual([]);
}

// ---- values per kind of argument -------------------------------------------------------------------------

const ZERO = [{ start: 0, length: 8, type: 'zero', params: '' }];

const BAD_UUIDS: unknown[] = ['', 'a\0b', 'a\nb', 'u\x01', 'u'.repeat(129), ...NOT_STRINGS];

const BAD_TABLES: unknown[] = [
  undefined, null, 'zero', '0 8 zero', 5, {}, [], new Map(), new String('x'), [null], [undefined], [1], ['0 8 zero'], [[0, 8, 'zero', '']],
  // eslint-disable-next-line no-sparse-arrays
  [, ], [ZERO[0], ZERO[0]], [{ start: 0, length: 8, type: 'zero' }], [{ start: 0, length: 8, params: '' }],
  [{ ...ZERO[0], extra: 1 }], [{ ...ZERO[0], [Symbol('k')]: 1 }], [{ ...ZERO[0], start: 1 }], [{ ...ZERO[0], length: 0 }],
  ...BAD_NUMBERS.map((n) => [{ ...ZERO[0], length: n }]), ...BAD_NUMBERS.map((n) => [{ ...ZERO[0], start: n }]),
  [{ ...ZERO[0], type: '' }], [{ ...ZERO[0], type: 'thin pool' }], [{ ...ZERO[0], type: 'zero\0' }], [{ ...ZERO[0], type: 'x'.repeat(16) }],
  [{ ...ZERO[0], type: 5 }], [{ ...ZERO[0], type: new String('zero') }], [{ ...ZERO[0], params: 'a\nb' }], [{ ...ZERO[0], params: 'a\rb' }],
  [{ ...ZERO[0], params: 'a\0b' }], [{ ...ZERO[0], params: 5 }], [{ ...ZERO[0], params: null }], [{ ...ZERO[0], params: ['a'] }],
  [{ start: 0, length: 8, type: 'zero', params: '' }, { start: 9, length: 8, type: 'zero', params: '' }],
  [{ start: 0, length: 2 ** 53 - 1, type: 'zero', params: '' }, { start: 2 ** 53 - 1, length: 1, type: 'zero', params: '' }],
];

const BAD_TEXTS: unknown[] = ['', 'a\0b', '\0', 'create_thin 1\n', 'a\nb', 'a\rb', '\n', ...NOT_STRINGS];
const BAD_TARGET_TYPES: unknown[] = ['', 'thin pool', 'x'.repeat(16), 'a\0', 'a/b', 'a\n', 'control', ...NOT_STRINGS];
const GEO = { cylinders: 1, heads: 64, sectors: 32, start: 0 };
const BAD_GEOMETRIES: unknown[] = [
  undefined, null, 'geometry', 5, [], [1, 64, 32, 0], new Map(), {}, { cylinders: 1, heads: 64, sectors: 32 }, { ...GEO, extra: 1 },
  { ...GEO, cylinders: 65536 }, { ...GEO, heads: 256 }, { ...GEO, sectors: 256 }, { ...GEO, start: 1 * 64 * 32 + 1 },
  ...BAD_NUMBERS.flatMap((n) => [{ ...GEO, cylinders: n }, { ...GEO, heads: n }, { ...GEO, sectors: n }, { ...GEO, start: n }]),
];
const BAD_EVENT_NRS: unknown[] = [undefined, ...BAD_NUMBERS, 2 ** 32];
const BAD_SECTORS: unknown[] = [undefined, ...BAD_NUMBERS];

/** Options objects a call must refuse: not objects; unknown keys (typos); each known key with a value of the wrong kind. */
function badOptions(known: string[], kinds: Record<string, unknown[]>): { value: unknown; mentions?: string }[] {
  const out: { value: unknown; mentions?: string }[] = BAD_OPTION_OBJECTS.map((value) => ({ value }));
  out.push({ value: { nonsense: true }, mentions: 'nonsense' }, { value: { [Symbol('k')]: true } });
  out.push({ value: JSON.parse('{"__proto__": {"readOnly": true}}'), mentions: '__proto__' });
  for (const k of known) {
    if (k.toLowerCase() !== k) out.push({ value: { [k.toLowerCase()]: true }, mentions: k.toLowerCase() });
    out.push({ value: { [k + 's']: true }, mentions: k + 's' });
  }
  for (const [k, values] of Object.entries(kinds)) for (const v of values) out.push({ value: { [k]: v }, mentions: k });
  return out;
}
const booleans = (...keys: string[]) => Object.fromEntries(keys.map((k) => [k, BAD_BOOLEANS]));
const TIMEOUTS: unknown[] = [...BAD_NUMBERS, 2 ** 31];
const SIGNALS: unknown[] = [null, {}, 'signal', true, new EventTarget(), { aborted: false, addEventListener() {} }];

// ---- DeviceMapper ----------------------------------------------------------------------------------------

interface Method {
  name: string;
  sync?: boolean;  // default: both forms
  promise?: boolean;
  valid: unknown[];
  /** Bad values per argument position; options positions take { value, mentions }. */
  bad: Record<number, unknown[] | { value: unknown; mentions?: string }[]>;
}

const OPT = (known: string[], kinds: Record<string, unknown[]>) => badOptions(known, kinds);

const METHODS: Method[] = [
  { name: 'list', valid: [{ uuids: false }], bad: { 0: OPT(['uuids'], booleans('uuids')) } },
  {
    name: 'create', valid: ['pool0', { uuid: 'U-1', readOnly: true, minor: 5 }],
    bad: { 0: BAD_NAMES, 1: [...OPT(['uuid', 'readOnly', 'minor'], { ...booleans('readOnly'), uuid: BAD_UUIDS.filter((u) => u !== undefined), minor: [...BAD_NUMBERS, 2 ** 20] }), { value: { secure: true }, mentions: 'secure' }] },
  },
  { name: 'remove', valid: ['pool0', { deferred: true }], bad: { 0: BAD_REFS, 1: OPT(['deferred'], booleans('deferred')) } },
  { name: 'removeAll', valid: [{ deferred: false }], bad: { 0: OPT(['deferred'], booleans('deferred')) } },
  { name: 'rename', valid: ['pool0', 'pool1'], bad: { 0: BAD_REFS, 1: BAD_NAMES } },
  { name: 'setUuid', valid: ['pool0', 'U-2'], bad: { 0: BAD_REFS, 1: BAD_UUIDS } },
  { name: 'suspend', valid: ['pool0', { noflush: true, skipLockfs: true }], bad: { 0: BAD_REFS, 1: OPT(['noflush', 'skipLockfs'], booleans('noflush', 'skipLockfs')) } },
  { name: 'resume', valid: ['pool0'], bad: { 0: BAD_REFS } },
  { name: 'info', valid: [{ uuid: 'U-1' }], bad: { 0: BAD_REFS } },
  { name: 'infoIfExists', valid: [{ dev: { major: 253, minor: 0 } }], bad: { 0: BAD_REFS } },
  { name: 'exists', valid: [{ name: 'pool0' }], bad: { 0: BAD_REFS } },
  { name: 'clear', valid: ['pool0'], bad: { 0: BAD_REFS } },
  {
    name: 'load', valid: ['pool0', ZERO, { readOnly: false, secure: true }],
    bad: { 0: BAD_REFS, 1: BAD_TABLES, 2: [...OPT(['readOnly', 'secure'], booleans('readOnly', 'secure')), { value: { uuid: 'U' }, mentions: 'uuid' }] },
  },
  { name: 'deps', valid: ['pool0', { inactive: true }], bad: { 0: BAD_REFS, 1: OPT(['inactive', 'noflush'], booleans('inactive', 'noflush')) } },
  { name: 'status', valid: ['pool0', { inactive: true, noflush: true }], bad: { 0: BAD_REFS, 1: OPT(['inactive', 'noflush'], booleans('inactive', 'noflush')) } },
  { name: 'table', valid: ['pool0', { inactive: false }], bad: { 0: BAD_REFS, 1: OPT(['inactive', 'noflush'], booleans('inactive', 'noflush')) } },
  { name: 'targetVersion', valid: ['thin-pool'], bad: { 0: BAD_TARGET_TYPES } },
  {
    name: 'message', valid: ['pool0', 0, 'create_thin 1', { secure: false }],
    bad: { 0: BAD_REFS, 1: BAD_SECTORS, 2: BAD_TEXTS, 3: OPT(['secure'], booleans('secure')) },
  },
  { name: 'setGeometry', valid: ['pool0', GEO], bad: { 0: BAD_REFS, 1: BAD_GEOMETRIES } },
  {
    name: 'wait', sync: false, valid: ['pool0', 0, { timeoutMs: 10, inactive: false, noflush: true, signal: new AbortController().signal }],
    bad: { 0: BAD_REFS, 1: BAD_EVENT_NRS, 2: OPT(['inactive', 'noflush', 'timeoutMs'], { ...booleans('inactive', 'noflush'), timeoutMs: TIMEOUTS, signal: SIGNALS }) },
  },
  {
    name: 'waitSync', sync: false, valid: ['pool0', 0, { noflush: true }],
    // waitSync cannot honour a timeout or a signal: they are refused, not ignored.
    bad: { 0: BAD_REFS, 1: BAD_EVENT_NRS, 2: [...OPT(['inactive', 'noflush'], booleans('inactive', 'noflush')), { value: { timeoutMs: 5 }, mentions: 'timeoutMs' }, { value: { signal: new AbortController().signal }, mentions: 'signal' }] },
  },
  { name: 'pollEvent', sync: false, valid: [{ timeoutMs: 10 }], bad: { 0: OPT(['timeoutMs'], { timeoutMs: TIMEOUTS, signal: SIGNALS }) } },
  {
    name: 'createDevice', valid: ['pool0', ZERO, { uuid: 'U-1', readOnly: true, minor: 1, secure: true }],
    bad: { 0: BAD_NAMES, 1: BAD_TABLES, 2: OPT(['uuid', 'readOnly', 'minor', 'secure'], { ...booleans('readOnly', 'secure'), uuid: BAD_UUIDS.filter((u) => u !== undefined), minor: [...BAD_NUMBERS, 2 ** 20] }) },
  },
];

// The sync twin of each method is `${name}Sync`, except waitSync, which is the sync form of wait (pollEvent has none).
function forms(dm: DeviceMapper, m: Method, args: unknown[]): { sync?: () => unknown; promise?: () => unknown } {
  const d = dm as unknown as Record<string, (...a: unknown[]) => unknown>;
  if (m.name === 'waitSync') return { sync: () => d.waitSync(...args) };
  return {
    sync: m.sync === false ? undefined : () => d[`${m.name}Sync`](...args),
    promise: m.promise === false ? undefined : () => d[m.name](...args),
  };
}

describe('DeviceMapper refuses hostile arguments before any ioctl', () => {
  const { dm, calls } = tripwireDm();

  test('valid arguments do reach the binding (the tripwire works, and the checks refuse no good input)', async () => {
    const failures: string[] = [];
    for (const m of METHODS) {
      const f = forms(dm, m, m.valid);
      const before = calls.length;
      try {
        if (f.sync) syncRefuses(f.sync, { code: 'ETRIPWIRE' });
        if (f.promise) await asyncRefuses(f.promise, { code: 'ETRIPWIRE' });
      } catch (e) {
        failures.push(`${m.name}: ${(e as Error).message}`);
      }
      if (calls.length === before) failures.push(`${m.name}: never reached the binding`);
    }
    expect(failures).toEqual([]);
  });

  for (const m of METHODS) {
    for (const [pos, values] of Object.entries(m.bad)) {
      test(`${m.name}: argument ${Number(pos) + 1} hostile (${values.length} values)`, async () => {
        await allRefused(values.map((entry) => {
          const isOpt = entry !== null && typeof entry === 'object' && 'value' in (entry as object) && Object.keys(entry as object).every((k) => k === 'value' || k === 'mentions');
          const { value, mentions } = isOpt ? entry as { value: unknown; mentions?: string } : { value: entry, mentions: undefined };
          const args = [...m.valid];
          args[Number(pos)] = value;
          return { label: `${m.name}(arg ${Number(pos) + 1} = ${label(value)})`, ...forms(dm, m, args), x: { mentions } };
        }), calls);
      });
    }
  }

  test("an option typo is refused by name, not read as the default: create('x', { readonly: true })", async () => {
    const e = syncRefuses(() => dm.createSync('x', { readonly: true } as never), { code: 'ERR_DM_INVALID_ARGUMENT', mentions: "'readonly'" });
    expect(e.message).toMatch(/unknown option 'readonly'/);
    await asyncRefuses(() => dm.remove('x', { defered: true } as never), { code: 'ERR_DM_INVALID_ARGUMENT', mentions: "'defered'" });
    expect(calls).toEqual(expect.not.arrayContaining(['dm', 'dmAsync']));
  });

  test('names: NUL, newline, control characters, control, ., .., slash and 128 bytes are refused as ERR_DM_INVALID_NAME', async () => {
    const cases: Case[] = [];
    for (const name of ['control', '.', '..', 'a/b', 'a\0b', 'a\nb', 'a\x01b', 'a\x7f', 'x'.repeat(128), '']) {
      cases.push({ label: label(name), sync: () => dm.createSync(name), promise: () => dm.create(name), x: { code: 'ERR_DM_INVALID_NAME' } });
      cases.push({ label: `rename to ${label(name)}`, sync: () => dm.renameSync('ok', name), promise: () => dm.rename('ok', name), x: { code: 'ERR_DM_INVALID_NAME' } });
    }
    await allRefused(cases, calls);
  });

  test('a message is one line without NUL; its sector a safe integer', async () => {
    await allRefused([
      { label: 'newline', sync: () => dm.messageSync('p', 0, 'delete 1\ndelete 2'), promise: () => dm.message('p', 0, 'delete 1\ndelete 2'), x: { mentions: 'one line' } },
      { label: 'NUL', sync: () => dm.messageSync('p', 0, 'delete 1\0'), promise: () => dm.message('p', 0, 'delete 1\0'), x: { mentions: 'NUL' } },
      { label: '2^53', sync: () => dm.messageSync('p', 2 ** 53, 'x'), promise: () => dm.message('p', 2 ** 53, 'x'), x: { code: 'ERR_DM_INVALID_SIZE' } },
    ], calls);
  });

  test('geometry within the kernel limits: cylinders <= 65535, heads and sectors <= 255, start within c*h*s', async () => {
    await allRefused([
      { label: 'heads 256', sync: () => dm.setGeometrySync('p', { ...GEO, heads: 256 }), promise: () => dm.setGeometry('p', { ...GEO, heads: 256 }), x: { mentions: 'heads' } },
      { label: 'start past the end', sync: () => dm.setGeometrySync('p', { cylinders: 2, heads: 2, sectors: 2, start: 9 }), x: { mentions: 'start' } },
    ], calls);
    syncRefuses(() => dm.setGeometrySync('p', { cylinders: 65535, heads: 255, sectors: 255, start: 65535 * 255 * 255 }), { code: 'ETRIPWIRE' });
  });

  test('a batch refuses a hostile command at once and queues nothing', () => {
    const b = dm.batch();
    for (const bad of [() => b.create('a/b'), () => b.suspend(null as never), () => b.load('p', [{ start: 0, length: NaN, type: 'zero', params: '' }] as never),
      () => b.message('p', 0, 'x\ny'), () => b.remove({ uuid: 'U' } as never), () => b.status('p', { inactve: true } as never),
      () => b.create('p', { readOnly: 'yes' } as never), () => b.rename('p', 'control')]) {
      syncRefuses(bad);
    }
    expect(b.length).toBe(0);
  });

  test('ensureNode checks its name and device number, whatever the node policy', () => {
    for (const name of BAD_NAMES) syncRefuses(() => dm.ensureNode(name as string, undefined));
    for (const dev of [null, {}, '253:0', { major: 4096, minor: 0 }, { major: 1, minor: 2 ** 20 }, { major: 1, minor: 1, x: 1 }, { major: 1.5, minor: 0 }])
      syncRefuses(() => dm.ensureNode('ok', dev as never));
    expect(calls).toEqual(expect.not.arrayContaining(['dm']));
  });

  test('the constructor checks its options by known keys', () => {
    const bad: unknown[] = [...BAD_OPTION_OBJECTS, { node: 'none' }, { nodes: 'mange' }, { nodes: 1 }, { nodes: null }, { nodes: new String('none') },
      ...[...BAD_NUMBERS, 2 ** 31].map((n) => ({ udevTimeoutMs: n })), { binding: {} }, { binding: null }];
    const failures: string[] = [];
    for (const o of bad) {
      try { syncRefuses(() => new DeviceMapper(o as never)); } catch (e) { failures.push(`${label(o)}: ${(e as Error).message}`); }
    }
    expect(failures).toEqual([]);
    syncRefuses(() => new DeviceMapper({ nodes: 'none', udevtimeoutms: 5 } as never), { mentions: "'udevtimeoutms'" });
    expect(new DeviceMapper({ nodes: 'none', udevTimeoutMs: 0 })).toBeInstanceOf(DeviceMapper);
  });

  test('checkTable (exported) refuses the same tables', () => {
    const failures: string[] = [];
    for (const t of BAD_TABLES) {
      try { syncRefuses(() => checkTable(t as never)); } catch (e) { failures.push(`${label(t)}: ${(e as Error).message}`); }
    }
    expect(failures).toEqual([]);
    expect(checkTable([{ start: 0, length: 2 ** 53 - 1, type: 'zero', params: '' }] as never)).toHaveLength(1);
  });

  afterAll(() => dm.close());
});

// ---- Loop and Block --------------------------------------------------------------------------------------

describe('Loop and Block refuse hostile arguments before any syscall', () => {
  const tmp = scratch();
  afterAll(() => tmp.remove());

  const BAD_PATHS: unknown[] = ['', ...NUL_STRINGS, ...NOT_STRINGS];
  const BAD_LOOPS: unknown[] = [
    '', '/dev/loop', '/dev/loopX', '/dev/loop-1', '/dev/loop01', '/dev/loop00', '/dev/loop1048576', '/dev/loop99999999', '/dev/loop1.5',
    '/dev/loop0\0', '/dev/loop0\n', '/dev/loop0/', ' /dev/loop0', '/dev//loop0', 'loop0', '/dev/sda', '/dev/mapper/control', '/dev/loop-control',
    ...NOT_STRINGS,
  ];
  const BAD_ATTACH: { value: unknown; mentions?: string }[] = [
    ...BAD_OPTION_OBJECTS.map((value) => ({ value })),
    { value: { readonly: true }, mentions: "'readonly'" }, { value: { autoClear: true }, mentions: "'autoClear'" }, { value: { directIO: true }, mentions: "'directIO'" },
    { value: { offset: 0, size: 512 }, mentions: "'size'" }, { value: { [Symbol('k')]: 1 } },
    ...['readOnly', 'autoclear', 'directIo', 'partscan'].flatMap((k) => BAD_BOOLEANS.map((b) => ({ value: { [k]: b }, mentions: k }))),
    ...['offset', 'sizeLimit'].flatMap((k) => BAD_NUMBERS.map((n) => ({ value: { [k]: n }, mentions: k }))),
    { value: { sizeLimit: 1000 }, mentions: 'sizeLimit' }, { value: { sizeLimit: 511 }, mentions: 'sizeLimit' },
    ...[1000, '512', 0, 256, 8192, 513, NaN, null, new Number(512)].map((b) => ({ value: { blockSize: b }, mentions: 'block size' })),
    ...['losetup', 'CONFIGURE', '', 1, null, new String('set-fd')].map((m) => ({ value: { method: m }, mentions: 'method' })),
  ];

  test('attach: the backing file is a path without NUL', async () => {
    await allRefused(BAD_PATHS.map((f) => ({
      label: `attach(${label(f)})`, sync: () => Loop.attachSync(f as string), promise: () => Loop.attach(f as string), x: { code: 'ERR_DM_INVALID_ARGUMENT' },
    })));
  });

  test(`attach: options by known keys, flags booleans, numbers safe integers, blockSize 512..4096 (${BAD_ATTACH.length} values)`, async () => {
    await allRefused(BAD_ATTACH.map(({ value, mentions }) => {
      const f = tmp.absent('attach');
      return { label: `attach(f, ${label(value)})`, sync: () => Loop.attachSync(f, value as never), promise: () => Loop.attach(f, value as never), x: { code: 'ERR_DM_INVALID_ARGUMENT', mentions } };
    }));
    // The brief's example, exactly: a typo is named.
    syncRefuses(() => Loop.attachSync(tmp.absent(), { readonly: true } as never), { code: 'ERR_DM_INVALID_ARGUMENT', mentions: "unknown option 'readonly'" });
  });

  test('attach with good options and an absent file ends in ENOENT (a typed system error), both forms', async () => {
    const o = { readOnly: true, autoclear: false, directIo: false, partscan: false, offset: 4096, sizeLimit: 512 * 1024, blockSize: 4096, method: 'set-fd' } as const;
    syncRefuses(() => Loop.attachSync(tmp.absent(), o), { code: 'ENOENT' });
    await asyncRefuses(() => Loop.attach(tmp.absent(), o), { code: 'ENOENT' });
  });

  test('detach, status, setCapacity take only /dev/loopN with N below 2^20', async () => {
    const cases: Case[] = [];
    for (const d of BAD_LOOPS) {
      cases.push({ label: `detach(${label(d)})`, sync: () => Loop.detachSync(d as string), promise: () => Loop.detach(d as string), x: { code: 'ERR_DM_INVALID_ARGUMENT' } });
      cases.push({ label: `status(${label(d)})`, sync: () => Loop.statusSync(d as string), promise: () => Loop.status(d as string), x: { code: 'ERR_DM_INVALID_ARGUMENT' } });
      cases.push({ label: `setCapacity(${label(d)})`, sync: () => Loop.setCapacitySync(d as string), promise: () => Loop.setCapacity(d as string), x: { code: 'ERR_DM_INVALID_ARGUMENT' } });
    }
    await allRefused(cases);
    // The largest number passes the check; the node does not exist here: a typed ENOENT from open().
    if (!fs.existsSync('/dev/loop1048575')) await asyncRefuses(() => Loop.status('/dev/loop1048575'), { code: 'ENOENT' });
  });

  test('find: the file is a path without NUL; an absent file is a typed ENOENT, both forms', async () => {
    await allRefused(BAD_PATHS.map((f) => ({ label: `find(${label(f)})`, sync: () => Loop.findSync(f as string), promise: () => Loop.find(f as string) })));
    syncRefuses(() => Loop.findSync(tmp.absent()), { code: 'ENOENT' });
    await asyncRefuses(() => Loop.find(tmp.absent()), { code: 'ENOENT' });
  });

  test('Block: every path is a string without NUL', async () => {
    const cases: Case[] = [];
    for (const p of BAD_PATHS) {
      cases.push({ label: `size(${label(p)})`, sync: () => Block.sizeSync(p as string), promise: () => Block.size(p as string) });
      cases.push({ label: `flush(${label(p)})`, sync: () => Block.flushSync(p as string), promise: () => Block.flush(p as string) });
      cases.push({ label: `deviceNumber(${label(p)})`, sync: () => Block.deviceNumberSync(p as string), promise: () => Block.deviceNumber(p as string) });
      cases.push({ label: `discard(${label(p)})`, sync: () => Block.discardSync(p as string, 0, 512), promise: () => Block.discard(p as string, 0, 512) });
    }
    await allRefused(cases);
  });

  test('Block.discard: offset and length safe integers in whole sectors, a length above 0, an end below 2^53', async () => {
    const f = tmp.absent('disc');
    const cases: Case[] = [];
    for (const n of [undefined, ...BAD_NUMBERS, 1, 511, 513]) {
      cases.push({ label: `offset ${label(n)}`, sync: () => Block.discardSync(f, n as number, 512), promise: () => Block.discard(f, n as number, 512), x: { code: 'ERR_DM_INVALID_SIZE' } });
      cases.push({ label: `length ${label(n)}`, sync: () => Block.discardSync(f, 0, n as number), promise: () => Block.discard(f, 0, n as number), x: { code: 'ERR_DM_INVALID_SIZE' } });
    }
    cases.push({ label: 'length 0', sync: () => Block.discardSync(f, 0, 0), promise: () => Block.discard(f, 0, 0), x: { code: 'ERR_DM_INVALID_SIZE' } });
    cases.push({ label: 'end past 2^53', sync: () => Block.discardSync(f, 2 ** 53 - 512, 1024), promise: () => Block.discard(f, 2 ** 53 - 512, 1024), x: { code: 'ERR_DM_INVALID_SIZE' } });
    await allRefused(cases);
    // Good numbers, absent device: a typed ENOENT, not a crash.
    syncRefuses(() => Block.discardSync(f, 512, 4096), { code: 'ENOENT' });
    await asyncRefuses(() => Block.size(f), { code: 'ENOENT' });
  });

  test('Block.deviceNumber of an absent path: ENOENT from both forms (the promise must not resolve 0:0)', async () => {
    const f = tmp.absent('devnum');
    syncRefuses(() => Block.deviceNumberSync(f), { code: 'ENOENT' });
    await asyncRefuses(() => Block.deviceNumber(f), { code: 'ENOENT' });
  });

  test('formatDev takes only a device number within dev_t', () => {
    for (const d of [null, undefined, '253:0', {}, { major: 4096, minor: 0 }, { major: 1, minor: 2 ** 20 }, { major: -1, minor: 0 }, { major: NaN, minor: 0 }])
      syncRefuses(() => formatDev(d as never));
    expect(formatDev({ major: 253, minor: 7 })).toBe('253:7');
  });
});

// ---- ThinPool's entry points (lib/thin: checked here, not changed) ----------------------------------------

describe('ThinPool refuses hostile options before it touches anything', () => {
  const tmp = scratch();
  const { dm, calls } = tripwireDm();
  // Valid pool names used below: a call whose other options fail late (after the lifecycle lock) leaves a lock file.
  const NAME = `hostile-dm-unit-${process.pid}`;
  const cleanLocks = lifecycleLockJanitor([NAME, 'control']);
  afterAll(() => { dm.close(); tmp.remove(); cleanLocks(); });
  const base = () => ({ name: NAME, dataFile: tmp.absent('data'), dataSize: '64M', dm });

  test('create, open and attach: bad names, typos, wrong kinds', async () => {
    const createBad: unknown[] = [
      undefined, null, 'pool', [], new Map(),
      ...BAD_NAMES.map((name) => ({ ...base(), name })),
      { ...base(), readonly: true }, { ...base(), datafile: 'x' }, { ...base(), dataFile: 'a\0b' }, { ...base(), dataFile: '' },
      { ...base(), dataFile: 5 }, { ...base(), dataSize: NaN }, { ...base(), dataSize: -512 }, { ...base(), dataSize: 1.5 },
      { ...base(), dataSize: '10 potatoes' }, { ...base(), dataSize: 2 ** 53 }, { ...base(), blockSize: 100 }, { ...base(), blockSize: NaN },
      { ...base(), lowWaterMark: -1 }, { ...base(), lowWaterMark: 1.5 }, { ...base(), skipBlockZeroing: 'yes' }, { ...base(), errorIfNoSpace: 1 },
      { ...base(), dm: {} }, { ...base(), dm: null }, { ...base(), registry: {} }, { ...base(), registryDir: 'a\0' }, { ...base(), hooks: 5 },
      { ...base(), hooks: { step: 'x' } }, { ...base(), hooks: { stp() {} } }, { ...base(), metadataSize: -1 },
    ];
    const cases: Case[] = createBad.map((o) => ({ label: `create(${label(o)})`, sync: () => ThinPool.createSync(o as never), promise: () => ThinPool.create(o as never) }));
    for (const name of BAD_NAMES) cases.push({ label: `open(${label(name)})`, sync: () => ThinPool.openSync(name as string, { dm }), promise: () => ThinPool.open(name as string, { dm }) });
    for (const o of [null, 'x', [], { dm: 5 }, { registrydir: '/tmp' }, { registryDir: '\0' }, { hooks: null }, new Map()])
      cases.push({ label: `open('p', ${label(o)})`, sync: () => ThinPool.openSync('p', o as never), promise: () => ThinPool.open('p', o as never) });
    for (const o of [undefined, null, { name: NAME, dm }, { name: NAME, dataFile: '\0', dm }, { name: 'control', dataFile: tmp.absent(), dm },
      { name: NAME, dataFile: tmp.absent(), readonly: true, dm }, { name: NAME, dataDevice: '/dev/x', dm },
      { name: NAME, dataFile: tmp.absent(), dataDevice: '/dev/x', metadataDevice: '/dev/y', dm }])
      cases.push({ label: `attach(${label(o)})`, sync: () => ThinPool.attachSync(o as never), promise: () => ThinPool.attach(o as never) });
    await allRefused(cases, calls);
  });
});

test('DevmapperError is what every refusal above is: a sanity check of the helpers themselves', async () => {
  expect(() => syncRefuses(() => { throw new TypeError('x'); })).toThrow(/expected a DevmapperError, got TypeError/);
  await expect(asyncRefuses(() => { throw new DevmapperError('x', { code: 'ERR_DM_INVALID_ARGUMENT' }); })).rejects.toThrow(/threw synchronously/);
  await expect(asyncRefuses(() => Promise.resolve(1))).rejects.toThrow(/resolved/);
});
