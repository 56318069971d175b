// The metadata reader on metadata a real kernel wrote (test/fixtures/metadata, made in the VM by make.sh), on
// the host with no device-mapper: ThinMetadata.read/readSync/diff/diffSync give exactly what
// thin-provisioning-tools printed on the same images (thin_dump, thin_ls, thin_delta), and the view through a
// held metadata snapshot (the reader a live pool uses) gives what they print with -m.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { DevmapperError, DiffRange, ThinMetadata } from '../../lib';
import { runAsync, runSync } from '../../lib/core/steps';
import { MetadataSource, allRangesSteps, diffChunkSteps, readSteps, toMetadata, toUsage } from '../../lib/thin/metadata';
import { Sectors } from '../../lib/core/units';
import { Dump, Listed, Range, parseThinDelta, parseThinDump, parseThinLs } from '../fixtures/metadata/tool-output';

export const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'metadata');

interface ToolRun { thin_dump: string; thin_ls: string; thin_delta: { thin1: number; thin2: number; output: string }[] }
interface Expected { live: ToolRun; held?: ToolRun }
interface View { dump: Dump; ls: Listed[]; deltas: { a: number; b: number; ranges: Range[] }[] }

const parse = (t: ToolRun): View => ({
  dump: parseThinDump(t.thin_dump),
  ls: parseThinLs(t.thin_ls),
  deltas: t.thin_delta.map((d) => ({ a: d.thin1, b: d.thin2, ranges: parseThinDelta(d.output) })),
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'metadata-fixtures-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function image(name: string): string {
  const file = path.join(tmp, `${name}.img`);
  fs.writeFileSync(file, zlib.gunzipSync(fs.readFileSync(path.join(FIXTURES, `${name}.img.gz`))));
  return file;
}
const expected = (name: string): Expected => JSON.parse(fs.readFileSync(path.join(FIXTURES, `${name}.expected.json`), 'utf8'));

const plain = (ranges: DiffRange[]) => ranges.map(({ kind, begin, length }) => ({ kind, begin, length }));
const deviceFacts = (devices: { id: number; mappedBlocks: number; transactionId: number; creationTime: number; snapshottedTime: number }[]) =>
  devices.map(({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }) => ({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }));
const usageFacts = (devices: { id: number; mapped: number; exclusive: number; shared: number }[]) =>
  devices.map(({ id, mapped, exclusive, shared }) => ({ id, mapped, exclusive, shared }));

describe.each(['chain', 'many', 'held'])('fixture %s', (name) => {
  const file = image(name);
  const want = expected(name);
  const live = parse(want.live);

  test('read and readSync: the superblock and devices as thin_dump prints them, usage as thin_ls counts it', async () => {
    const md = await ThinMetadata.read(file, { usage: true });
    expect(ThinMetadata.readSync(file, { usage: true })).toEqual(md);
    expect(md.view).toBe('superblock');
    expect(md.version).toBe(2);
    expect(md.needsCheck).toBe(false);
    expect({ transactionId: md.transactionId, time: md.time, dataBlockSize: md.dataBlockSize, nrDataBlocks: md.dataBlocks })
      .toEqual({ transactionId: live.dump.transactionId, time: live.dump.time, dataBlockSize: live.dump.dataBlockSize, nrDataBlocks: live.dump.nrDataBlocks });
    expect(md.heldRoot === null).toBe(want.held === undefined);
    expect(deviceFacts(md.devices)).toEqual(live.dump.devices);
    expect(usageFacts(md.usage!.devices)).toEqual(live.ls);
    for (const d of md.usage!.devices) {
      expect(d.mappedBytes).toBe(d.mapped * md.dataBlockSize * 512);
      expect(d.sharedBytes).toBe(d.shared * md.dataBlockSize * 512);
      // Mapped blocks are at or below the highest one; nothing mapped has none.
      expect(d.highestMappedBlock === null ? 0 : d.highestMappedBlock + 1).toBeGreaterThanOrEqual(d.mapped);
      expect(d.highestMappedBlock === null).toBe(d.mapped === 0);
    }
    // The fixtures are what they claim to be: devices that share and devices that own blocks.
    expect(md.usage!.devices.some((d) => d.shared > 0 && d.exclusive > 0)).toBe(true);
    expect(md.devices.length).toBe({ chain: 5, many: 296, held: 4 }[name]);
  });

  test('diff and diffSync: the ranges thin_delta prints', async () => {
    expect(live.deltas.filter((d) => d.ranges.length > 0).length).toBeGreaterThanOrEqual(2);
    for (const { a, b, ranges } of live.deltas) {
      expect(plain(await ThinMetadata.diff(file, a, b))).toEqual(ranges);
      expect(plain(ThinMetadata.diffSync(file, a, b))).toEqual(ranges);
      if (a === b) expect(ranges).toEqual([]);
    }
  });

  test('a thin id the metadata does not hold: ENODATA', async () => {
    const absent = [1, 2, 3, 4, 5, 6, 7, 8].find((id) => !live.dump.devices.some((d) => d.id === id))!;
    const present = live.dump.devices[0].id;
    await expect(ThinMetadata.diff(file, present, absent)).rejects.toMatchObject({ name: 'DevmapperError', code: 'ENODATA' });
    expect(() => ThinMetadata.diffSync(file, absent, present)).toThrow(expect.objectContaining({ code: 'ENODATA' }));
    expect(() => ThinMetadata.diffSync(file, absent, present)).toThrow(DevmapperError);
  });

  if (want.held) {
    const held = parse(want.held);
    test('through the held metadata snapshot: what the tools print with -m', async () => {
      const src: MetadataSource = { path: file, view: { held: true } };
      const raw = runSync(readSteps(src, true));
      expect(await runAsync(readSteps(src, true))).toEqual(raw);
      const md = toMetadata(raw, null);
      expect(md.view).toBe('snapshot');
      expect({ transactionId: md.transactionId, time: md.time, dataBlockSize: md.dataBlockSize })
        .toEqual({ transactionId: held.dump.transactionId, time: held.dump.time, dataBlockSize: held.dump.dataBlockSize });
      expect(deviceFacts(md.devices)).toEqual(held.dump.devices);
      expect(usageFacts(toUsage(raw).devices)).toEqual(held.ls);
      // The snapshot is older than the live view: they differ.
      expect(held.ls).not.toEqual(live.ls);
      for (const { a, b, ranges } of held.deltas) {
        // Chunks of 3 ranges: ranges cut by a chunk are joined again.
        const read = (from: number) => diffChunkSteps(src, a, b, from, 3);
        expect(plain(runSync(allRangesSteps(read)))).toEqual(ranges);
        expect(plain(await runAsync(allRangesSteps(read)))).toEqual(ranges);
      }
      // The snapshot's root is checked when the caller names it.
      const wrongRoot = { path: file, view: { held: true, heldRoot: raw.live.heldRoot + 1 } };
      expect(() => runSync(readSteps(wrongRoot, false))).toThrow(expect.objectContaining({ code: 'ERR_DM_METADATA', block: 0 }));
    });
  } else {
    test('no held metadata snapshot: a held view is refused', () => {
      expect(() => runSync(readSteps({ path: file, view: { held: true } }, false)))
        .toThrow(expect.objectContaining({ code: 'ERR_DM_METADATA', block: 0, check: 'no metadata snapshot is held' }));
    });
  }
});
