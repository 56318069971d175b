// The metadata API's host side: errors from the factory, arguments refused before any file is opened, and the
// joining and streaming of diff chunks.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DevmapperError, LmdbRegistry, ThinMetadata } from '../../lib';
import { kernelError } from '../../lib/core/errors';
import { RawDiffChunk } from '../../lib/core/binding';
import { Sectors } from '../../lib/core/units';
import { DiffRange, appendRanges, streamRanges } from '../../lib/thin/metadata';

const chunk = (triples: number[], done: boolean, next = 0): RawDiffChunk => ({ ranges: Float64Array.from(triples), done, next, dataBlockSize: 128 });

test('a metadata check failure becomes ERR_DM_METADATA with the block and the check', () => {
  const e = kernelError({ errno: 0, syscall: '', command: 'metadata', target: '/dev/loop3', detail: 'btree node checksum', strerror: 'Success', block: 12, check: 'btree node checksum' });
  expect(e).toBeInstanceOf(DevmapperError);
  expect(e).toMatchObject({ code: 'ERR_DM_METADATA', block: 12, check: 'btree node checksum', device: '/dev/loop3' });
  expect(e.message).toContain('block 12');
  // An I/O failure while reading keeps its errno's code.
  const io = kernelError({ errno: 5, syscall: 'pread', command: 'metadata', target: '/dev/loop3', detail: 'block 7', strerror: 'Input/output error' });
  expect(io).toMatchObject({ code: 'EIO', errno: -5, syscall: 'pread' });
  expect(io.block).toBeUndefined();
});

test('ThinMetadata refuses bad arguments before it opens anything (a missing path would say ENOENT)', async () => {
  const missing = path.join(os.tmpdir(), `devmapper-no-such-${process.pid}`);
  for (const bad of [undefined, null, 42, '', 'a\0b', {}, ['x']]) {
    expect(() => ThinMetadata.readSync(bad as never)).toThrow(DevmapperError);
    await expect(ThinMetadata.read(bad as never)).rejects.toBeInstanceOf(DevmapperError);
  }
  for (const o of [null, 'usage', { usage: 'yes' }, { usage: 1 }, { typo: true }, []]) {
    expect(() => ThinMetadata.readSync(missing, o as never)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_ARGUMENT' }));
  }
  for (const id of [-1, 1.5, NaN, Infinity, 2 ** 24, '1', null, undefined, 10n]) {
    expect(() => ThinMetadata.diffSync(missing, id as never, 0)).toThrow(expect.objectContaining({ code: 'ERR_DM_INVALID_THIN_ID' }));
    await expect(ThinMetadata.diff(missing, 0, id as never)).rejects.toMatchObject({ code: 'ERR_DM_INVALID_THIN_ID' });
  }
  expect(() => ThinMetadata.readSync(missing)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  await expect(ThinMetadata.diff(missing, 0, 1)).rejects.toMatchObject({ code: 'ENOENT' });
});

test('a file that is not metadata is ERR_DM_METADATA at block 0; a directory or an empty file is refused', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-meta-'));
  try {
    const junk = path.join(dir, 'junk');
    fs.writeFileSync(junk, Buffer.alloc(8192, 0x5a));
    expect(() => ThinMetadata.readSync(junk)).toThrow(expect.objectContaining({ code: 'ERR_DM_METADATA', block: 0, check: 'superblock checksum' }));
    const empty = path.join(dir, 'empty');
    fs.writeFileSync(empty, '');
    await expect(ThinMetadata.read(empty)).rejects.toMatchObject({ code: 'ERR_DM_METADATA', block: 0 });
    await expect(ThinMetadata.read(dir)).rejects.toBeInstanceOf(DevmapperError);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('chunks are joined where a range continues across them; sectors follow the block size', () => {
  const out: DiffRange[] = [];
  appendRanges(out, chunk([0, 0, 2, 2, 5, 1], false, 6));
  appendRanges(out, chunk([2, 6, 3, 1, 10, 1], true));
  expect(out).toEqual([
    { kind: 'leftOnly', begin: 0, length: 2, startSector: 0, sectors: 256 },
    { kind: 'different', begin: 5, length: 4, startSector: 640, sectors: 512 },
    { kind: 'rightOnly', begin: 10, length: 1, startSector: 1280, sectors: 128 },
  ]);
});

test('the stream yields a range only once it can no longer grow, and closes when the consumer stops early', async () => {
  const chunks = [chunk([0, 0, 1, 0, 3, 1], false, 4), chunk([0, 4, 1], false, 5), chunk([1, 9, 1], true)];
  const reads: number[] = [];
  let closed = 0;
  const read = async (from: number) => { reads.push(from); return chunks[reads.length - 1]; };
  const all: DiffRange[] = [];
  for await (const r of streamRanges(read, undefined, async () => { closed++; })) all.push(r);
  expect(all.map((r) => [r.kind, r.begin, r.length])).toEqual([['leftOnly', 0, 1], ['leftOnly', 3, 2], ['rightOnly', 9, 1]]);
  expect(reads).toEqual([0, 4, 5]);
  expect(closed).toBe(1);

  reads.length = 0;
  for await (const r of streamRanges(read, undefined, async () => { closed++; })) { void r; break; }
  expect(closed).toBe(2);
});

test('the registry records and clears a metadata snapshot hold', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-reg-'));
  try {
    const r = LmdbRegistry.open(dir);
    expect(r.metadataSnapshot()).toBeUndefined();
    r.setMetadataSnapshot({ pid: 42, start: '123' });
    r.setMetadataSnapshot({ pid: 42, start: '123', root: 77 });
    expect(r.metadataSnapshot()).toEqual({ pid: 42, start: '123', root: 77 });
    r.setMetadataSnapshot(null);
    expect(r.metadataSnapshot()).toBeUndefined();
    r.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
