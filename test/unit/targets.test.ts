// Target models: parse(format(x)) equals x; status parsers read every format the kernel has used; both
// directions refuse what the kernel would not take or cannot print, with a DevmapperError.
import { delay, flakey, linear, parseThinPoolStatus, parseThinStatus, striped, thin, thinPool, zero, error, sectors, parseTarget, line, DevmapperError } from '../../lib';
import { TargetModel, checkDevice } from '../../lib/targets';

const cases: [TargetModel<any>, unknown, string][] = [
  [linear, { device: '7:0', offset: 2048 }, '7:0 2048'],
  [linear, { device: '/dev/loop0', offset: 0 }, '/dev/loop0 0'],
  [linear, { device: '4095:1048575', offset: 2 ** 53 - 1 }, '4095:1048575 9007199254740991'],
  [linear, { device: '7:0', offset: 8, extra: ['future', '1'] }, '7:0 8 future 1'],
  [striped, { chunkSize: 128, stripes: [{ device: '7:0', offset: 0 }, { device: '7:1', offset: 8 }] }, '2 128 7:0 0 7:1 8'],
  [striped, { chunkSize: 2 ** 31, stripes: [{ device: '7:0', offset: 0 }], extra: ['x'] }, '1 2147483648 7:0 0 x'],
  [zero, {}, ''],
  [error, {}, ''],
  [flakey, { device: '7:0', offset: 0, upInterval: 30, downInterval: 5 }, '7:0 0 30 5 0'],
  [flakey, { device: '7:0', offset: 0, upInterval: 30, downInterval: 5, dropWrites: true }, '7:0 0 30 5 1 drop_writes'],
  [flakey, { device: '7:0', offset: 0, upInterval: 0, downInterval: 4294967295, errorReads: true, errorWrites: true }, '7:0 0 0 4294967295 2 error_reads error_writes'],
  [flakey, { device: '7:0', offset: 1, upInterval: 1, downInterval: 1, errorWrites: true,
    corruptBioByte: { nthByte: 32, direction: 'r', value: 255, flags: 4294967295 }, randomReadCorrupt: 1000000000 },
  '7:0 1 1 1 8 error_writes corrupt_bio_byte 32 r 255 4294967295 random_read_corrupt 1000000000'],
  [flakey, { device: '7:0', offset: 0, upInterval: 1, downInterval: 0, errorReads: true, randomWriteCorrupt: 5,
    corruptBioByte: { nthByte: 1, direction: 'w', value: 0, flags: 0 } },
  '7:0 0 1 0 8 error_reads corrupt_bio_byte 1 w 0 0 random_write_corrupt 5'],
  [delay, { read: { device: '7:0', offset: 0, delayMs: 10 } }, '7:0 0 10'],
  [delay, { read: { device: '7:0', offset: 0, delayMs: 10 }, write: { device: '7:1', offset: 0, delayMs: 0 } }, '7:0 0 10 7:1 0 0'],
  [delay, { read: { device: '7:0', offset: 0, delayMs: 10 }, write: { device: '7:1', offset: 0, delayMs: 0 }, flush: { device: '7:2', offset: 5, delayMs: 4294967295 } },
    '7:0 0 10 7:1 0 0 7:2 5 4294967295'],
  [delay, { read: { device: '7:0', offset: 0, delayMs: 1 }, write: { device: '7:1', offset: 0, delayMs: 2 }, flush: { device: '7:2', offset: 0, delayMs: 3 }, extra: ['more'] },
    '7:0 0 1 7:1 0 2 7:2 0 3 more'],
  [thin, { pool: '254:0', deviceId: 7 }, '254:0 7'],
  [thin, { pool: '254:0', deviceId: 2 ** 24 - 1, externalOrigin: '7:3' }, '254:0 16777215 7:3'],
  [thin, { pool: '254:0', deviceId: 0, externalOrigin: '7:3', extra: ['a', 'b'] }, '254:0 0 7:3 a b'],
  [thinPool, { metadataDev: '7:0', dataDev: '7:1', blockSize: 128, lowWaterMark: 0, features: {} }, '7:0 7:1 128 0 0'],
  [thinPool, { metadataDev: '7:0', dataDev: '7:1', blockSize: 256, lowWaterMark: 10, features: { skipBlockZeroing: true, errorIfNoSpace: true } },
    '7:0 7:1 256 10 2 skip_block_zeroing error_if_no_space'],
  [thinPool, { metadataDev: '7:0', dataDev: '7:1', blockSize: 2097152, lowWaterMark: 2 ** 53 - 1,
    features: { ignoreDiscard: true, noDiscardPassdown: true, readOnly: true, errorIfNoSpace: true } },
  '7:0 7:1 2097152 9007199254740991 4 ignore_discard no_discard_passdown read_only error_if_no_space'],
];

test.each(cases.map(([m, p, text], i) => [m.type, i, text] as const))('%s (case %i): format gives the kernel line, parse gives it back', (_type, i) => {
  const [m, p, text] = cases[i];
  expect(m.format(p)).toBe(text);
  expect(m.parse(m.format(p))).toEqual(p);
  expect(m.parse(text + ' ')).toEqual(p);  // the kernel ends some lines with a space
  expect(parseTarget(line(m, 0, 8, p)).params).toEqual(p);
});

const code = (c: string) => expect.objectContaining({ code: c });
const refused = (fn: () => unknown, c: string) => {
  let thrown: unknown;
  try { fn(); } catch (e) { thrown = e; }
  expect(thrown).toBeInstanceOf(DevmapperError);
  expect(thrown).toMatchObject({ code: c });
};

test('bad target params are refused with typed errors', () => {
  for (const bs of [0, 64, 130, 2097152 + 128, 1.5])
    expect(() => thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: sectors(0) + bs as never, lowWaterMark: 0 }))
      .toThrow(code('ERR_DM_INVALID_BLOCK_SIZE'));
  expect(thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: 2097152 as never, lowWaterMark: 0 })).toContain('2097152');
  expect(() => thinPool.format({ metadataDev: '7:0', dataDev: '7:0', blockSize: 128 as never, lowWaterMark: 0 })).toThrow(code('ERR_DM_INVALID_TABLE'));
  expect(() => thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: 128 as never, lowWaterMark: 0,
    features: { skipBlockZeroing: true, ignoreDiscard: true, noDiscardPassdown: true, readOnly: true, errorIfNoSpace: true } })).toThrow(code('ERR_DM_INVALID_TABLE'));
  expect(() => thin.format({ pool: '254:0', deviceId: 2 ** 24 })).toThrow(code('ERR_DM_INVALID_THIN_ID'));
  expect(() => linear.format({ device: 'loop0', offset: 0 as never })).toThrow(code('ERR_DM_INVALID_TABLE'));
  expect(() => striped.format({ chunkSize: 100 as never, stripes: [{ device: '7:0', offset: 0 as never }] })).toThrow(code('ERR_DM_INVALID_TABLE'));
});

test('format: every field is checked, never coerced, clamped or cut', () => {
  const ok = { device: '7:0', offset: 0 as never };
  // Numbers: NaN, infinities, fractions, negatives, beyond 2^53 - 1, and numbers in disguise.
  for (const bad of [NaN, Infinity, -Infinity, 1.5, -1, 2 ** 53, 2 ** 64, '0', new Number(0), 0n, null, undefined, [], {}, Symbol('x'), true])
    refused(() => linear.format({ ...ok, offset: bad as never }), 'ERR_DM_INVALID_TABLE');
  // Device specs: NUL, spaces, newlines, relative paths, leading zeros, numbers out of dev_t's range, non-strings.
  for (const bad of ['7:0\0', '7:0 ', ' 7:0', '7:0\n', '/dev/lo op', '/dev/loop\t0', '/dev/\0', 'loop0', '', '/', '07:0', '7:00', '4096:0', '7:1048576',
    '7:', ':0', '-7:0', '7:0:0', '/dev/\u00a0', '/dev/\u2028', '/dev/\ud800', '/dev/\u0085', '/' + 'x'.repeat(4095), 7, new String('7:0'), ['7:0'], null, undefined, Symbol('d'), {}])
    refused(() => linear.format({ ...ok, device: bad as never }), 'ERR_DM_INVALID_TABLE');
  expect(checkDevice('/' + 'x'.repeat(4094), 'd')).toHaveLength(4095);
  expect(checkDevice('/dev/disk/by-id/é\\x', 'd')).toBe('/dev/disk/by-id/é\\x');
  // Field widths: flakey and delay intervals are the kernel's unsigned int; thin ids 24 bits.
  const fl = { device: '7:0', offset: 0 as never, upInterval: 1, downInterval: 1 };
  refused(() => flakey.format({ ...fl, upInterval: 2 ** 32 }), 'ERR_DM_INVALID_TABLE');
  refused(() => flakey.format({ ...fl, upInterval: 2 ** 32 - 1 }), 'ERR_DM_INVALID_TABLE');  // up + down overflows
  refused(() => flakey.format({ ...fl, upInterval: 0, downInterval: 0 }), 'ERR_DM_INVALID_TABLE');
  refused(() => delay.format({ read: { device: '7:0', offset: 0 as never, delayMs: 2 ** 32 } }), 'ERR_DM_INVALID_TABLE');
  for (const bad of [2 ** 24, -1, 0.5, NaN, '7', null])
    refused(() => thin.format({ pool: '254:0', deviceId: bad as never }), 'ERR_DM_INVALID_THIN_ID');
  // Flakey: what the kernel's constructor refuses.
  for (const bad of [{ dropWrites: true, errorWrites: true }, { dropWrites: true, randomWriteCorrupt: 1 },
    { errorWrites: true, corruptBioByte: { nthByte: 1, direction: 'w', value: 0, flags: 0 } }, { errorReads: true, randomReadCorrupt: 7 },
    { corruptBioByte: { nthByte: 0, direction: 'r', value: 0, flags: 0 } }, { corruptBioByte: { nthByte: 1, direction: 'x', value: 0, flags: 0 } },
    { corruptBioByte: { nthByte: 1, direction: 'r', value: 256, flags: 0 } }, { randomReadCorrupt: 1e9 + 1 }, { dropWrites: 1 }, { errorReads: 'yes' }])
    expect(() => flakey.format({ ...fl, ...bad } as never)).toThrow(DevmapperError);
  // false flags mean absent.
  expect(flakey.format({ ...fl, dropWrites: false, errorWrites: undefined })).toBe('7:0 0 1 1 0');
  expect(thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: 128 as never, lowWaterMark: 0, features: { readOnly: false, errorIfNoSpace: undefined } })).toBe('7:0 7:1 128 0 0');
  // Delay: a flush path needs a write path (it was silently dropped before), extra words need all three paths.
  const rp = { device: '7:0', offset: 0 as never, delayMs: 1 };
  refused(() => delay.format({ read: rp, flush: rp }), 'ERR_DM_INVALID_TABLE');
  refused(() => delay.format({ read: rp, write: rp, extra: ['x'] }), 'ERR_DM_INVALID_TABLE');
  refused(() => delay.format({ read: rp, write: null as never }), 'ERR_DM_INVALID_ARGUMENT');
  // Thin: the external origin is a device (not '' or anything falsy that used to be skipped), not the pool.
  for (const bad of ['', 0, null, false])
    expect(() => thin.format({ pool: '254:0', deviceId: 1, externalOrigin: bad as never })).toThrow(DevmapperError);
  refused(() => thin.format({ pool: '254:0', deviceId: 1, externalOrigin: '254:0' }), 'ERR_DM_INVALID_TABLE');
  refused(() => thin.format({ pool: '254:0', deviceId: 1, extra: ['x'] }), 'ERR_DM_INVALID_TABLE');
  // Striped: a real, non-empty array of stripe objects.
  for (const bad of [[], null, 'x', { length: 1, 0: { device: '7:0', offset: 0 } }, [null], [{ device: '7:0' }], [{ device: '7:0', offset: 0, x: 1 }], new Array(3)])
    expect(() => striped.format({ chunkSize: 128 as never, stripes: bad as never })).toThrow(DevmapperError);
  for (const bad of [4, 129, 2 ** 32, -128, 128.5, '128'])
    refused(() => striped.format({ chunkSize: bad as never, stripes: [{ device: '7:0', offset: 0 as never }] }), 'ERR_DM_INVALID_TABLE');
  // Extra words: a non-empty array of words.
  for (const bad of [[], [''], ['a b'], ['a\0'], ['a\n'], [1], 'word', null, [undefined]])
    refused(() => linear.format({ ...ok, extra: bad } as never), 'ERR_DM_INVALID_TABLE');
});

test('format: the params object itself, and unknown keys', () => {
  const models: TargetModel<unknown>[] = [linear, striped, zero, error, flakey, delay, thin, thinPool] as TargetModel<unknown>[];
  for (const m of models) {
    for (const bad of [undefined, null, 0, 'x', true, Symbol('p'), [], [{}], () => ({}), 1n])
      refused(() => m.format(bad), 'ERR_DM_INVALID_ARGUMENT');
    refused(() => m.format({ bogus: 1 }), 'ERR_DM_INVALID_ARGUMENT');
    refused(() => m.format({ [Symbol('s')]: 1 }), 'ERR_DM_INVALID_ARGUMENT');
  }
  refused(() => zero.format(new String('') as never), 'ERR_DM_INVALID_ARGUMENT');
  for (const bad of [new Number(1), new Boolean(false), new Date(0), new Map(), new (class P {})(), Object.create({ device: '7:0', offset: 0 })])
    refused(() => zero.format(bad as never), 'ERR_DM_INVALID_ARGUMENT');
  // Plain objects of any realm (structuredClone under jest gives the outer realm's), or without a prototype.
  expect(linear.format(structuredClone({ device: '7:0', offset: 1 }) as never)).toBe('7:0 1');
  expect(linear.format(Object.assign(Object.create(null), { device: '7:0', offset: 1 }))).toBe('7:0 1');
  refused(() => linear.format({ device: '7:0', offset: 0, offest: 8 } as never), 'ERR_DM_INVALID_ARGUMENT');
  refused(() => thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: 128 as never, lowWaterMark: 0, features: { readonly: true } as never }), 'ERR_DM_INVALID_ARGUMENT');
  refused(() => thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: 128 as never, lowWaterMark: 0, features: null as never }), 'ERR_DM_INVALID_ARGUMENT');
  refused(() => delay.format({ read: { device: '7:0', offset: 0 as never, delayMs: 1, delay: 2 } as never }), 'ERR_DM_INVALID_ARGUMENT');
  // line(): the start and length too.
  for (const bad of [Symbol('s'), -1, 0.5, NaN, '0', null])
    refused(() => line(linear, bad as never, 8, { device: '7:0', offset: 0 as never }), 'ERR_DM_INVALID_SIZE');
});

test('parse: only what the kernel prints', () => {
  const models: TargetModel<unknown>[] = [linear, striped, zero, error, flakey, delay, thin, thinPool] as TargetModel<unknown>[];
  for (const m of models) for (const bad of [undefined, null, 5, {}, [], Symbol('t'), new String('7:0 0')])
    refused(() => m.parse(bad as never), 'ERR_DM_PARSE');
  for (const bad of [undefined, null, 5, {}, Symbol('t')]) {
    refused(() => parseThinStatus(bad as never), 'ERR_DM_PARSE');
    refused(() => parseThinPoolStatus(bad as never), 'ERR_DM_PARSE');
    refused(() => parseTarget(bad as never), 'ERR_DM_PARSE');
  }
  refused(() => parseTarget({ start: 0, length: 8, type: Symbol('t'), params: '' } as never), 'ERR_DM_PARSE');
  refused(() => parseTarget({ start: 0, length: 8, type: 'crypt', params: '' } as never), 'ERR_DM_PARSE');
  refused(() => parseTarget({ start: 0, length: 8, type: 'linear', params: 7 } as never), 'ERR_DM_PARSE');
  const bads: [TargetModel<any>, string][] = [
    [linear, ''], [linear, '7:0'], [linear, '7:0 -1'], [linear, '7:0 1.5'], [linear, '7:0 0x10'], [linear, '7:0 010'], [linear, '7:0 +1'],
    [linear, '7:0 9007199254740992'], [linear, '7:0 9007199254740993'], [linear, '7:0 18446744073709551615'], [linear, 'loop0 0'],
    [linear, '07:0 0'], [linear, '4096:0 0'], [linear, '7:0\t0'], [linear, '7:0\n0'], [linear, '7:0 0 a\u0000b'], [linear, '7:0 0\n'],
    [zero, 'x'], [error, '0'],
    [striped, '0 128'], [striped, '2 128 7:0 0'], [striped, '1 0 7:0 0'], [striped, '1 4294967296 7:0 0'], [striped, '1 128 7:0'],
    [striped, '4294967295 128 7:0 0'], [striped, '1 128 x 0'],
    [flakey, '7:0 0 1'], [flakey, '7:0 0 4294967296 1 0'], [flakey, '7:0 0 0 0 0'], [flakey, '7:0 0 4294967295 1 0'],
    [flakey, '7:0 0 1 1 1'], [flakey, '7:0 0 1 1 0 drop_writes'], [flakey, '7:0 0 1 1 2 drop_writes'], [flakey, '7:0 0 1 1 1 DROP_WRITES'],
    [flakey, '7:0 0 1 1 1 bogus'], [flakey, '7:0 0 1 1 2 drop_writes drop_writes'], [flakey, '7:0 0 1 1 2 drop_writes error_writes'],
    [flakey, '7:0 0 1 1 4 corrupt_bio_byte 1 r 0'], [flakey, '7:0 0 1 1 5 corrupt_bio_byte 0 r 0 0'], [flakey, '7:0 0 1 1 5 corrupt_bio_byte 1 x 0 0'],
    [flakey, '7:0 0 1 1 5 corrupt_bio_byte 1 r 256 0'], [flakey, '7:0 0 1 1 2 random_read_corrupt 1000000001'], [flakey, '7:0 0 1 1 1 random_read_corrupt'],
    [flakey, '7:0 0 1 1 3 error_reads random_read_corrupt 1'], [flakey, '7:0 0 1 1 0 x'],
    [delay, '7:0 0'], [delay, '7:0 0 1 7:1'], [delay, '7:0 0 1 7:1 0'], [delay, '7:0 0 1 7:1 0 1 7:2'], [delay, '7:0 0 4294967296'], [delay, '7:0 0 -1'],
    [thin, '254:0'], [thin, '254:0 16777216'], [thin, '254:0 -1'], [thin, '254:0 1 notadev'], [thin, 'pool 1'],
    [thinPool, '7:0 7:1 128'], [thinPool, '7:0 7:0 128 0 0'], [thinPool, '7:0 7:1 100 0 0'], [thinPool, '7:0 7:1 64 0 0'], [thinPool, '7:0 7:1 2097280 0 0'],
    [thinPool, '7:0 7:1 128 0 1'], [thinPool, '7:0 7:1 128 0 0 read_only'], [thinPool, '7:0 7:1 128 0 1 bogus'], [thinPool, '7:0 7:1 128 0 5 a b c d e'],
    [thinPool, '7:0 7:1 128 0 2 read_only read_only'], [thinPool, '7:0 7:1 128 9007199254740993 0'], [thinPool, '7:0 7:1 128 0 x'],
  ];
  for (const [m, text] of bads) {
    let thrown: unknown;
    try { m.parse(text); } catch (e) { thrown = e; }
    if (!(thrown instanceof DevmapperError) || thrown.code !== 'ERR_DM_PARSE') throw new Error(`${m.type} parse '${text}' gave ${String(thrown)}`);
  }
});

test('parse: numbers are exact, never rounded; extra words are kept; older formats still read', () => {
  expect(linear.parse('7:0 9007199254740991')).toEqual({ device: '7:0', offset: 9007199254740991 });
  expect(() => linear.parse('7:0 9007199254740993')).toThrow(code('ERR_DM_PARSE'));
  expect(linear.parse('  7:0   8  ')).toEqual({ device: '7:0', offset: 8 });
  expect(linear.parse('7:0 8 new words')).toEqual({ device: '7:0', offset: 8, extra: ['new', 'words'] });
  expect(striped.parse('1 100 7:0 0')).toEqual({ chunkSize: 100, stripes: [{ device: '7:0', offset: 0 }] });  // any chunk since 3.6
  expect(flakey.parse('7:0 0 30 5')).toEqual({ device: '7:0', offset: 0, upInterval: 30, downInterval: 5 });  // before the feature count
  expect(flakey.parse('7:0 0 30 5 2 error_reads error_writes ')).toEqual({ device: '7:0', offset: 0, upInterval: 30, downInterval: 5, errorReads: true, errorWrites: true });
  expect(thinPool.parse('7:0 7:1 128 7')).toEqual({ metadataDev: '7:0', dataDev: '7:1', blockSize: 128, lowWaterMark: 7, features: {} });
  expect(thinPool.parse('7:0 7:1 384 0 2 error_if_no_space skip_block_zeroing ')).toMatchObject({ blockSize: 384, features: { skipBlockZeroing: true, errorIfNoSpace: true } });
  expect(thin.parse('254:0 1 7:3 x')).toEqual({ pool: '254:0', deviceId: 1, externalOrigin: '7:3', extra: ['x'] });
  expect(delay.parse('7:0 0 1 7:1 0 2 7:2 0 3 z')).toMatchObject({ flush: { device: '7:2', offset: 0, delayMs: 3 }, extra: ['z'] });
});

test('thin-pool status: kernel 6.1 line, older formats, Fail and Error', () => {
  expect(parseThinPoolStatus('0 1650/16384 0/16384 - rw discard_passdown queue_if_no_space - 1024 ')).toEqual({
    state: 'ok', transactionId: 0, metadata: { used: 1650, total: 16384 }, data: { used: 0, total: 16384 }, heldMetadataRoot: null,
    mode: 'rw', discard: 'discard_passdown', noSpacePolicy: 'queue_if_no_space', needsCheck: false, metadataLowWatermark: 1024,
  });
  // Before the metadata low watermark (kernel < 4.19) and before needs_check (< 4.0).
  expect(parseThinPoolStatus('12 99/4096 500/512 77 out_of_data_space ignore_discard error_if_no_space needs_check ')).toMatchObject({
    transactionId: 12, heldMetadataRoot: 77, mode: 'out_of_data_space', needsCheck: true, metadataLowWatermark: null, noSpacePolicy: 'error_if_no_space' });
  expect(parseThinPoolStatus('3 10/20 1/2 - ro no_discard_passdown')).toMatchObject({ mode: 'ro', discard: 'no_discard_passdown', noSpacePolicy: null, needsCheck: false });
  expect(parseThinPoolStatus('3 10/20 1/2 - ro')).toMatchObject({ mode: 'ro', discard: null, noSpacePolicy: null, needsCheck: false, metadataLowWatermark: null });
  expect(parseThinPoolStatus('Fail')).toEqual({ state: 'Fail' });
  expect(parseThinPoolStatus('Error ')).toEqual({ state: 'Error' });
  expect(() => parseThinPoolStatus('1 2 3')).toThrow(code('ERR_DM_PARSE'));
  // A newer kernel's words after the watermark are kept, not dropped; there is no extra field otherwise.
  const s = parseThinPoolStatus('5 1/2 3/4 9 rw ignore_discard error_if_no_space needs_check 17 fast_clone 3 ');
  expect(s).toMatchObject({ heldMetadataRoot: 9, needsCheck: true, metadataLowWatermark: 17, extra: ['fast_clone', '3'] });
  expect(parseThinPoolStatus('5 1/2 3/4 9 rw ignore_discard error_if_no_space - 17')).not.toHaveProperty('extra');
  // Exact numbers: 2^53 + 1 is not read as 2^53.
  expect(parseThinPoolStatus('9007199254740991 9007199254740991/9007199254740991 0/1 - rw')).toMatchObject({ transactionId: 2 ** 53 - 1 });
  for (const bad of [
    '', ' ', 'Fail now', 'Error 1', 'fail', '9007199254740993 1/2 1/2 - rw', '0 1/9007199254740993 1/2 - rw', '0 1/2 1/2 9007199254740992 rw',
    '0 1/2 1/2 - rw discard_passdown queue_if_no_space - 18446744073709551615', '-1 1/2 1/2 - rw', '0 1/2/3 1/2 - rw', '0 1/ 1/2 - rw', '0 12 1/2 - rw',
    '0 01/2 1/2 - rw', '0 1/2 1/2 x rw', '0 1/2 1/2 - RW', '0 1/2 1/2 - read_only', '0 1/2 1/2 - rw discard', '0 1/2 1/2 - rw fast_block_clone',
    '0 1/2 1/2 - rw discard_passdown queue', '0 1/2 1/2 - rw discard_passdown queue_if_no_space check', '0 1/2 1/2 - rw discard_passdown queue_if_no_space - -',
    '0 1/2 1/2 - rw discard_passdown queue_if_no_space - x', '0\t1/2 1/2 - rw', '0 1/2 1/2 - rw\n', '0 1/2 1/2 - rw discard_passdown queue_if_no_space - 1 \u0000',
  ]) expect(() => parseThinPoolStatus(bad)).toThrow(code('ERR_DM_PARSE'));
});

test('thin status', () => {
  expect(parseThinStatus('2048 2047 ')).toEqual({ state: 'ok', mappedSectors: 2048, highestMappedSector: 2047 });
  expect(parseThinStatus('0 -')).toEqual({ state: 'ok', mappedSectors: 0, highestMappedSector: null });
  expect(parseThinStatus('-')).toEqual({ state: 'inactive' });
  expect(parseThinStatus('Fail')).toEqual({ state: 'Fail' });
  expect(parseThinStatus('Error')).toEqual({ state: 'Error' });
  expect(parseThinStatus('128 127 ready ready 5 ')).toEqual({ state: 'ok', mappedSectors: 128, highestMappedSector: 127, extra: ['ready', 'ready', '5'] });
  expect(parseThinStatus('9007199254740991 9007199254740990')).toMatchObject({ mappedSectors: 2 ** 53 - 1 });
  for (const bad of ['', '5', 'x -', '5 x', '-1 -', '1.5 -', '9007199254740993 -', '1 9007199254740992', 'Fail -', '- -', 'Error x', '01 -', '1\t-', '1 - \u0001'])
    expect(() => parseThinStatus(bad)).toThrow(code('ERR_DM_PARSE'));
});
