// Target models: parse(format(x)) equals x; status parsers read every format the kernel has used.
import { delay, flakey, linear, parseThinPoolStatus, parseThinStatus, striped, thin, thinPool, zero, error, sectors, parseTarget, line } from '../../lib';
import { TargetModel } from '../../lib/targets';

const cases: [TargetModel<any>, unknown, string][] = [
  [linear, { device: '7:0', offset: 2048 }, '7:0 2048'],
  [striped, { chunkSize: 128, stripes: [{ device: '7:0', offset: 0 }, { device: '7:1', offset: 8 }] }, '2 128 7:0 0 7:1 8'],
  [zero, {}, ''],
  [error, {}, ''],
  [flakey, { device: '7:0', offset: 0, upInterval: 30, downInterval: 5 }, '7:0 0 30 5 0'],
  [flakey, { device: '7:0', offset: 0, upInterval: 30, downInterval: 5, dropWrites: true }, '7:0 0 30 5 1 drop_writes'],
  [delay, { read: { device: '7:0', offset: 0, delayMs: 10 } }, '7:0 0 10'],
  [delay, { read: { device: '7:0', offset: 0, delayMs: 10 }, write: { device: '7:1', offset: 0, delayMs: 0 } }, '7:0 0 10 7:1 0 0'],
  [thin, { pool: '254:0', deviceId: 7 }, '254:0 7'],
  [thin, { pool: '254:0', deviceId: 7, externalOrigin: '7:3' }, '254:0 7 7:3'],
  [thinPool, { metadataDev: '7:0', dataDev: '7:1', blockSize: 128, lowWaterMark: 0, features: {} }, '7:0 7:1 128 0 0'],
  [thinPool, { metadataDev: '7:0', dataDev: '7:1', blockSize: 256, lowWaterMark: 10, features: { skipBlockZeroing: true, errorIfNoSpace: true } },
    '7:0 7:1 256 10 2 skip_block_zeroing error_if_no_space'],
];

test.each(cases.map(([m, p, text]) => [m.type, p, text] as const))('%s: format gives the kernel line, parse gives it back', (type, p, text) => {
  const m = cases.find(([mm, pp]) => mm.type === type && pp === p)![0];
  expect(m.format(p)).toBe(text);
  expect(m.parse(m.format(p))).toEqual(p);
  expect(m.parse(text + ' ')).toEqual(p);  // the kernel ends some lines with a space
  expect(parseTarget(line(m, 0, 8, p)).params).toEqual(p);
});

test('bad target params are refused with typed errors', () => {
  for (const bs of [0, 64, 130, 2097152 + 128, 1.5])
    expect(() => thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: sectors(0) + bs as never, lowWaterMark: 0 }))
      .toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_BLOCK_SIZE' }));
  expect(thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: 2097152 as never, lowWaterMark: 0 })).toContain('2097152');
  expect(() => thinPool.format({ metadataDev: '7:0', dataDev: '7:0', blockSize: 128 as never, lowWaterMark: 0 })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
  expect(() => thinPool.format({ metadataDev: '7:0', dataDev: '7:1', blockSize: 128 as never, lowWaterMark: 0,
    features: { skipBlockZeroing: true, ignoreDiscard: true, noDiscardPassdown: true, readOnly: true, errorIfNoSpace: true } })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
  expect(() => thin.format({ pool: '254:0', deviceId: 2 ** 24 })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_THIN_ID' }));
  expect(() => linear.format({ device: 'loop0', offset: 0 as never })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
  expect(() => striped.format({ chunkSize: 100 as never, stripes: [{ device: '7:0', offset: 0 as never }] })).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_TABLE' }));
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
  expect(parseThinPoolStatus('Fail')).toEqual({ state: 'Fail' });
  expect(parseThinPoolStatus('Error ')).toEqual({ state: 'Error' });
  expect(() => parseThinPoolStatus('1 2 3')).toThrow(expect.objectContaining({ code: 'ERR_DM_PARSE' }));
});

test('thin status', () => {
  expect(parseThinStatus('2048 2047 ')).toEqual({ state: 'ok', mappedSectors: 2048, highestMappedSector: 2047 });
  expect(parseThinStatus('0 -')).toEqual({ state: 'ok', mappedSectors: 0, highestMappedSector: null });
  expect(parseThinStatus('-')).toEqual({ state: 'inactive' });
  expect(parseThinStatus('Fail')).toEqual({ state: 'Fail' });
  expect(parseThinStatus('Error')).toEqual({ state: 'Error' });
});
