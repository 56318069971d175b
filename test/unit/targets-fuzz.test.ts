// Seeded property tests of the target models and status parsers on hostile input: format() and parse() either
// succeed (format only on valid params) or throw a DevmapperError, never another error; parse(format(x))
// equals x for generated valid x; numbers are never rounded.
import fc from 'fast-check';
import { DevmapperError, delay, error, flakey, linear, parseThinPoolStatus, parseThinStatus, striped, thin, thinPool, zero } from '../../lib';
import type { TargetModel } from '../../lib/targets';
import { fuzzRuns } from './emulation';

fc.configureGlobal({ seed: 20261129, numRuns: fuzzRuns(300) });

const U32 = 0xffffffff;
const models = [linear, striped, zero, error, flakey, delay, thin, thinPool] as TargetModel<unknown>[];
const statusParsers: [string, (s: string) => unknown][] = [['thin status', parseThinStatus], ['thin-pool status', parseThinPoolStatus]];

/** Runs fn: a value, or the DevmapperError it threw; any other throw fails the property. */
function outcome<T>(fn: () => T): { ok: true; value: T } | { ok: false; error: DevmapperError } {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof DevmapperError) return { ok: false, error: e };
    throw new Error(`not a DevmapperError: ${e instanceof Error ? `${e.name}: ${e.message}` : typeof e}`);
  }
}

// ---- Valid params, as parse() returns them (flags true or absent; features and extra as parse() gives them).
const u32 = fc.tuple(fc.nat(0xffff), fc.nat(0xffff)).map(([a, b]) => a * 0x10000 + b);
const sectorsArb = fc.oneof(fc.nat(), fc.maxSafeNat(), fc.constantFrom(0, 2 ** 53 - 1, 2 ** 32, 2 ** 32 - 1));
const devNumbers = fc.tuple(fc.nat(4095), fc.nat(2 ** 20 - 1)).map(([a, b]) => `${a}:${b}`);
const devPath = fc.stringMatching(/^\/dev\/[A-Za-z0-9_.:\\/-]{1,24}$/);
const dev = fc.oneof({ weight: 3, arbitrary: devNumbers }, { weight: 1, arbitrary: devPath });
// Words a newer kernel might print: printable, no space; ASCII and not.
const word = fc.oneof(fc.stringMatching(/^[!-~]{1,12}$/), fc.constantFrom('é', 'ready', '-', '0', '18446744073709551615', '日本'));
const extra = fc.array(word, { minLength: 1, maxLength: 3 });

const linearArb = fc.record({ device: dev, offset: sectorsArb, extra }, { requiredKeys: ['device', 'offset'] });
const stripedArb = fc.record({
  chunkSize: fc.integer({ min: 3, max: 31 }).map((e) => 2 ** e),
  stripes: fc.array(fc.record({ device: dev, offset: sectorsArb }), { minLength: 1, maxLength: 5 }),
  extra,
}, { requiredKeys: ['chunkSize', 'stripes'] });
const delayPath = fc.record({ device: dev, offset: sectorsArb, delayMs: u32 });
const delayArb = fc.oneof(
  fc.record({ read: delayPath }),
  fc.record({ read: delayPath, write: delayPath }),
  fc.record({ read: delayPath, write: delayPath, flush: delayPath, extra }, { requiredKeys: ['read', 'write', 'flush'] }),
);
const flakeyArb = fc.record({
  device: dev, offset: sectorsArb,
  intervals: fc.tuple(u32, u32).map(([a, b]) => [a, Math.floor(b * ((U32 - a) / U32))] as const).filter(([a, b]) => a + b > 0 && a + b <= U32),
  errorReads: fc.constant(true), dropWrites: fc.constant(true), errorWrites: fc.constant(true),
  corruptBioByte: fc.record({ nthByte: u32.map((n) => Math.max(1, n)), direction: fc.constantFrom('r' as const, 'w' as const), value: fc.nat(255), flags: u32 }),
  randomReadCorrupt: fc.nat(1e9), randomWriteCorrupt: fc.nat(1e9),
}, { requiredKeys: ['device', 'offset', 'intervals'] }).map(({ intervals, ...p }) => ({ ...p, upInterval: intervals[0], downInterval: intervals[1] }))
  .filter((p) => {
    const cw = p.corruptBioByte?.direction === 'w' || !!p.randomWriteCorrupt;
    const cr = p.corruptBioByte?.direction === 'r' || !!p.randomReadCorrupt;
    return !(p.dropWrites && p.errorWrites) && !((p.dropWrites || p.errorWrites) && cw) && !(p.errorReads && cr);
  });
const thinArb = fc.oneof(
  fc.record({ pool: dev, deviceId: fc.nat(2 ** 24 - 1) }),
  fc.record({ pool: dev, deviceId: fc.nat(2 ** 24 - 1), externalOrigin: dev, extra }, { requiredKeys: ['pool', 'deviceId', 'externalOrigin'] })
    .filter((p) => p.pool !== p.externalOrigin),
);
const poolFeatures = fc.record({
  skipBlockZeroing: fc.constant(true), ignoreDiscard: fc.constant(true), noDiscardPassdown: fc.constant(true),
  readOnly: fc.constant(true), errorIfNoSpace: fc.constant(true),
}, { requiredKeys: [] }).filter((f) => Object.keys(f).length <= 4);
const thinPoolArb = fc.record({
  metadataDev: dev, dataDev: dev, blockSize: fc.integer({ min: 1, max: 16384 }).map((n) => n * 128),
  lowWaterMark: sectorsArb, features: poolFeatures,
}).filter((p) => p.metadataDev !== p.dataDev);

const valid: [TargetModel<unknown>, fc.Arbitrary<object>][] = [
  [linear, linearArb], [striped, stripedArb], [zero, fc.constant({})], [error, fc.constant({})], [flakey, flakeyArb],
  [delay, delayArb], [thin, thinArb], [thinPool, thinPoolArb],
] as [TargetModel<unknown>, fc.Arbitrary<object>][];

// ---- Hostile values: invalid for every field of every model (numbers, device strings, flags, objects, arrays).
const hostileValues: unknown[] = [
  NaN, Infinity, -Infinity, -1, 1.5, -0.5, 2 ** 53, 2 ** 64, Number.MAX_VALUE, Number.MIN_VALUE, 1e21,
  '', ' ', '\0', '7:0\0', '7:0 ', '7:0\n', 'a b', '/dev/x y', 'loop0', '07:0', '4096:0', '7:1048576', '1', '128', 'true', '\ud800',
  Symbol('hostile'), null, [], [null], ['7:0', 0], new String('7:0'), new Number(128), new Boolean(true), 10n, () => 1, new Date(0),
  { valueOf: () => 128 }, { toString: () => '7:0' }, new Map(), /re/,
];
const hostile = fc.constantFrom(...hostileValues);
// A string without spaces or control characters is a valid extra word.
const isWordLike = (v: unknown) => typeof v === 'string' && /^[^\s\u0000-\u001f\u007f-\u009f\ud800-\udfff]+$/.test(v);

/** Every path to a leaf field in a valid params object (nested objects and arrays included). */
function leafPaths(o: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (o === null || typeof o !== 'object') return [prefix];
  const out: (string | number)[][] = prefix.length ? [prefix] : [];
  for (const [k, v] of Object.entries(o)) out.push(...leafPaths(v, [...prefix, Array.isArray(o) ? Number(k) : k]));
  return out;
}
function setPath(o: unknown, path: (string | number)[], v: unknown, remove = false): unknown {
  const clone = (v: unknown): unknown => (Array.isArray(v) ? v.map(clone)
    : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)])) : v);
  const copy = clone(o) as Record<string | number, unknown>;
  let at = copy;
  for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (remove) delete at[last]; else at[last] = v;
  return copy;
}

describe('format: hostile params give a DevmapperError, never another error', () => {
  const anything = fc.anything({
    withBoxedValues: true, withNullPrototype: true, withBigInt: true, withDate: true, withMap: true, withSet: true,
    withSparseArray: true, withTypedArray: true, withObjectString: true, withUnicodeString: true,
  });

  test.each(models.map((m) => [m.type, m] as const))('%s: fc.anything()', (_t, m) => {
    fc.assert(fc.property(anything, (p) => {
      const r = outcome(() => m.format(p));
      if (r.ok) {  // valid input only: the text reads back and formats to itself
        expect(typeof r.value).toBe('string');
        expect(m.format(m.parse(r.value))).toBe(r.value);
      }
    }));
  });

  test.each(valid.map(([m, a]) => [m.type, m, a] as const))('%s: a valid object with each field in turn given each hostile value', (_t, m, arb) => {
    fc.assert(fc.property(arb, (p) => {
      expect(typeof m.format(p)).toBe('string');
      for (const path of leafPaths(p)) {
        for (const bad of hostileValues) {
          if (path[0] === 'extra' && isWordLike(bad)) continue;
          const r = outcome(() => m.format(setPath(p, path, bad)));
          if (r.ok) throw new Error(`${m.type}: ${path.join('.')} = ${String(bad)} was accepted: '${r.value}'`);
        }
      }
      for (const key of ['offest', 'features2', 'toString', '__proto__x', 'Device', 'extra2'])
        expect(outcome(() => m.format({ ...p, [key]: 1 })).ok).toBe(false);
      expect(outcome(() => m.format({ ...p, [Symbol('k')]: 1 })).ok).toBe(false);
    }), { numRuns: fuzzRuns(60) });
  });

  test.each(valid.map(([m, a]) => [m.type, m, a] as const))('%s: a valid object with a random field hostile', (_t, m, arb) => {
    fc.assert(fc.property(arb, fc.nat(), hostile, (p, pick, bad) => {
      const paths = leafPaths(p);
      const path = paths[pick % Math.max(1, paths.length)];
      fc.pre(!(path?.[0] === 'extra' && isWordLike(bad)));
      expect(outcome(() => m.format(path ? setPath(p, path, bad) : { x: bad })).ok).toBe(false);
    }));
  });

  test.each(valid.filter(([m]) => m !== zero && m !== error).map(([m, a]) => [m.type, m, a] as const))('%s: a required field missing', (_t, m, arb) => {
    const required: Record<string, string[]> = {
      linear: ['device', 'offset'], striped: ['chunkSize', 'stripes'], flakey: ['device', 'offset', 'upInterval', 'downInterval'],
      delay: ['read'], thin: ['pool', 'deviceId'], 'thin-pool': ['metadataDev', 'dataDev', 'blockSize', 'lowWaterMark'],
    };
    fc.assert(fc.property(arb, fc.nat(), (p, pick) => {
      const keys = required[m.type];
      expect(outcome(() => m.format(setPath(p, [keys[pick % keys.length]], undefined, true))).ok).toBe(false);
    }));
  });
});

describe('parse: any text, and valid lines with one word mutated, give a value or a DevmapperError', () => {
  const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }),
    fc.array(fc.constantFrom('0', '1', '-', '7:0', '128', 'rw', 'Fail', ' ', '\t', '\n', '\0', '/', 'x'), { maxLength: 12 }).map((w) => w.join('')));

  test.each(models.map((m) => [m.type, m] as const))('%s: random text', (_t, m) => {
    fc.assert(fc.property(text, (s) => { outcome(() => m.parse(s)); }));
  });
  test.each(statusParsers)('%s: random text', (_n, parse) => {
    fc.assert(fc.property(text, (s) => { outcome(() => parse(s)); }));
  });
  test.each([...models.map((m) => [m.type, (s: string) => m.parse(s)] as const), ...statusParsers])('%s: not a string', (_n, parse) => {
    fc.assert(fc.property(fc.anything({ withBoxedValues: true, withNullPrototype: true, withBigInt: true }), (v) => {
      fc.pre(typeof v !== 'string');
      const r = outcome(() => parse(v as string));
      expect(r.ok ? undefined : r.error.code).toBe('ERR_DM_PARSE');
    }));
  });

  const mutant = fc.constantFrom('', '-', 'x', '9007199254740993', '18446744073709551616', '-1', '1.5', '0x10', '01', '+1', '1e3', '4096:0',
    '7:1048576', '07:0', 'Fail', 'Error', 'needs_check', 'rw', 'ro', 'drop_writes', 'corrupt_bio_byte', 'ignore_discard', '0', '4294967296',
    '16777216', '\0', 'a\nb', '\t', 'é', '\ud800', '1/2', '/dev/x');
  const mutate = (line: string) => fc.tuple(fc.nat(), mutant, fc.constantFrom('replace', 'insert', 'delete', 'duplicate')).map(([i, m, how]) => {
    const w = line.split(' ').filter(Boolean);
    const at = w.length ? i % (w.length + (how === 'insert' ? 1 : 0)) : 0;
    if (how === 'replace' && w.length) w[at] = m;
    else if (how === 'insert' || !w.length) w.splice(at, 0, m);
    else if (how === 'delete') w.splice(at, 1);
    else w.splice(at, 0, w[at]);
    return w.join(' ');
  });

  test.each(valid.map(([m, a]) => [m.type, m, a] as const))('%s: a valid line, one word mutated', (_t, m, arb) => {
    fc.assert(fc.property(arb.chain((p) => mutate(m.format(p))), (s) => {
      const r = outcome(() => m.parse(s));
      if (r.ok) outcome(() => m.format(r.value));  // whatever parse returns, format checks it without a TypeError
    }));
  });

  const ratio = fc.tuple(fc.maxSafeNat(), fc.maxSafeNat()).map(([a, b]) => `${Math.min(a, b)}/${Math.max(a, b)}`);
  const poolStatus = fc.tuple(fc.maxSafeNat(), ratio, ratio, fc.oneof(fc.constant('-'), fc.maxSafeNat().map(String)),
    fc.constantFrom('rw', 'ro', 'out_of_data_space'), fc.constantFrom('ignore_discard', 'discard_passdown', 'no_discard_passdown'),
    fc.constantFrom('error_if_no_space', 'queue_if_no_space'), fc.constantFrom('needs_check', '-'), fc.maxSafeNat(), fc.integer({ min: 5, max: 11 }),
    fc.array(word, { maxLength: 2 }))
    .map(([t, m, d, h, mode, disc, ns, nc, lw, n, more]) => [t, m, d, h, mode, disc, ns, nc, lw, ...more].slice(0, n).join(' ') + ' ');
  const thinStatus = fc.oneof(fc.constantFrom('-', 'Fail', 'Error'),
    fc.tuple(fc.maxSafeNat(), fc.oneof(fc.constant('-'), fc.maxSafeNat().map(String)), fc.array(word, { maxLength: 2 })).map(([a, b, more]) => [a, b, ...more].join(' ')));

  test('thin-pool status: generated kernel lines parse; one word mutated, a value or a DevmapperError', () => {
    fc.assert(fc.property(poolStatus, (s) => { expect(parseThinPoolStatus(s)).toMatchObject({ state: 'ok' }); }));
    fc.assert(fc.property(poolStatus.chain(mutate), (s) => { outcome(() => parseThinPoolStatus(s)); }));
  });
  test('thin status: generated kernel lines parse; one word mutated, a value or a DevmapperError', () => {
    fc.assert(fc.property(thinStatus, (s) => { parseThinStatus(s); }));
    fc.assert(fc.property(thinStatus.chain(mutate), (s) => { outcome(() => parseThinStatus(s)); }));
  });
  test('thin-pool status: a word the kernel does not print at a known position is refused', () => {
    fc.assert(fc.property(poolStatus, fc.integer({ min: 4, max: 7 }), fc.stringMatching(/^[a-z_]{1,20}$/), (s, i, bad) => {
      const w = s.trim().split(' ');
      fc.pre(i < w.length && !['rw', 'ro', 'out_of_data_space', 'ignore_discard', 'discard_passdown', 'no_discard_passdown',
        'error_if_no_space', 'queue_if_no_space', 'needs_check'].includes(bad));
      w[i] = bad;
      expect(outcome(() => parseThinPoolStatus(w.join(' '))).ok).toBe(false);
    }));
  });
});

test.each(valid.map(([m, a]) => [m.type, m, a] as const))('%s: parse(format(x)) equals x', (_t, m, arb) => {
  fc.assert(fc.property(arb, (p) => {
    const text = m.format(p);
    expect(m.parse(text)).toEqual(p);
    expect(m.parse(text + ' ')).toEqual(p);
  }));
});

describe('big numbers are never rounded', () => {
  const big = fc.bigInt({ min: 2n ** 53n, max: 2n ** 70n });
  const safe = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }), fc.constantFrom(2n ** 53n - 1n, 2n ** 53n - 2n));
  // A line with one number slot, for each model and status parser.
  const slots: [string, (n: string) => unknown, (r: unknown) => unknown][] = [
    ['linear offset', (n) => linear.parse(`7:0 ${n}`), (r) => (r as { offset: number }).offset],
    ['striped offset', (n) => striped.parse(`1 128 7:0 ${n}`), (r) => (r as { stripes: { offset: number }[] }).stripes[0].offset],
    ['flakey offset', (n) => flakey.parse(`7:0 ${n} 1 1 0`), (r) => (r as { offset: number }).offset],
    ['delay offset', (n) => delay.parse(`7:0 ${n} 1`), (r) => (r as { read: { offset: number } }).read.offset],
    ['thin-pool low water mark', (n) => thinPool.parse(`7:0 7:1 128 ${n} 0`), (r) => (r as { lowWaterMark: number }).lowWaterMark],
    ['thin-pool status transaction id', (n) => parseThinPoolStatus(`${n} 1/2 1/2 - rw`), (r) => (r as { transactionId: number }).transactionId],
    ['thin-pool status used metadata', (n) => parseThinPoolStatus(`0 ${n}/9007199254740991 1/2 - rw`), (r) => (r as { metadata: { used: number } }).metadata.used],
    ['thin-pool status total data', (n) => parseThinPoolStatus(`0 1/2 0/${n} - rw`), (r) => (r as { data: { total: number } }).data.total],
    ['thin-pool status held root', (n) => parseThinPoolStatus(`0 1/2 1/2 ${n} rw`), (r) => (r as { heldMetadataRoot: number }).heldMetadataRoot],
    ['thin-pool status watermark', (n) => parseThinPoolStatus(`0 1/2 1/2 - rw discard_passdown queue_if_no_space - ${n}`), (r) => (r as { metadataLowWatermark: number }).metadataLowWatermark],
    ['thin status mapped', (n) => parseThinStatus(`${n} -`), (r) => (r as { mappedSectors: number }).mappedSectors],
    ['thin status highest', (n) => parseThinStatus(`0 ${n}`), (r) => (r as { highestMappedSector: number }).highestMappedSector],
  ];
  test.each(slots)('%s', (_n, parse, get) => {
    fc.assert(fc.property(big, (n) => {
      const r = outcome(() => parse(n.toString()));
      expect(r.ok ? 'parsed' : r.error.code).toBe('ERR_DM_PARSE');
    }));
    fc.assert(fc.property(safe, (n) => {
      const v = get(parse(n.toString()));
      expect(BigInt(v as number)).toBe(n);  // exact: not one off
    }));
    expect(() => parse('9007199254740993')).toThrow(expect.objectContaining({ code: 'ERR_DM_PARSE' }));
  });
});
